//! Over-the-air updates, sans IO: the firmware registry's records and signatures
//! (`firmware`); jobs, executions and rollouts follow (docs/plans/issue-16.md).

pub mod firmware;
