//! flashback-operator: a Kubernetes operator for Flashback storage repositories.
#![forbid(unsafe_code)]

pub mod cli;
pub mod emulator;
pub mod flashback;
