//! What Huawei Push Kit (HMS Core) and its descendant Honor Push share on the provider side:
//! the OAuth 2.0 client-credentials token call and its answer, the send request's headers and
//! batch bounds, the payload budget and batch key (both count the JSON without its token list),
//! and the classifier (body `code` first through the vendor's code table, HTTP status second,
//! per-token lists of invalid tokens). [`Vendor`] is implemented here once, for every
//! [`HmsVendor`].
//!
//! Deliberately not here: what differs (`huawei.rs`, `honor.rs`): URLs and the send path, who
//! the OAuth client is, the body's shape and field names (`message` wrapper and snake_case vs
//! top-level camelCase), extra headers (Honor's `timestamp`), the code tables, the rate-limit
//! statuses and how an answer names its invalid tokens.
//!
//! ```text
//! HmsVendor::oauth ─form─▶ token request ─▶ parse_auth ─▶ AuthToken (refresh 5 min early)
//! HmsVendor::body + Bearer + HmsVendor::more_headers ─▶ send request (1..=max_batch tokens)
//! HmsVendor::read_answer ─▶ code ─▶ HmsVendor::CODES ─▶ Action ─▶ one Outcome per token
//!                        └─ no readable code ─▶ by_status (HmsVendor::rate_limit_reason first)
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Serialize;

use super::credential::Problem;
use super::retry_after;
use super::{AuthPlan, AuthToken, BuildError, Outcome, Vendor, VendorPush, VendorRequest};
use crate::model::{Timestamp, Token, VendorKind};

pub use super::oauth2::{MAX_TOKEN_LIFE_SECS, MIN_REFRESH_AFTER, REFRESH_MARGIN};

/// Longest `android.ttl` both accept: 15 days.
pub const MAX_TTL_SECS: u64 = 1_296_000;

/// Largest badge number (`set_num` / `setNum`, 0..=99).
pub const MAX_BADGE: u32 = 99;

/// What one answer code means for the tokens of the request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Action {
    /// Every token delivered.
    Delivered,
    /// Per token: those the answer lists invalid, the others delivered.
    PerToken,
    /// Every token of the request invalid.
    AllInvalid,
    /// The access token was refused: refresh once.
    RefreshAuth,
    /// Transient; retry after Retry-After, else the given delay, else the backoff.
    Retry(Option<Duration>),
    /// Daily quota used up.
    Quota,
    /// Bad payload, credential or configuration: never retried.
    Fatal,
}

/// The texts of a vendor's [`BuildError`]s (static: they name the vendor).
pub(crate) struct Texts {
    /// Too few or too many tokens for one request.
    pub(crate) batch: &'static str,
    /// A send without an access token.
    pub(crate) no_access_token: &'static str,
    /// An access token that is not a valid header value.
    pub(crate) bad_access_token: &'static str,
    /// The body could not be encoded as JSON.
    pub(crate) unencodable: &'static str,
}

/// Who asks the token endpoint for an access token.
pub(crate) struct OauthClient<'a> {
    pub(crate) token_url: &'a url::Url,
    pub(crate) client_id: &'a str,
    pub(crate) client_secret: &'a str,
}

/// A send answer as the shared classifier reads it.
pub(crate) struct Answer {
    /// The business code as text (a JSON string or number).
    pub(crate) code: String,
    /// For the log, when the code is unknown or the per-token result unreadable.
    pub(crate) request_id: String,
    /// The tokens the answer names invalid, each with its reason; or, when the answer's
    /// per-token result cannot be read, the reason to retry the whole request with.
    pub(crate) invalid: Result<Vec<(String, &'static str)>, &'static str>,
}

/// What differs between the HMS-lineage vendors; this module does the rest, including
/// [`Vendor`].
pub(crate) trait HmsVendor: Send + Sync + 'static {
    /// Which vendor (also the `vendor` field of log events).
    const KIND: VendorKind;
    /// The build errors' texts.
    const TEXTS: Texts;
    /// The answer codes the vendor documents (body `code` as text) and what they mean.
    const CODES: &'static [(&'static str, Action)];
    /// When to refresh a token whose answer has no `expires_in`.
    const REFRESH_WITHOUT_EXPIRY: chrono::Duration;
    /// Bytes of the body without its token list the vendor accepts.
    const PAYLOAD_LIMIT: usize;

    /// Tokens one send may carry.
    fn batch_limit(&self) -> usize;
    /// The token endpoint and the OAuth client.
    fn oauth(&self) -> OauthClient<'_>;
    /// The full send URL.
    fn send_url(&self) -> &url::Url;
    /// The serialized content without tokens: what the size budget counts and the batch key
    /// hashes.
    fn content(&self, push: &VendorPush) -> Result<Vec<u8>, BuildError>;
    /// The serialized send body for `tokens`.
    fn body(&self, push: &VendorPush, tokens: Vec<&str>) -> Result<Vec<u8>, BuildError>;
    /// Headers beyond `Authorization` and `Content-Type`; none by default.
    fn more_headers(&self, headers: &mut HeaderMap, now: Timestamp) {
        let _ = (headers, now);
    }
    /// The retry reason of an HTTP status that means "rate limited", if it is one.
    fn rate_limit_reason(status: StatusCode) -> Option<&'static str>;
    /// Reads a send answer; `None` when it carries no readable code.
    fn read_answer(body: &[u8]) -> Option<Answer>;
}

