//! APNs (Apple Push Notification service, HTTP/2 provider API): the wire format, the ES256
//! provider-token JWT and the error table of `docs/vendors/apns.md`.
//!
//! Owns: the request for one device (`POST {endpoint}/3/device/{token}` with the `apns-*`
//! headers and the JSON body), the JWT pushd signs itself ([`AuthPlan::Local`]), and the
//! mapping of every documented APNs answer to an [`Outcome`].
//!
//! Deliberately not here: the HTTP/2 transport, the TLS client certificate (certificate auth is
//! set on the transport by the shared layer), token caching and the 20–60 min reuse window
//! (the shared auth cache keeps the token; [`JWT_REFRESH_AFTER`] and [`JWT_MIN_AGE`] tell it
//! when), retries, sleeping and metrics.
//!
//! a2 supplies the payload vocabulary: the `aps` dictionary is built with
//! [`DefaultNotificationBuilder`] into a2's [`APS`] type, and answer reasons are read with a2's
//! [`ErrorReason`]. a2 0.10 has no `thread-id`, so [`ApnsBody`] wraps a2's `APS` and adds it;
//! custom data keys are siblings of `aps`, as Apple requires.
//!
//! ```text
//! VendorPush ─▶ ApnsBody { aps: a2 APS + thread-id, data… } ─▶ JSON ─▶ VendorRequest
//! (status, body {"reason","timestamp"}) ─▶ reason word ─▶ Outcome
//! ```

use std::collections::BTreeMap;
use std::fmt;

use a2::request::notification::{DefaultNotificationBuilder, NotificationBuilder, NotificationOptions};
use a2::request::payload::APS;
use a2::ErrorReason;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::de::IntoDeserializer;
use serde::{Deserialize, Serialize};

use super::retry_after;
use super::{AuthPlan, AuthToken, BuildError, Outcome, Priority, Vendor, VendorPush, VendorRequest};
use crate::model::{PushType, Timestamp, Token, VendorKind};

/// Re-sign the provider token when it is this old. APNs rejects tokens older than 60 min
/// (`ExpiredProviderToken`); reference clients refresh at 50 (sideshow/apns2) or 55 min (a2).
pub const JWT_REFRESH_AFTER: chrono::Duration = chrono::Duration::minutes(50);

/// Never replace a provider token younger than this: APNs answers a second token change within
/// 20 minutes on a connection with `429 TooManyProviderTokenUpdates`. For the shared auth cache.
pub const JWT_MIN_AGE: chrono::Duration = chrono::Duration::minutes(20);

/// Largest body APNs accepts for every push type except VoIP, in bytes.
pub const PAYLOAD_LIMIT: usize = 4096;

/// Largest body APNs accepts for a VoIP (PushKit) push, in bytes.
pub const VOIP_PAYLOAD_LIMIT: usize = 5120;

/// A collapse id for a message id: the id itself when it fits in 64 bytes, else the hex of the
/// first 24 bytes of its SHA-256 (48 characters).
fn collapse_id_for(message_id: &str) -> String {
    if message_id.len() <= MAX_COLLAPSE_ID_BYTES {
        return message_id.to_owned();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, message_id.as_bytes());
    digest.as_ref()[..24].iter().map(|b| format!("{b:02x}")).collect()
}

/// Longest `apns-collapse-id` APNs accepts (`400 BadCollapseId` above it), in bytes.
pub const MAX_COLLAPSE_ID_BYTES: usize = 64;

/// How pushd authenticates to APNs for one credential.
#[derive(Clone)]
pub enum ApnsAuth {
    /// Provider-token auth: an ES256 JWT signed with the team's `.p8` key.
    Token {
        /// The `.p8` file's content (PKCS#8 PEM, EC P-256).
        key_pem: String,
        /// The 10-character key id (`kid`).
        key_id: String,
        /// The 10-character team id (`iss`).
        team_id: String,
    },
    /// TLS client certificate: the identity is set on the transport by the shared layer, and
    /// requests carry no `authorization` header.
    Certificate,
}

impl fmt::Debug for ApnsAuth {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApnsAuth::Token { key_id, team_id, .. } => f
                .debug_struct("Token")
                .field("key_pem", &"<redacted>")
                .field("key_id", key_id)
                .field("team_id", team_id)
                .finish(),
            ApnsAuth::Certificate => f.write_str("Certificate"),
        }
    }
}

/// Configuration of one APNs credential.
#[derive(Debug, Clone)]
pub struct ApnsConfig {
    /// Base URL: `https://api.push.apple.com`, the sandbox host, or the loopback mock.
    pub endpoint: url::Url,
    /// The app's bundle id; `.voip` is appended for VoIP pushes.
    pub topic: String,
    /// Token or certificate auth.
    pub auth: ApnsAuth,
}

/// The APNs vendor: builds requests and classifies answers for one credential.
pub struct Apns {
    endpoint: url::Url,
    topic: HeaderValue,
    voip_topic: HeaderValue,
    signer: Option<Signer>,
}

/// The parsed `.p8` key with the ids that go into the JWT.
struct Signer {
    key: EncodingKey,
    header: Header,
    team_id: String,
}

impl fmt::Debug for Apns {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Apns")
            .field("endpoint", &self.endpoint.as_str())
            .field("topic", &self.topic)
            .field("token_auth", &self.signer.is_some())
            .finish()
    }
}

