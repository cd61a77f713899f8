//! Per-user session actors and the registry that finds them.

pub mod actor;
pub mod messages;
pub mod registry;

pub use actor::Session;
pub use registry::{Registry, Services, SessionError};
