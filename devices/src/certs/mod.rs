//! Certificates, sans IO: the fleet CA (issuing and reading certificates). The registry of
//! certificates and fleet provisioning follow (docs/plans/issue-15.md).

pub mod ca;
