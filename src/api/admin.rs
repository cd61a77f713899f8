//! Operator admin endpoints on the operator listener, behind `api.admin_keys`: list the
//! credentials with their load, list templates, add or replace a custom template at run time.
//! Templates added here are stored and come back after a restart.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::auth::check_bearer;
use super::error::{parse_json, ApiError};
use super::operator::OperatorState;
use crate::model::TemplateName;
use crate::render::TemplateConfig;

/// Mounts `/admin`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .route("/credentials", web::get().to(credentials))
            .route("/templates", web::get().to(templates))
            .route("/templates/{name}", web::put().to(put_template)),
    );
}

fn admin(req: &HttpRequest, state: &OperatorState) -> Result<(), ApiError> {
    if state.admin_keys.is_empty() {
        return Err(ApiError::WrongApiKey);
    }
    check_bearer(req, &state.admin_keys)
}

async fn credentials(req: HttpRequest, state: web::Data<OperatorState>) -> Result<HttpResponse, ApiError> {
    admin(&req, &state)?;
    let list: Vec<_> = state
        .registry
        .services()
        .providers()
        .map(|(name, p)| json!({"name": name.as_str(), "vendor": p.vendor().kind().as_str(), "queued": p.queued()}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "credentials": list })))
}

async fn templates(req: HttpRequest, state: web::Data<OperatorState>) -> Result<HttpResponse, ApiError> {
    admin(&req, &state)?;
    let services = state.registry.services();
    let t = services.templates();
    let mut names = vec!["default".to_owned(), "detail".to_owned()];
    names.extend(t.custom_names().map(|n| n.to_string()));
    Ok(HttpResponse::Ok().json(json!({ "templates": names })))
}

async fn put_template(
    req: HttpRequest,
    state: web::Data<OperatorState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    admin(&req, &state)?;
    let name = TemplateName::parse(&path).map_err(|e| ApiError::InvalidField(format!("name: {e}")))?;
    let config: TemplateConfig = parse_json(&body)?;
    let services = state.registry.services();
    services.upsert_template(name.clone(), config.clone()).map_err(|e| ApiError::InvalidField(e.to_string()))?;
    services.store.put_template(name.as_str(), &config)?;
    services.store.sync().await?;
    tracing::info!(template = %name, "template updated");
    Ok(HttpResponse::Ok().json(json!({ "template": name.as_str() })))
}
