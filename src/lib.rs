//! flashback-operator: a Kubernetes operator that keeps Flashback storage repositories in
//! step with `FlashbackRepository` resources.
// One call is unsafe, malloc_trim in memory.rs, allowed there alone.
#![deny(unsafe_code)]

pub mod cli;
pub mod controller;
pub mod crd;
pub mod export;
pub mod http;
pub mod login;
pub mod memory;
pub mod metrics;
pub mod reference;
pub mod settings;
pub mod telemetry;

#[cfg(test)]
mod fixtures;
