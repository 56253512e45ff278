//! The integration tests, one binary with a module per topic. Only `client` and `layout` need
//! no cluster (`make unit` runs them); every other module talks to the local control plane of
//! `tests/control-plane/` (`make test` starts it), and `node` to its cluster with a real node.
//! Each test has its own namespace, emulator and operator, so they run side by side.

mod support;

mod access_keys;
mod buckets;
mod chart;
mod client;
mod control_plane;
mod credentials;
mod docs;
mod export;
mod failures;
mod gitops;
mod hostile_tenant;
mod integrations;
mod layout;
mod leader;
mod lifecycle;
mod node;
mod observability;
mod refusals;
mod sessions;
mod shards;
mod tenancy;
mod writes;