/// JWT claims of an APNs provider token: exactly `iss` and `iat` (no `exp`).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

impl Signer {
    fn sign(&self, now: Timestamp) -> Result<String, BuildError> {
        let claims = Claims { iss: &self.team_id, iat: now.timestamp() };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map_err(|_| BuildError::Signing("APNs provider token could not be signed with the .p8 key"))
    }
}

impl Apns {
    /// Validates the configuration and parses the key once, so a bad `.p8` file fails at
    /// startup rather than on the first push.
    pub fn new(cfg: ApnsConfig) -> Result<Apns, BuildError> {
        if !matches!(cfg.endpoint.scheme(), "https" | "http") || cfg.endpoint.cannot_be_a_base() {
            return Err(BuildError::Payload("APNs endpoint must be an http(s) base URL"));
        }
        let topic = HeaderValue::from_str(&cfg.topic)
            .map_err(|_| BuildError::Payload("APNs topic is not a valid header value"))?;
        let voip_topic = HeaderValue::from_str(&format!("{}.voip", cfg.topic))
            .map_err(|_| BuildError::Payload("APNs topic is not a valid header value"))?;
        let signer = match cfg.auth {
            ApnsAuth::Certificate => None,
            ApnsAuth::Token { key_pem, key_id, team_id } => {
                let key = EncodingKey::from_ec_pem(key_pem.as_bytes())
                    .map_err(|_| BuildError::Signing("APNs key is not a PKCS#8 PEM EC private key"))?;
                let mut header = Header::new(Algorithm::ES256);
                // Apple's header is exactly {alg, kid}.
                header.typ = None;
                header.kid = Some(key_id);
                let signer = Signer { key, header, team_id };
                // Parsing the PEM does not load the key into ring; one signature does.
                signer.sign(Timestamp::UNIX_EPOCH)?;
                Some(signer)
            }
        };
        Ok(Apns { endpoint: cfg.endpoint, topic, voip_topic, signer })
    }

    /// The JSON body for `push`, exactly as sent.
    fn body(&self, push: &VendorPush) -> Result<Vec<u8>, BuildError> {
        if push.data.contains_key("aps") {
            return Err(BuildError::Payload("data key \"aps\" is reserved by APNs"));
        }
        let mut data: BTreeMap<&str, &str> = push.data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let aps = match push.push_type {
            PushType::Alert if push.title.is_empty() && push.body.is_empty() => {
                // A badge-only update (e.g. a Matrix notify without an event): no alert to
                // show, nothing for a notification service extension to rewrite.
                let mut builder = DefaultNotificationBuilder::new();
                if let Some(badge) = push.badge {
                    builder = builder.set_badge(badge);
                }
                let mut aps = builder.build("", NotificationOptions::default()).aps;
                aps.alert = None;
                aps.mutable_content = None;
                aps
            }
            PushType::Alert => {
                let mut builder =
                    DefaultNotificationBuilder::new().set_title(&push.title).set_body(&push.body).set_mutable_content();
                if let Some(badge) = push.badge {
                    builder = builder.set_badge(badge);
                }
                if let Some(sound) = &push.sound {
                    builder = builder.set_sound(sound);
                }
                builder.build("", NotificationOptions::default()).aps
            }
            PushType::Silent => {
                let mut aps = DefaultNotificationBuilder::new()
                    .set_content_available()
                    .build("", NotificationOptions::default())
                    .aps;
                // a2 always writes `mutable-content: 0`; Apple's background push is only
                // `content-available: 1`.
                aps.mutable_content = None;
                aps
            }
            PushType::Voip => {
                // PushKit hands the whole JSON to the app, which draws the call screen from
                // these keys: keep title and body as custom data.
                if !push.title.is_empty() {
                    data.insert("title", &push.title);
                }
                if !push.body.is_empty() {
                    data.insert("body", &push.body);
                }
                APS::default()
            }
        };
        let thread_id = match push.push_type {
            PushType::Alert => push.thread_id.as_deref(),
            PushType::Silent | PushType::Voip => None,
        };
        let body = ApnsBody { aps: Aps { base: aps, thread_id }, data };
        serde_json::to_vec(&body).map_err(|_| BuildError::Payload("APNs body could not be encoded as JSON"))
    }

    fn url_for(&self, token: &Token) -> Result<url::Url, BuildError> {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .map_err(|_| BuildError::Payload("APNs endpoint must be an http(s) base URL"))?
            .pop_if_empty()
            .extend(["3", "device", token.as_str()]);
        Ok(url)
    }
}

/// The request body: a2's `aps` plus `thread-id`, and custom keys as siblings of `aps`.
#[derive(Serialize)]
struct ApnsBody<'a> {
    aps: Aps<'a>,
    #[serde(flatten)]
    data: BTreeMap<&'a str, &'a str>,
}

/// a2's [`APS`] extended with the key a2 0.10 lacks.
#[derive(Serialize)]
struct Aps<'a> {
    #[serde(flatten)]
    base: APS<'a>,
    #[serde(rename = "thread-id", skip_serializing_if = "Option::is_none")]
    thread_id: Option<&'a str>,
}

/// An APNs error body: `{"reason": "...", "timestamp": <ms>}` (timestamp on 410 only).
#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    timestamp: Option<i64>,
}

