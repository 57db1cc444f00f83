//! slotway: a Redis/Valkey Cluster proxy.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod command;
