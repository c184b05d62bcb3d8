//! Over-the-air updates, sans IO: the firmware registry's records and signatures (`firmware`),
//! job executions with AWS IoT Jobs' rules (`execution`), and jobs with their topics and
//! documents (`job`), rollouts: rate, waves, abort criteria, schedules (`rollout`), and
//! firmware in blocks over MQTT (`stream`).

pub mod execution;
pub mod firmware;
pub mod job;
pub mod rollout;
pub mod stream;
