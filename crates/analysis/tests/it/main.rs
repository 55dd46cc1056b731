//! Integration tests of cp-analysis (one test binary, as in the rest of the workspace).

mod corrupt;
mod index;
mod metrics;
