//! Integration tests of cp-analysis (one test binary, as in the rest of the workspace).

mod index;
mod metrics;