/// JSON for the wire; `what` names the vendor's failure.
pub(crate) fn to_json(value: &impl Serialize, what: &'static str) -> Result<Vec<u8>, BuildError> {
    serde_json::to_vec(value).map_err(|_| BuildError::Payload(what))
}

/// The deep-link data as a JSON object encoded in a string (both want a string); `None` when
/// there is none.
pub(crate) fn data_text<K: Serialize, V: Serialize>(
    data: &BTreeMap<K, V>,
    what: &'static str,
) -> Result<Option<String>, BuildError> {
    if data.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(data).map(Some).map_err(|_| BuildError::Payload(what))
}

/// `android.ttl`: seconds with an `s`, at most [`MAX_TTL_SECS`]; `None` = the vendor's default.
pub(crate) fn ttl_text(push: &VendorPush) -> Option<String> {
    push.ttl.map(|ttl| format!("{}s", ttl.as_secs().min(MAX_TTL_SECS)))
}

/// `click_action` / `clickAction`: what a tap on the notification does.
#[derive(Serialize)]
pub(crate) struct ClickAction {
    /// 3 = open the app's launcher activity.
    #[serde(rename = "type")]
    pub(crate) kind: u8,
}

impl ClickAction {
    /// Open the app.
    pub(crate) const OPEN_APP: Self = Self { kind: 3 };
}

/// The outcome when the body carries no known code: the HTTP status decides.
fn by_status<V: HmsVendor>(status: StatusCode, headers: &HeaderMap) -> Outcome {
    let retry = |reason| Outcome::Retry { after: retry_after(headers), reason };
    if let Some(reason) = V::rate_limit_reason(status) {
        return retry(reason);
    }
    match status {
        // A 200 whose body says nothing readable: the vendor may or may not have taken it.
        s if s.is_success() => retry("unreadable_answer"),
        StatusCode::BAD_REQUEST => Outcome::Fatal { reason: "bad_request" },
        StatusCode::UNAUTHORIZED => Outcome::RefreshAuth { reason: "unauthorized" },
        StatusCode::FORBIDDEN => Outcome::Fatal { reason: "forbidden" },
        StatusCode::NOT_FOUND => Outcome::Fatal { reason: "not_found" },
        s if s.is_server_error() => retry("server_error"),
        _ => Outcome::Fatal { reason: "unknown" },
    }
}

