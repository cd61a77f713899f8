//! pushd: the offline push dispatcher of an instant-messaging service.
//!
//! ```text
//! gateway ─HTTP─▶ api ─▶ store (accept) ─▶ session registry ─▶ Session actor (one per user)
//!                                                  │ policy::decide (pure) ─▶ render
//!                                                  ▼
//!                                   ProviderActor (one per credential) ─▶ vendor / mock
//! ```
//!
//! Module map:
//! - [`model`]: ids, enums, domain structs;  [`clock`]: the only wall clock.
//! - [`config`]: TOML + environment → validated [`config::Settings`].
//! - [`api`]: gateway `/v1` and operator listeners.
//! - [`session`]: per-user actors and their registry.
//! - [`policy`]: the push rules, pure.  [`render`]: templates, payload limits.
//! - [`provider`]: vendor trait, shared delivery layer, one module per vendor.
//! - [`mock_vendor`]: loopback vendor servers for tests, the demo and load tests.
//! - [`store`]: the persistence trait and its implementations.  [`metrics`]: every metric name.

pub mod clock;
pub mod mock_vendor;
pub mod model;
pub mod policy;
pub mod provider;
pub mod metrics;
pub mod render;
pub mod config;
pub mod store;
pub mod trace;
