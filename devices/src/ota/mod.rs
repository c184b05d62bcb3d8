//! Over-the-air updates, sans IO: the firmware registry's records and signatures (`firmware`),
//! job executions with AWS IoT Jobs' rules (`execution`), and jobs with their topics and
//! documents (`job`); rollouts follow (docs/plans/issue-16.md).

pub mod execution;
pub mod firmware;
pub mod job;
