//! The Matrix push gateway API (`POST /_matrix/push/v1/notify`), issue 7: in progress.

use std::sync::Arc;

use actix_web::web;

use crate::config::MatrixSettings;
use crate::session::Registry;

/// What the Matrix handlers share.
pub struct MatrixState {
    pub registry: Arc<Registry>,
    pub settings: MatrixSettings,
}

/// Mounts `/_matrix/push/v1/notify`.
pub fn routes(_cfg: &mut web::ServiceConfig) {}
