mod decode;
mod models;
