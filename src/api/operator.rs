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

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(state: web::Data<OperatorState>) -> HttpResponse {
    if state.ready.load(Ordering::Acquire) {
        HttpResponse::Ok().content_type("text/plain").body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable().content_type("text/plain").body("starting\n")
    }
}
