mod decode;
mod fakes;
mod models;
mod probe;
mod trace_specs;
