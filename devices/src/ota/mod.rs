//! Over-the-air updates, sans IO: the firmware registry's records and signatures (`firmware`)
//! and job executions with AWS IoT Jobs' rules (`execution`); jobs and rollouts follow
//! (docs/plans/issue-16.md).

pub mod execution;
pub mod firmware;
