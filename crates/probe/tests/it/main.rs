mod decode;
mod fakes;
mod models;
mod probe;
