//! `ApiError`: every way a request can fail, each with a stable `code()` and a status, turned
//! into `{"error": {"code", "message"}}` once, here.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::metrics as m;

/// A request the API refuses or cannot serve now.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("missing or malformed Authorization: Bearer header")]
    MissingApiKey,
    #[error("unknown API key")]
    WrongApiKey,
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("unknown credential {0:?}")]
    UnknownCredential(String),
    #[error("{0}")]
    InvalidTokenFormat(String),
    #[error("unknown time zone {0:?} (expected an IANA name like Europe/Berlin)")]
    InvalidTimezone(String),
    #[error("unknown template {0:?}")]
    UnknownTemplate(String),
    #[error("{0}")]
    NotFound(String),
    #[error("too many items: {what} holds at most {max}")]
    TooMany { what: &'static str, max: usize },
    #[error("busy, retry later")]
    Busy,
    #[error("too many messages waiting to be processed, retry later")]
    TooBusy,
    #[error("storage unavailable")]
    Unavailable,
    /// Any of the above, found in one item of a list (`messages[3]`, `events[0]`). The item's
    /// own code and status are kept, so a batch refuses with the same code a single request
    /// would get, and the message names the item (product.md §5).
    #[error("{path}: {inner}")]
    At { path: String, inner: Box<ApiError> },
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingApiKey => "missing_api_key",
            ApiError::WrongApiKey => "wrong_api_key",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::UnknownCredential(_) => "unknown_credential",
            ApiError::InvalidTokenFormat(_) => "invalid_token_format",
            ApiError::InvalidTimezone(_) => "invalid_timezone",
            ApiError::UnknownTemplate(_) => "unknown_template",
            ApiError::NotFound(_) => "not_found",
            ApiError::TooMany { .. } => "too_many_items",
            ApiError::Busy => "busy",
            ApiError::TooBusy => "too_many_pending",
            ApiError::Unavailable => "unavailable",
            ApiError::At { inner, .. } => inner.code(),
        }
    }

    /// Prefixes the message with where in the request the problem is (`messages[3]`), for
    /// every validation error, whatever its code (an unknown template or too many recipients
    /// in `messages[1]` must name it as much as a bad field does).
    pub fn at(self, path: &str) -> Self {
        match self {
            // About the request or the daemon, not about one item.
            ApiError::MissingApiKey
            | ApiError::WrongApiKey
            | ApiError::BodyTooLarge(_)
            | ApiError::Busy
            | ApiError::TooBusy
            | ApiError::Unavailable => self,
            inner => ApiError::At { path: path.to_owned(), inner: Box::new(inner) },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::At { inner, .. } => inner.status_code(),
            ApiError::MissingApiKey | ApiError::WrongApiKey => StatusCode::UNAUTHORIZED,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Busy | ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooBusy => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        metrics::counter!(m::API_ERRORS, "code" => self.code()).increment(1);
        let mut b = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Busy | ApiError::Unavailable | ApiError::TooBusy) {
            b.insert_header(("Retry-After", "1"));
        }
        if matches!(self, ApiError::MissingApiKey | ApiError::WrongApiKey) {
            b.insert_header(("WWW-Authenticate", "Bearer"));
        }
        b.json(serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}}))
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::Unavailable
    }
}

impl From<crate::session::SessionError> for ApiError {
    fn from(e: crate::session::SessionError) -> Self {
        match e {
            crate::session::SessionError::Busy => ApiError::Busy,
            crate::session::SessionError::Gone => ApiError::Unavailable,
        }
    }
}

impl From<crate::model::IdError> for ApiError {
    fn from(e: crate::model::IdError) -> Self {
        ApiError::InvalidField(e.to_string())
    }
}

/// Parses a JSON body into `T`, telling malformed JSON from a schema violation.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidField(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_error_keeps_its_code_and_status_and_names_the_item() {
        let cases = [
            (ApiError::InvalidField("kind: \"sticker\" is not one of text".into()), "invalid_field"),
            (ApiError::UnknownTemplate("nope".into()), "unknown_template"),
            (ApiError::TooMany { what: "to", max: 2 }, "too_many_items"),
        ];
        for (e, code) in cases {
            let status = e.status_code();
            let at = e.clone().at("messages[1]");
            assert_eq!(at.code(), code);
            assert_eq!(at.status_code(), status);
            assert_eq!(at.to_string(), format!("messages[1]: {e}"));
        }
    }

    #[test]
    fn request_level_errors_are_not_attributed_to_an_item() {
        for e in [ApiError::Busy, ApiError::Unavailable, ApiError::BodyTooLarge(10), ApiError::WrongApiKey] {
            assert_eq!(e.clone().at("messages[1]"), e);
        }
    }
}
