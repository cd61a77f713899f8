//! Delivery to the vendors. One trait, [`Vendor`], for what differs between vendors (wire
//! format, auth call, error table); one shared layer, [`actor::ProviderActor`] (one per
//! credential), for everything else: rate limit, in-flight cap, auth-token cache with
//! refresh-once, retries with jittered backoff and deadline, metrics, reporting outcomes.
//!
//! ```text
//! Session ──Deliver──▶ ProviderActor ──(rate limit, permit, auth)──▶ Vendor::request
//!                           ▲                                         │ h2 (APNs) or reqwest
//!                           └── retry / refresh ◀── Vendor::classify ◀┘
//!                           └──▶ DeliveryReport to the session (trace, pruning, dedup)
//! ```
//!
//! A vendor module is pure: it builds requests and classifies answers, and never sleeps,
//! retries or counts metrics.

pub mod actor;
pub mod apns;
pub mod auth_cache;
pub mod credential;
pub mod fcm;
#[cfg(test)]
pub(crate) mod fixtures;
mod form;
pub mod h2;
mod hms;
pub mod honor;
pub mod huawei;
pub mod meizu;
pub mod oauth2;
pub mod oppo;
pub mod proxy;
pub mod retry;
pub mod vivo;
pub mod xiaomi;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use crate::model::{PushType, Timestamp, Token, VendorKind};

/// Everything the rest of pushd needs to know about a vendor's answer for one token.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The vendor accepted the push.
    Delivered,
    /// The token is dead: prune it. `since` is when the vendor last saw it invalid (APNs 410
    /// timestamp); a token registered after that instant is kept.
    InvalidToken { reason: &'static str, since: Option<Timestamp> },
    /// Transient: 429, 5xx, busy codes, timeout, connection loss.
    Retry { after: Option<Duration>, reason: &'static str },
    /// "Not again today": park until `until`, or when `None`, until the vendor's quota day
    /// rolls over (00:00 China Standard Time; the shared layer computes it).
    QuotaExhausted { until: Option<Timestamp>, reason: &'static str },
    /// The cached auth token was rejected: refresh it once and retry.
    RefreshAuth { reason: &'static str },
    /// Bad payload or bad credential: recorded, never retried.
    Fatal { reason: &'static str },
}

impl Outcome {
    /// The outcome class as a metric label / trace word.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::InvalidToken { .. } => "invalid_token",
            Outcome::Retry { .. } => "retry",
            Outcome::QuotaExhausted { .. } => "quota_exhausted",
            Outcome::RefreshAuth { .. } => "refresh_auth",
            Outcome::Fatal { .. } => "fatal",
        }
    }

    /// The static reason (a metric label; never carries a token or raw vendor text).
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Delivered => "ok",
            Outcome::InvalidToken { reason, .. }
            | Outcome::Retry { reason, .. }
            | Outcome::QuotaExhausted { reason, .. }
            | Outcome::RefreshAuth { reason }
            | Outcome::Fatal { reason } => reason,
        }
    }
}

/// Vendor priority of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Deliver now, wake the device.
    High,
    /// Power-aware delivery (silent pushes, `prio: low`).
    Normal,
}

/// A rendered, vendor-neutral push: what one device (or a batch of devices with identical
/// content) is sent. Built by `render`, turned into a wire request by a [`Vendor`].
#[derive(Debug, Clone, PartialEq)]
pub struct VendorPush {
    pub push_type: PushType,
    pub title: String,
    pub body: String,
    pub badge: Option<u32>,
    pub sound: Option<String>,
    pub priority: Priority,
    /// Replaces an earlier notification with the same id (APNs collapse id, FCM collapse key).
    pub collapse_id: Option<String>,
    /// How long the vendor may store the push; `None` = the vendor's default.
    pub ttl: Option<Duration>,
    /// When the push was rendered; expiry headers are computed from it and `ttl`.
    pub created_at: Timestamp,
    /// Conversation id, for grouping (`thread-id`, notification tag).
    pub thread_id: Option<String>,
    /// Custom data for deep links: message id (`msg`), conversation id (`conv`), sender
    /// (`sender`), and the message's own `push.data`.
    pub data: BTreeMap<String, String>,
}