/// Reasons Apple documents that a2 0.10's [`ErrorReason`] does not know.
const REASONS_MISSING_IN_A2: [&str; 3] = ["ExpiredToken", "InvalidPushType", "UnrelatedKeyIdInToken"];

/// The static word for an APNs reason: a2's [`ErrorReason`] vocabulary, plus
/// [`REASONS_MISSING_IN_A2`]; anything else is `"unknown"` (never the raw vendor text).
fn reason_word(reason: &str) -> &'static str {
    let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = reason.into_deserializer();
    match ErrorReason::deserialize(de) {
        Ok(known) => a2_reason_word(&known),
        Err(_) => REASONS_MISSING_IN_A2.iter().copied().find(|r| *r == reason).unwrap_or("unknown"),
    }
}

/// a2's reasons as static words; exhaustive, so a new a2 reason fails the build here.
fn a2_reason_word(reason: &ErrorReason) -> &'static str {
    match reason {
        ErrorReason::BadCollapseId => "BadCollapseId",
        ErrorReason::BadDeviceToken => "BadDeviceToken",
        ErrorReason::BadExpirationDate => "BadExpirationDate",
        ErrorReason::BadMessageId => "BadMessageId",
        ErrorReason::BadPriority => "BadPriority",
        ErrorReason::BadTopic => "BadTopic",
        ErrorReason::DeviceTokenNotForTopic => "DeviceTokenNotForTopic",
        ErrorReason::DuplicateHeaders => "DuplicateHeaders",
        ErrorReason::IdleTimeout => "IdleTimeout",
        ErrorReason::MissingDeviceToken => "MissingDeviceToken",
        ErrorReason::MissingTopic => "MissingTopic",
        ErrorReason::PayloadEmpty => "PayloadEmpty",
        ErrorReason::TopicDisallowed => "TopicDisallowed",
        ErrorReason::BadCertificate => "BadCertificate",
        ErrorReason::BadCertificateEnvironment => "BadCertificateEnvironment",
        ErrorReason::ExpiredProviderToken => "ExpiredProviderToken",
        ErrorReason::Forbidden => "Forbidden",
        ErrorReason::InvalidProviderToken => "InvalidProviderToken",
        ErrorReason::MissingProviderToken => "MissingProviderToken",
        ErrorReason::BadPath => "BadPath",
        ErrorReason::MethodNotAllowed => "MethodNotAllowed",
        ErrorReason::Unregistered => "Unregistered",
        ErrorReason::PayloadTooLarge => "PayloadTooLarge",
        ErrorReason::TooManyProviderTokenUpdates => "TooManyProviderTokenUpdates",
        ErrorReason::TooManyRequests => "TooManyRequests",
        ErrorReason::InternalServerError => "InternalServerError",
        ErrorReason::ServiceUnavailable => "ServiceUnavailable",
        ErrorReason::Shutdown => "Shutdown",
    }
}

/// The APNs table (apns.md §5) for one answer.
fn outcome(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    let answer = serde_json::from_slice::<ErrorAnswer>(body).ok();
    let reason = answer.as_ref().and_then(|a| a.reason.as_deref()).map_or("unknown", reason_word);
    let retry = |reason| Outcome::Retry { after: retry_after(headers), reason };
    match reason {
        "Unregistered" => {
            let since =
                answer.and_then(|a| a.timestamp).and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis);
            Outcome::InvalidToken { reason, since }
        }
        "BadDeviceToken" | "DeviceTokenNotForTopic" | "ExpiredToken" => Outcome::InvalidToken { reason, since: None },
        "ExpiredProviderToken" | "InvalidProviderToken" => Outcome::RefreshAuth { reason },
        // Not re-signing on TooManyProviderTokenUpdates is the point: Retry keeps the token.
        // IdleTimeout, Shutdown and UnrelatedKeyIdInToken want a fresh connection; the
        // transport replaces a connection closed by GOAWAY on its own.
        "TooManyProviderTokenUpdates"
        | "TooManyRequests"
        | "IdleTimeout"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "Shutdown"
        | "UnrelatedKeyIdInToken" => retry(reason),
        "unknown" if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => retry(reason),
        "unknown" if status.is_client_error() => Outcome::Fatal { reason },
        "unknown" => retry(reason),
        // Every other documented reason is a bad request, payload or credential.
        _ => Outcome::Fatal { reason },
    }
}

impl Vendor for Apns {
    fn kind(&self) -> VendorKind {
        VendorKind::Apns
    }

    /// Token auth: a fresh ES256 JWT, to be reused for [`JWT_REFRESH_AFTER`].
    /// Certificate auth: nothing per request.
    fn auth_plan(&self, now: Timestamp) -> AuthPlan {
        match &self.signer {
            None => AuthPlan::None,
            Some(signer) => {
                AuthPlan::Local(signer.sign(now).map(|value| AuthToken { value, refresh_at: now + JWT_REFRESH_AFTER }))
            }
        }
    }

    fn payload_limit(&self, push: &VendorPush) -> usize {
        match push.push_type {
            PushType::Voip => VOIP_PAYLOAD_LIMIT,
            PushType::Alert | PushType::Silent => PAYLOAD_LIMIT,
        }
    }

