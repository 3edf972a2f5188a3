//! Many runs: a scenario at many seeds with confidence intervals (`run --seeds`), two
//! designs compared with common random numbers (`compare`), parameter grids across
//! cores and machines (`sweep`, `--shard`, `merge`), and CI gating (`check`). Runs
//! are independent and go to any thread; results are gathered in a fixed order, so
//! every output is the same bytes whatever the thread count or sharding.

pub mod check;
pub mod compare;
pub mod runner;
pub mod seeds;
pub mod stats;
pub mod sweep;
