//! Integration tests of the collapse-probe binary (one test binary, one module per area).

mod analysis;
mod gate;
mod probe;
mod schedules;
mod traces;
mod trajectories;
