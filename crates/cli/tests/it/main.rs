//! Integration tests of the collapse-probe binary (one test binary, one module per area).

mod analysis;
mod architectures;
mod binaries;
mod corrupt;
mod gate;
mod probe;
mod resume;
mod schedules;
mod shards;
mod tokens;
mod traces;
mod trajectories;