    /// Bytes of the JSON body as sent. A push that cannot be encoded (reserved `aps` data key)
    /// counts as `usize::MAX`: no truncation makes it fit, and [`Vendor::request`] refuses it.
    fn payload_size(&self, push: &VendorPush) -> usize {
        self.body(push).map_or(usize::MAX, |b| b.len())
    }

    fn request(
        &self,
        push: &VendorPush,
        tokens: &[Token],
        auth: Option<&AuthToken>,
        _now: Timestamp,
    ) -> Result<VendorRequest, BuildError> {
        let [token] = tokens else {
            return Err(BuildError::Payload("APNs takes exactly one token per request"));
        };
        let mut headers = HeaderMap::new();
        if self.signer.is_some() {
            let jwt = auth.ok_or(BuildError::Signing("APNs token auth needs a provider token"))?;
            let mut value = HeaderValue::from_str(&format!("bearer {}", jwt.value))
                .map_err(|_| BuildError::Signing("APNs provider token is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let (push_type, topic) = match push.push_type {
            PushType::Alert => ("alert", &self.topic),
            PushType::Silent => ("background", &self.topic),
            PushType::Voip => ("voip", &self.voip_topic),
        };
        // Background pushes must be priority 5 (10 is an error); see apns.md §3.
        let priority = match (push.push_type, push.priority) {
            (PushType::Alert | PushType::Voip, Priority::High) => "10",
            (PushType::Silent, _) | (_, Priority::Normal) => "5",
        };
        headers.insert(HeaderName::from_static("apns-push-type"), HeaderValue::from_static(push_type));
        headers.insert(HeaderName::from_static("apns-topic"), topic.clone());
        headers.insert(HeaderName::from_static("apns-priority"), HeaderValue::from_static(priority));
        if let Some(ttl) = push.ttl {
            let expiration = i64::try_from(ttl.as_secs())
                .ok()
                .and_then(|ttl| push.created_at.timestamp().checked_add(ttl))
                .ok_or(BuildError::Payload("ttl out of range"))?;
            headers.insert(HeaderName::from_static("apns-expiration"), HeaderValue::from(expiration));
        }
        // Without a collapse id of its own, a push collapses on its message id: if a crash
        // makes pushd send it again (the at-least-once window, docs/durability.md), the
        // device replaces the notification instead of showing it twice.
        let by_message = push.data.get(crate::render::DATA_MESSAGE).map(|id| collapse_id_for(id));
        if let Some(collapse_id) = push.collapse_id.as_ref().or(by_message.as_ref()) {
            if collapse_id.len() > MAX_COLLAPSE_ID_BYTES {
                return Err(BuildError::Payload("APNs collapse id is longer than 64 bytes"));
            }
            let value = HeaderValue::from_str(collapse_id)
                .map_err(|_| BuildError::Payload("APNs collapse id is not a valid header value"))?;
            headers.insert(HeaderName::from_static("apns-collapse-id"), value);
        }
        // From the thread-local generator: `Uuid::new_v4` asks the kernel for its random bytes,
        // a system call per push (1.3 % of pushd's CPU in the fan-out profile).
        let apns_id = uuid::Builder::from_random_bytes(rand::random()).into_uuid().hyphenated().to_string();
        headers.insert(
            HeaderName::from_static("apns-id"),
            HeaderValue::from_str(&apns_id).map_err(|_| BuildError::Payload("apns-id is not a valid header value"))?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(VendorRequest {
            method: Method::POST,
            url: self.url_for(token)?,
            headers,
            body: Bytes::from(self.body(push)?),
        })
    }

    fn classify(&self, tokens: &[Token], status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<Outcome> {
        let outcome = outcome(status, headers, body);
        vec![outcome; tokens.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde_json::{json, Value};
    use std::time::Duration;

    const TOKEN_HEX: &str = "5c1f3a0e9d2b4c6a8e0f1d3b5a7c9e2f4a6b8d0c2e4f6a8b0d2c4e6f8a0b2c4d";

    fn key_pem() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo/apns-demo-key.p8"))
            .expect("the demo key is committed")
    }

    fn public_pem() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo/apns-demo-key.pub.pem"))
            .expect("the demo public key is committed")
    }

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(secs, 0).expect("valid test time")
    }

    fn token_apns() -> Apns {
        Apns::new(ApnsConfig {
            endpoint: url::Url::parse("https://api.push.apple.com").expect("url"),
            topic: "com.example.im".into(),
            auth: ApnsAuth::Token { key_pem: key_pem(), key_id: "KEY1234567".into(), team_id: "TEAM123456".into() },
        })
        .expect("demo key parses")
    }

    fn cert_apns() -> Apns {
        Apns::new(ApnsConfig {
            endpoint: url::Url::parse("https://127.0.0.1:8443/").expect("url"),
            topic: "com.example.im".into(),
            auth: ApnsAuth::Certificate,
        })
        .expect("certificate config")
    }

    fn push(push_type: PushType) -> VendorPush {
        VendorPush {
            push_type,
            title: "Alice".into(),
            body: "See you at 3?".into(),
            badge: Some(7),
            sound: Some("default".into()),
            priority: if push_type == PushType::Silent { Priority::Normal } else { Priority::High },
            collapse_id: Some("conv-42".into()),
            ttl: Some(Duration::from_secs(86_400)),
            created_at: at(1_767_225_600),
            thread_id: Some("conv-42".into()),
            data: BTreeMap::from([("conv".to_string(), "42".to_string()), ("msg".to_string(), "9f1c".to_string())]),
        }
    }

    fn token() -> Token {
        Token::parse_for(VendorKind::Apns, TOKEN_HEX).expect("hex token")
    }

    fn jwt(apns: &Apns, now: Timestamp) -> AuthToken {
        match apns.auth_plan(now) {
            AuthPlan::Local(Ok(t)) => t,
            _ => panic!("token auth signs locally"),
        }
    }

    fn header<'a>(req: &'a VendorRequest, name: &str) -> Option<&'a str> {
        req.headers.get(name).map(|v| v.to_str().expect("ascii header"))
    }

    fn body_json(req: &VendorRequest) -> Value {
        serde_json::from_slice(&req.body).expect("JSON body")
    }

    #[test]
    fn alert_push_carries_every_header_and_the_aps_dictionary() {
        let apns = token_apns();
        let now = at(1_767_225_600);
        let auth = jwt(&apns, now);
        let req = apns.request(&push(PushType::Alert), &[token()], Some(&auth), now).expect("request");

        assert_eq!(req.method, Method::POST);
        assert_eq!(req.url.as_str(), format!("https://api.push.apple.com/3/device/{TOKEN_HEX}"));
        assert_eq!(header(&req, "authorization"), Some(format!("bearer {}", auth.value).as_str()));
        assert!(req.headers.get("authorization").expect("auth").is_sensitive());
        assert_eq!(header(&req, "apns-push-type"), Some("alert"));
        assert_eq!(header(&req, "apns-topic"), Some("com.example.im"));
        assert_eq!(header(&req, "apns-priority"), Some("10"));
        assert_eq!(header(&req, "apns-expiration"), Some("1767312000"));
        assert_eq!(header(&req, "apns-collapse-id"), Some("conv-42"));
        assert_eq!(header(&req, "content-type"), Some("application/json"));
        let id = header(&req, "apns-id").expect("apns-id");
        assert_eq!(uuid::Uuid::parse_str(id).expect("uuid").get_version_num(), 4);
        assert_eq!(id, id.to_ascii_lowercase());
        assert_eq!(id.len(), 36);

        assert_eq!(
            body_json(&req),
            json!({
                "aps": {
                    "alert": { "title": "Alice", "body": "See you at 3?" },
                    "badge": 7,
                    "sound": "default",
                    "thread-id": "conv-42",
                    "mutable-content": 1
                },
                "conv": "42",
                "msg": "9f1c"
            })
        );
    }

    #[test]
    fn alert_push_with_normal_priority_is_sent_at_priority_5() {
        let apns = cert_apns();
        let mut p = push(PushType::Alert);
        p.priority = Priority::Normal;
        let req = apns.request(&p, &[token()], None, at(0)).expect("request");
        assert_eq!(header(&req, "apns-priority"), Some("5"));
    }

    #[test]
    fn silent_push_is_a_background_push_with_content_available_only() {
        let apns = token_apns();
        let now = at(1_767_225_600);
        let mut p = push(PushType::Silent);
        p.priority = Priority::High; // background is priority 5 whatever the push asked
        let req = apns.request(&p, &[token()], Some(&jwt(&apns, now)), now).expect("request");
        assert_eq!(header(&req, "apns-push-type"), Some("background"));
        assert_eq!(header(&req, "apns-topic"), Some("com.example.im"));
        assert_eq!(header(&req, "apns-priority"), Some("5"));
        assert_eq!(body_json(&req), json!({ "aps": { "content-available": 1 }, "conv": "42", "msg": "9f1c" }));
    }

    #[test]
    fn voip_push_goes_to_the_voip_topic_with_title_and_body_as_data() {
        let apns = token_apns();
        let now = at(1_767_225_600);
        let req = apns.request(&push(PushType::Voip), &[token()], Some(&jwt(&apns, now)), now).expect("request");
        assert_eq!(header(&req, "apns-push-type"), Some("voip"));
        assert_eq!(header(&req, "apns-topic"), Some("com.example.im.voip"));
        assert_eq!(header(&req, "apns-priority"), Some("10"));
        assert_eq!(
            body_json(&req),
            json!({ "aps": {}, "conv": "42", "msg": "9f1c", "title": "Alice", "body": "See you at 3?" })
        );
    }

    #[test]
    fn optional_headers_and_keys_are_left_out_when_unset() {
        let apns = cert_apns();
        let mut p = push(PushType::Alert);
        p.ttl = None;
        p.collapse_id = None;
        p.badge = None;
        p.sound = None;
        p.thread_id = None;
        p.data.clear();
        let req = apns.request(&p, &[token()], None, at(0)).expect("request");
        assert!(req.headers.get("apns-expiration").is_none());
        assert!(req.headers.get("apns-collapse-id").is_none());
        assert_eq!(
            body_json(&req),
            json!({ "aps": { "alert": { "title": "Alice", "body": "See you at 3?" }, "mutable-content": 1 } })
        );
    }

    #[test]
    fn certificate_auth_sends_no_authorization_header_and_keeps_the_endpoint_path() {
        let apns = cert_apns();
        assert!(matches!(apns.auth_plan(at(0)), AuthPlan::None));
        let req = apns.request(&push(PushType::Alert), &[token()], None, at(0)).expect("request");
        assert!(req.headers.get("authorization").is_none());
        assert_eq!(req.url.as_str(), format!("https://127.0.0.1:8443/3/device/{TOKEN_HEX}"));
    }

    #[test]
    fn token_auth_without_a_provider_token_is_a_signing_error() {
        let apns = token_apns();
        let err = apns.request(&push(PushType::Alert), &[token()], None, at(0)).expect_err("no token");
        assert!(matches!(err, BuildError::Signing(_)));
    }

    #[test]
    fn collapse_id_longer_than_64_bytes_is_a_payload_error() {
        let apns = cert_apns();
        let mut p = push(PushType::Alert);
        p.collapse_id = Some("x".repeat(64));
        assert!(apns.request(&p, &[token()], None, at(0)).is_ok());
        p.collapse_id = Some("x".repeat(65));
        assert!(matches!(apns.request(&p, &[token()], None, at(0)), Err(BuildError::Payload(_))));
    }

    #[test]
    fn a_data_key_named_aps_is_refused() {
        let apns = cert_apns();
        let mut p = push(PushType::Alert);
        p.data.insert("aps".into(), "x".into());
        assert!(matches!(apns.request(&p, &[token()], None, at(0)), Err(BuildError::Payload(_))));
        assert_eq!(apns.payload_size(&p), usize::MAX);
    }

    #[test]
    fn a_request_takes_exactly_one_token() {
        let apns = cert_apns();
        assert_eq!(apns.max_batch(), 1);
        assert!(apns.request(&push(PushType::Alert), &[], None, at(0)).is_err());
        assert!(apns.request(&push(PushType::Alert), &[token(), token()], None, at(0)).is_err());
    }

    #[test]
    fn provider_token_verifies_with_the_public_key_and_has_apples_header_and_claims() {
        let apns = token_apns();
        let now = at(1_767_225_600);
        let auth = jwt(&apns, now);
        assert_eq!(auth.refresh_at, now + chrono::Duration::minutes(50));

        let header = jsonwebtoken::decode_header(&auth.value).expect("header");
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some("KEY1234567"));
        assert_eq!(header.typ, None);

        let key = DecodingKey::from_ec_pem(public_pem().as_bytes()).expect("public key");
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(&auth.value, &key, &validation).expect("signature verifies");
        assert_eq!(data.claims, json!({ "iss": "TEAM123456", "iat": 1_767_225_600 }));
    }

