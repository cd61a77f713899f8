//! The operator listener: `/metrics` (Prometheus text, with the standard `process_*` metrics),
//! `/healthz` (the process answers), `/readyz` (listeners bound and providers started), and the
//! `/admin` endpoints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::metrics as m;
use crate::process::Usage;
use crate::session::Registry;

/// What the operator handlers share.
pub struct OperatorState {
    pub metrics: PrometheusHandle,
    pub ready: Arc<AtomicBool>,
    pub registry: Arc<Registry>,
    /// Bearer keys for `/admin`; empty disables it.
    pub admin_keys: Vec<String>,
}

/// Mounts the operator routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .configure(super::admin::routes);
}

async fn metrics(state: web::Data<OperatorState>) -> HttpResponse {
    metrics::gauge!(m::SESSIONS_ACTIVE).set(state.registry.active() as f64);
    let mut text = state.metrics.render();
    // Without /proc (not Linux) the process metrics are left out rather than shown as zero.
    if let Some(usage) = Usage::read() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&m::render_process(&usage));
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text)
}

async fn healthz(state: web::Data<OperatorState>) -> HttpResponse {
    match state.registry.services().store.health() {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ok\n"),
        Err(e) => store_failed(e),
    }
}

/// A store that can no longer write does not heal in place: say so, so that the supervisor
/// restarts pushd (which recovers from the journal).
fn store_failed(e: crate::store::StoreError) -> HttpResponse {
    tracing::error!(error = %e, "health check: the store cannot write");
    HttpResponse::ServiceUnavailable().content_type("text/plain").body(format!("{e}\n"))
}

async fn readyz(state: web::Data<OperatorState>) -> HttpResponse {
    if let Err(e) = state.registry.services().store.health() {
        return store_failed(e);
    }
    if state.ready.load(Ordering::Acquire) {
        HttpResponse::Ok().content_type("text/plain").body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable().content_type("text/plain").body("starting\n")
    }
}