/// One outcome per token: body `code` first, HTTP status second.
fn outcomes<V: HmsVendor>(tokens: &[Token], status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<Outcome> {
    let all = |o: Outcome| vec![o; tokens.len()];
    let vendor = V::KIND.as_str();
    let Some(answer) = V::read_answer(body) else {
        return all(by_status::<V>(status, headers));
    };
    let Some(&(reason, action)) = V::CODES.iter().find(|(known, _)| *known == answer.code) else {
        tracing::warn!(vendor, code = %answer.code, request_id = %answer.request_id, "unknown answer code");
        // An unknown code on a transient or auth status still follows the status.
        return match by_status::<V>(status, headers) {
            o @ (Outcome::Retry { .. } | Outcome::RefreshAuth { .. }) if !status.is_success() => all(o),
            _ => all(Outcome::Fatal { reason: "unknown_code" }),
        };
    };
    match action {
        Action::Delivered => all(Outcome::Delivered),
        Action::AllInvalid => all(Outcome::InvalidToken { reason, since: None }),
        Action::RefreshAuth => all(Outcome::RefreshAuth { reason }),
        Action::Retry(default) => all(Outcome::Retry { after: retry_after(headers).or(default), reason }),
        Action::Quota => all(Outcome::QuotaExhausted { until: None, reason }),
        Action::Fatal => all(Outcome::Fatal { reason }),
        Action::PerToken => match answer.invalid {
            Ok(invalid) => tokens
                .iter()
                .map(|t| match invalid.iter().find(|(bad, _)| bad == t.as_str()) {
                    Some(&(_, reason)) => Outcome::InvalidToken { reason, since: None },
                    None => Outcome::Delivered,
                })
                .collect(),
            Err(reason) => {
                tracing::warn!(vendor, request_id = %answer.request_id, reason, "per-token result not readable");
                all(Outcome::Retry { after: retry_after(headers), reason })
            }
        },
    }
}

impl<V: HmsVendor> Vendor for V {
    fn kind(&self) -> VendorKind {
        V::KIND
    }

    fn max_batch(&self) -> usize {
        self.batch_limit()
    }

    /// A hash of the content as sent without its tokens: pushes with equal keys differ only
    /// in their tokens. The badge is part of it only when a badge class puts it on the wire.
    fn batch_key(&self, push: &VendorPush) -> Option<u64> {
        let content = self.content(push).ok()?;
        Some(super::batch_key_of(&content))
    }

    /// The OAuth 2.0 client-credentials call (a form body).
    fn auth_plan(&self, _now: Timestamp) -> AuthPlan {
        let client = self.oauth();
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client.client_id)
            .append_pair("client_secret", client.client_secret)
            .finish();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        let url = client.token_url.clone();
        AuthPlan::Remote(Ok(VendorRequest { method: Method::POST, url, headers, body: Bytes::from(form) }))
    }

    /// `200 {access_token, expires_in?}` → the token, refreshed [`REFRESH_MARGIN`] before it
    /// expires, or after the vendor's `REFRESH_WITHOUT_EXPIRY` when the answer gives no life.
    /// A refused client (wrong secret, 4xx) is Fatal for the credential; 5xx, 429 and an
    /// unreadable 200 are transient.
    fn parse_auth(&self, status: StatusCode, body: &[u8], now: Timestamp) -> Result<AuthToken, Outcome> {
        super::oauth2::access_token(status, body, now, Some(V::REFRESH_WITHOUT_EXPIRY))
    }

    fn payload_limit(&self, _push: &VendorPush) -> usize {
        V::PAYLOAD_LIMIT
    }

    /// Bytes of the serialized content without its tokens; `usize::MAX` if it cannot be
    /// encoded.
    fn payload_size(&self, push: &VendorPush) -> usize {
        self.content(push).map_or(usize::MAX, |c| c.len())
    }

    fn request(
        &self,
        push: &VendorPush,
        tokens: &[Token],
        auth: Option<&AuthToken>,
        now: Timestamp,
    ) -> Result<VendorRequest, BuildError> {
        if tokens.is_empty() || tokens.len() > self.batch_limit() {
            return Err(BuildError::Payload(V::TEXTS.batch));
        }
        let access = auth.ok_or(BuildError::Signing(V::TEXTS.no_access_token))?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", access.value))
            .map_err(|_| BuildError::Signing(V::TEXTS.bad_access_token))?;
        authorization.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
        self.more_headers(&mut headers, now);
        let body = self.body(push, tokens.iter().map(Token::as_str).collect())?;
        Ok(VendorRequest { method: Method::POST, url: self.send_url().clone(), headers, body: Bytes::from(body) })
    }

    fn classify(&self, tokens: &[Token], status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<Outcome> {
        outcomes::<V>(tokens, status, headers, body)
    }
}

/// The token and send URLs of a credential once both parsed; their problems otherwise.
pub(crate) fn endpoints(
    token_url: Result<url::Url, Problem>,
    send_url: Result<url::Url, Problem>,
    problems: &mut Vec<Problem>,
) -> Option<(url::Url, url::Url)> {
    match (token_url, send_url) {
        (Ok(t), Ok(s)) => Some((t, s)),
        (t, s) => {
            problems.extend(t.err().into_iter().chain(s.err()));
            None
        }
    }
}

/// An optional text setting that must not be blank when given.
pub(crate) fn optional_text(field: &str, value: Option<String>, problems: &mut Vec<Problem>) -> Option<String> {
    match value {
        Some(v) if v.trim().is_empty() => {
            problems.push(Problem::new(field, "must not be empty when set"));
            None
        }
        other => other,
    }
}
