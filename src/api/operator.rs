//! The operator listener: `/metrics` (Prometheus text), `/healthz` (the process answers),
//! `/readyz` (listeners bound and providers started), and the `/admin` endpoints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::metrics as m;
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
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
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
