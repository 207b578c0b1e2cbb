//! Shared pieces of the benchmarks.

pub mod kamailio;
pub mod procfs;
pub mod sipp_stats;