/// A wire request a vendor module built; the shared layer sends it.
#[derive(Debug, Clone)]
pub struct VendorRequest {
    pub method: Method,
    pub url: url::Url,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A vendor auth token (or self-signed JWT) with its life.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthToken {
    /// The header value material (`bearer <jwt>`, an access token…); never logged.
    pub value: String,
    /// Refresh when `now >= refresh_at` (before the vendor would reject it).
    pub refresh_at: Timestamp,
}

/// How a vendor authenticates its send calls.
pub enum AuthPlan {
    /// Per-request material only (certificate, static key, per-request signature).
    None,
    /// A token pushd signs itself (APNs JWT).
    Local(Result<AuthToken, BuildError>),
    /// A token fetched from the vendor with this request; read with [`Vendor::parse_auth`].
    Remote(Result<VendorRequest, BuildError>),
}

/// A request could not be built (bad key material, unencodable payload…): Fatal for the push.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuildError {
    #[error("signing failed: {0}")]
    Signing(&'static str),
    #[error("payload: {0}")]
    Payload(&'static str),
}

/// The `Retry-After` header in seconds (its HTTP-date form is ignored: `classify` has no
/// clock). Shared by every vendor that may send it.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A batch key: the hash of what a vendor's request sends apart from its tokens. Keys live only
/// inside one process, so the std hasher is fine.
pub fn batch_key_of(content: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    content.hash(&mut h);
    h.finish()
}

/// A JSON string or number as text: vendors' business codes come as either.
pub fn code_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What differs between vendors. Implementations are pure: unit-test them without a network.
pub trait Vendor: Send + Sync + 'static {
    /// Which vendor this is.
    fn kind(&self) -> VendorKind;

    /// How many tokens one request may carry for identical content (1 for APNs and FCM).
    fn max_batch(&self) -> usize {
        1
    }

    /// Pushes with the same key carry the same wire content apart from their tokens, so the
    /// shared layer may send them in one request (up to [`Vendor::max_batch`] tokens). `None`
    /// (the default) never batches. Hash only what the vendor's request actually sends: a
    /// vendor without a badge field ignores the per-user badge, so group fan-out batches.
    fn batch_key(&self, push: &VendorPush) -> Option<u64> {
        let _ = push;
        None
    }

    /// How to get auth material at `now`.
    fn auth_plan(&self, now: Timestamp) -> AuthPlan;

    /// Reads the answer to the [`AuthPlan::Remote`] request into a token with its refresh time.
    fn parse_auth(&self, status: StatusCode, body: &[u8], now: Timestamp) -> Result<AuthToken, Outcome> {
        let _ = (status, body, now);
        Err(Outcome::Fatal { reason: "auth_not_supported" })
    }

    /// The largest payload the vendor accepts for this push, in the unit of
    /// [`Vendor::payload_size`].
    fn payload_limit(&self, push: &VendorPush) -> usize;

    /// The size of `push` as the vendor counts it (bytes of the JSON for APNs…).
    fn payload_size(&self, push: &VendorPush) -> usize;

    /// One request for a batch of tokens sharing one rendered push.
    fn request(
        &self,
        push: &VendorPush,
        tokens: &[Token],
        auth: Option<&AuthToken>,
        now: Timestamp,
    ) -> Result<VendorRequest, BuildError>;

    /// For vendors whose batch send needs its content uploaded first (vivo: `saveListPayload`
    /// answers a `taskId` that `pushToList` then names): the upload request for a batch of
    /// `tokens` (called only when a request carries more than one token). `None`, the default:
    /// no such step. The shared layer sends it once per batch and keeps the answer for the
    /// batch's retries; once more if [`Vendor::prepared_expired`] says the vendor forgot it,
    /// then with `expired` = the forgotten id, so the vendor can make the new upload distinct
    /// from the first (vivo would otherwise deduplicate it into the dead task).
    fn prepare(
        &self,
        push: &VendorPush,
        tokens: &[Token],
        auth: Option<&AuthToken>,
        expired: Option<&str>,
        now: Timestamp,
    ) -> Option<Result<VendorRequest, BuildError>> {
        let _ = (push, tokens, auth, expired, now);
        None
    }

    /// Reads the answer to [`Vendor::prepare`] into the id the batch request names.
    fn parse_prepare(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<String, Outcome> {
        let _ = (status, headers, body);
        Err(Outcome::Fatal { reason: "prepare_not_supported" })
    }

    /// The batch request after a [`Vendor::prepare`] step answered `prepared`; by default the
    /// same as [`Vendor::request`].
    fn request_prepared(
        &self,
        push: &VendorPush,
        tokens: &[Token],
        auth: Option<&AuthToken>,
        prepared: &str,
        now: Timestamp,
    ) -> Result<VendorRequest, BuildError> {
        let _ = prepared;
        self.request(push, tokens, auth, now)
    }

    /// Whether the answer to a [`Vendor::request_prepared`] request says the vendor no longer
    /// knows the prepared id (vivo 10151: the `taskId` expired). The shared layer then prepares
    /// again and resends at once, once per batch; a second such answer is classified as usual.
    /// The default: never.
    fn prepared_expired(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> bool {
        let _ = (status, headers, body);
        false
    }

    /// One outcome per token of the request, from status, headers and body.
    fn classify(&self, tokens: &[Token], status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<Outcome>;
}