    #[test]
    fn refresh_constants_stay_inside_apples_20_to_60_minute_window() {
        assert!(JWT_MIN_AGE >= chrono::Duration::minutes(20));
        assert!(JWT_MIN_AGE < JWT_REFRESH_AFTER);
        assert!(JWT_REFRESH_AFTER < chrono::Duration::minutes(60));
    }

    #[test]
    fn a_bad_key_fails_at_construction() {
        let cfg = |key_pem: &str| ApnsConfig {
            endpoint: url::Url::parse("https://api.push.apple.com").expect("url"),
            topic: "com.example.im".into(),
            auth: ApnsAuth::Token { key_pem: key_pem.into(), key_id: "K".into(), team_id: "T".into() },
        };
        assert!(matches!(Apns::new(cfg("not a pem")), Err(BuildError::Signing(_))));
        let rsa = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo/fcm-demo-key.pub.pem"))
            .expect("committed");
        assert!(matches!(Apns::new(cfg(&rsa)), Err(BuildError::Signing(_))));
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let auth = ApnsAuth::Token { key_pem: key_pem(), key_id: "KEY1234567".into(), team_id: "TEAM123456".into() };
        assert!(!format!("{auth:?}").contains("PRIVATE"));
        assert!(!format!("{:?}", token_apns()).contains("PRIVATE"));
    }

