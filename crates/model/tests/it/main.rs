mod decode;
mod fakes;
mod mdlm;
mod models;
mod moe;
mod probe;
mod trace_specs;
