//! Bearer API keys: an extractor that admits a request only with a configured key.

use std::future::{ready, Ready};

use actix_web::{web, FromRequest, HttpRequest};

use super::error::ApiError;
use super::gateway::ApiState;

/// Proof that the request carried a valid gateway API key.
pub struct GatewayKey;

/// Compares without an early exit, so timing does not reveal how much of a key matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks `Authorization: Bearer <key>` against `keys`.
pub fn check_bearer(req: &HttpRequest, keys: &[String]) -> Result<(), ApiError> {
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION).ok_or(ApiError::MissingApiKey)?;
    let value = header.to_str().map_err(|_| ApiError::MissingApiKey)?;
    let (scheme, key) = value.split_once(' ').ok_or(ApiError::MissingApiKey)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::MissingApiKey);
    }
    let key = key.trim().as_bytes();
    if keys.iter().any(|k| same(k.as_bytes(), key)) {
        Ok(())
    } else {
        Err(ApiError::WrongApiKey)
    }
}

impl FromRequest for GatewayKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let result = match req.app_data::<web::Data<ApiState>>() {
            Some(state) => check_bearer(req, &state.api.keys).map(|()| GatewayKey),
            None => Err(ApiError::Unavailable),
        };
        ready(result)
    }
}