    #[test]
    fn payload_size_is_the_body_length_and_voip_gets_the_larger_limit() {
        let apns = cert_apns();
        for t in [PushType::Alert, PushType::Silent, PushType::Voip] {
            let p = push(t);
            let req = apns.request(&p, &[token()], None, at(0)).expect("request");
            assert_eq!(apns.payload_size(&p), req.body.len());
        }
        let mut p = push(PushType::Alert);
        p.body = "é".repeat(10);
        let before = apns.payload_size(&push(PushType::Alert));
        assert_eq!(apns.payload_size(&p), before - "See you at 3?".len() + 20);
        assert_eq!(apns.payload_limit(&push(PushType::Alert)), 4096);
        assert_eq!(apns.payload_limit(&push(PushType::Silent)), 4096);
        assert_eq!(apns.payload_limit(&push(PushType::Voip)), 5120);
    }

    fn answer(status: u16, body: &str) -> Outcome {
        let apns = cert_apns();
        let status = StatusCode::from_u16(status).expect("status");
        let mut out = apns.classify(&[token()], status, &HeaderMap::new(), body.as_bytes());
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    fn reason(r: &str) -> String {
        format!(r#"{{"reason":"{r}"}}"#)
    }

    #[test]
    fn every_row_of_the_apns_answer_table_maps_to_its_outcome() {
        use Outcome::*;
        let fatal = |reason| Fatal { reason };
        let invalid = |reason| InvalidToken { reason, since: None };
        let retry = |reason| Retry { after: None, reason };
        let rows: &[(u16, &str, Outcome)] = &[
            (400, "BadCollapseId", fatal("BadCollapseId")),
            (400, "BadDeviceToken", invalid("BadDeviceToken")),
            (400, "BadExpirationDate", fatal("BadExpirationDate")),
            (400, "BadMessageId", fatal("BadMessageId")),
            (400, "BadPriority", fatal("BadPriority")),
            (400, "BadTopic", fatal("BadTopic")),
            (400, "DeviceTokenNotForTopic", invalid("DeviceTokenNotForTopic")),
            (400, "DuplicateHeaders", fatal("DuplicateHeaders")),
            (400, "IdleTimeout", retry("IdleTimeout")),
            (400, "InvalidPushType", fatal("InvalidPushType")),
            (400, "MissingDeviceToken", fatal("MissingDeviceToken")),
            (400, "MissingTopic", fatal("MissingTopic")),
            (400, "PayloadEmpty", fatal("PayloadEmpty")),
            (400, "TopicDisallowed", fatal("TopicDisallowed")),
            (400, "MockInvalidJson", fatal("unknown")),
            (403, "BadCertificate", fatal("BadCertificate")),
            (403, "BadCertificateEnvironment", fatal("BadCertificateEnvironment")),
            (403, "ExpiredProviderToken", RefreshAuth { reason: "ExpiredProviderToken" }),
            (403, "Forbidden", fatal("Forbidden")),
            (403, "InvalidProviderToken", RefreshAuth { reason: "InvalidProviderToken" }),
            (403, "MissingProviderToken", fatal("MissingProviderToken")),
            (403, "UnrelatedKeyIdInToken", retry("UnrelatedKeyIdInToken")),
            (404, "BadPath", fatal("BadPath")),
            (405, "MethodNotAllowed", fatal("MethodNotAllowed")),
            (410, "ExpiredToken", invalid("ExpiredToken")),
            (410, "Unregistered", invalid("Unregistered")),
            (413, "PayloadTooLarge", fatal("PayloadTooLarge")),
            (429, "TooManyProviderTokenUpdates", retry("TooManyProviderTokenUpdates")),
            (429, "TooManyRequests", retry("TooManyRequests")),
            (500, "InternalServerError", retry("InternalServerError")),
            (503, "ServiceUnavailable", retry("ServiceUnavailable")),
            (503, "Shutdown", retry("Shutdown")),
            (418, "SomethingNew", fatal("unknown")),
            (502, "SomethingNew", retry("unknown")),
            (429, "SomethingNew", retry("unknown")),
        ];
        for (status, r, expected) in rows {
            assert_eq!(&answer(*status, &reason(r)), expected, "{status} {r}");
        }
    }

    #[test]
    fn success_is_delivered_with_an_empty_body() {
        assert_eq!(answer(200, ""), Outcome::Delivered);
    }

    #[test]
    fn unregistered_carries_the_timestamp_of_the_410_answer() {
        let out = answer(410, r#"{ "reason": "Unregistered", "timestamp": 1767139200123 }"#);
        let since = chrono::DateTime::from_timestamp_millis(1_767_139_200_123).expect("ms");
        assert_eq!(out, Outcome::InvalidToken { reason: "Unregistered", since: Some(since) });
    }

    #[test]
    fn retry_after_is_honoured_when_present() {
        let apns = cert_apns();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
        let out =
            apns.classify(&[token()], StatusCode::TOO_MANY_REQUESTS, &headers, reason("TooManyRequests").as_bytes());
        assert_eq!(out, vec![Outcome::Retry { after: Some(Duration::from_secs(7)), reason: "TooManyRequests" }]);
        let out = apns.classify(&[token()], StatusCode::SERVICE_UNAVAILABLE, &headers, b"");
        assert_eq!(out, vec![Outcome::Retry { after: Some(Duration::from_secs(7)), reason: "unknown" }]);
    }

    #[test]
    fn garbage_bodies_fall_back_to_the_status() {
        assert_eq!(answer(400, "<html>"), Outcome::Fatal { reason: "unknown" });
        assert_eq!(answer(500, ""), Outcome::Retry { after: None, reason: "unknown" });
        assert_eq!(answer(410, "{}"), Outcome::Fatal { reason: "unknown" });
    }

    #[test]
    fn every_reason_a2_knows_is_classified_by_name() {
        // reason_word goes through a2's ErrorReason; each of its 28 variants must round-trip.
        let known = [
            "BadCollapseId",
            "BadDeviceToken",
            "BadExpirationDate",
            "BadMessageId",
            "BadPriority",
            "BadTopic",
            "DeviceTokenNotForTopic",
            "DuplicateHeaders",
            "IdleTimeout",
            "MissingDeviceToken",
            "MissingTopic",
            "PayloadEmpty",
            "TopicDisallowed",
            "BadCertificate",
            "BadCertificateEnvironment",
            "ExpiredProviderToken",
            "Forbidden",
            "InvalidProviderToken",
            "MissingProviderToken",
            "BadPath",
            "MethodNotAllowed",
            "Unregistered",
            "PayloadTooLarge",
            "TooManyProviderTokenUpdates",
            "TooManyRequests",
            "InternalServerError",
            "ServiceUnavailable",
            "Shutdown",
        ];
        for r in known {
            let parsed: ErrorReason = serde_json::from_value(json!(r)).expect("a2 knows it");
            assert_eq!(a2_reason_word(&parsed), r);
            assert_eq!(reason_word(r), r);
        }
        for r in REASONS_MISSING_IN_A2 {
            assert!(serde_json::from_value::<ErrorReason>(json!(r)).is_err());
            assert_eq!(reason_word(r), r);
        }
        assert_eq!(reason_word("unregistered"), "unknown");
    }

    #[test]
    fn classify_answers_once_per_token() {
        let apns = cert_apns();
        assert!(apns.classify(&[], StatusCode::OK, &HeaderMap::new(), b"").is_empty());
    }
}

/// The `[credentials.<name>]` fields of an APNs credential.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ApnsCredential {
    /// Base URL; default from `environment`.
    endpoint: Option<String>,
    /// `production` (default) or `sandbox`.
    environment: Option<String>,
    topic: Option<String>,
    /// `.p8` key (token auth) …
    key_file: Option<String>,
    key_id: Option<String>,
    team_id: Option<String>,
    /// … or a PEM certificate + key (certificate auth).
    certificate_file: Option<String>,
}

/// Builds an APNs vendor from its credential table.
pub fn from_config(
    table: &toml::Table,
    ctx: &super::credential::CredentialContext<'_>,
) -> Result<super::credential::VendorBuild, Vec<super::credential::Problem>> {
    use super::credential::{fields, Problem, VendorBuild};
    let c: ApnsCredential = fields(table)?;
    let mut problems = Vec::new();
    let default_host = match c.environment.as_deref() {
        None | Some("production") => "https://api.push.apple.com",
        Some("sandbox") => "https://api.sandbox.push.apple.com",
        Some(other) => {
            problems.push(Problem::new("environment", format!("{other:?}: expected \"production\" or \"sandbox\"")));
            "https://api.push.apple.com"
        }
    };
    let endpoint =
        ctx.url("endpoint", c.endpoint.as_deref().unwrap_or(default_host)).map_err(|p| problems.push(p)).ok();
    let mut identity_pem = None;
    let required = |field: &str, v: &Option<String>, problems: &mut Vec<Problem>| match v {
        Some(s) if !s.trim().is_empty() => Some(s.clone()),
        _ => {
            problems.push(Problem::new(field, "required for token auth (with key_file)"));
            None
        }
    };
    let auth = match (&c.key_file, &c.certificate_file) {
        (Some(kf), None) => {
            let key_pem = ctx.read_file("key_file", kf).map_err(|p| problems.push(p)).ok();
            let key_id = required("key_id", &c.key_id, &mut problems);
            let team_id = required("team_id", &c.team_id, &mut problems);
            match (key_pem, key_id, team_id) {
                (Some(key_pem), Some(key_id), Some(team_id)) => Some(ApnsAuth::Token { key_pem, key_id, team_id }),
                _ => None,
            }
        }
        (None, Some(cf)) => {
            for (field, set) in [("key_id", c.key_id.is_some()), ("team_id", c.team_id.is_some())] {
                if set {
                    problems.push(Problem::new(field, "only for token auth (key_file)"));
                }
            }
            identity_pem = ctx.read_file("certificate_file", cf).map_err(|p| problems.push(p)).ok();
            identity_pem.as_ref().map(|_| ApnsAuth::Certificate)
        }
        _ => {
            problems.push(Problem::new("key_file", "set exactly one of key_file (token auth) or certificate_file"));
            None
        }
    };
    let topic = c.topic.filter(|t| !t.trim().is_empty());
    if topic.is_none() {
        problems.push(Problem::new("topic", "required: the app's bundle id"));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (Some(endpoint), Some(auth), Some(topic)) = (endpoint, auth, topic) else {
        return Err(vec![Problem::new("", "incomplete APNs credential")]);
    };
    let apns =
        Apns::new(ApnsConfig { endpoint, topic, auth }).map_err(|e| vec![Problem::new("key_file", e.to_string())])?;
    Ok(VendorBuild { vendor: std::sync::Arc::new(apns), http2_only: true, identity_pem })
}

#[cfg(test)]
mod collapse_tests {
    use super::*;

    #[test]
    fn an_alert_without_title_or_body_is_a_badge_only_update() {
        let apns = Apns::new(ApnsConfig {
            endpoint: url::Url::parse("https://127.0.0.1:1").unwrap(),
            topic: "com.example.im".into(),
            auth: ApnsAuth::Certificate,
        })
        .unwrap();
        let push = VendorPush {
            push_type: PushType::Alert,
            title: String::new(),
            body: String::new(),
            badge: Some(4),
            sound: None,
            priority: crate::provider::Priority::High,
            collapse_id: None,
            ttl: None,
            created_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            thread_id: None,
            data: Default::default(),
        };
        let body: serde_json::Value = serde_json::from_slice(&apns.body(&push).unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"aps": {"badge": 4}}));
    }

    #[test]
    fn a_push_without_a_collapse_id_collapses_on_its_message_id() {
        assert_eq!(collapse_id_for("m-1"), "m-1");
        let long = "x".repeat(100);
        let id = collapse_id_for(&long);
        assert_eq!(id.len(), 48);
        assert_eq!(id, collapse_id_for(&long), "stable across sends");
    }
}
