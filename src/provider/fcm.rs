//! FCM (Firebase Cloud Messaging, HTTP v1 API): the wire format, the OAuth2 service-account
//! token exchange and the error table of `docs/vendors/fcm.md`.
//!
//! Owns: the service-account file ([`ServiceAccount`]), the RS256 JWT-bearer assertion and the
//! token request ([`AuthPlan::Remote`]) with its answer ([`Vendor::parse_auth`]), the send
//! request for one registration token, pushd's payload-size budget (fcm.md §4), and the mapping
//! of FCM answers to [`Outcome`] (`errorCode` of the `FcmError` detail first, then the status).
//!
//! Deliberately not here: caching the access token and coalescing refreshes (the shared auth
//! cache), the transport, retries, sleeping and metrics.
//!
//! ```text
//! ServiceAccount ─RS256 assertion─▶ POST token_uri ─▶ parse_auth ─▶ AuthToken (access token)
//! VendorPush + AuthToken ─▶ POST {endpoint}/v1/projects/{p}/messages:send
//! (status, Retry-After, {"error":{status, message, details[errorCode, fieldViolations]}}) ─▶ Outcome
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::{oauth2, retry_after};
use super::{AuthPlan, AuthToken, BuildError, Outcome, Priority, Vendor, VendorPush, VendorRequest};
use crate::model::{PushType, Timestamp, Token, VendorKind};

/// The OAuth2 scope that allows sending FCM messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The OAuth2 grant type of a JWT-bearer assertion.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Lifetime of the assertion: Google accepts at most one hour (`exp - iat ≤ 3600`).
pub const ASSERTION_LIFETIME: chrono::Duration = chrono::Duration::seconds(3600);

pub use super::oauth2::{MAX_TOKEN_LIFE_SECS, MIN_REFRESH_AFTER, REFRESH_MARGIN};

/// Largest payload FCM accepts for a token message: data keys+values and notification strings.
pub const PAYLOAD_LIMIT: usize = 4096;

/// Backoff for `429 QUOTA_EXCEEDED` without `Retry-After`: the quota is per minute.
pub const QUOTA_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Longest `android.ttl` FCM accepts (4 weeks, also its default), in seconds.
pub const MAX_TTL_SECS: u64 = 2_419_200;

/// The fields pushd reads from a Google service-account JSON file.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// The Firebase project; goes into the send URL.
    pub project_id: String,
    /// RSA private key, PKCS#8 PEM. Never logged.
    pub private_key: String,
    /// The key's id, sent as the assertion's `kid` when present.
    pub private_key_id: Option<String>,
    /// The service account; the assertion's `iss`.
    pub client_email: String,
    /// Where the assertion is exchanged for an access token; also its `aud`.
    pub token_uri: String,
}

impl fmt::Debug for ServiceAccount {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("private_key", &"<redacted>")
            .field("private_key_id", &self.private_key_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccount {
    /// Reads a service-account JSON file's content. The error names the missing or malformed
    /// field, never a value (the file holds the private key).
    pub fn from_json(s: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(s)
            .map_err(|e| format!("service account: not valid JSON (line {}, column {})", e.line(), e.column()))?;
        let obj = value.as_object().ok_or_else(|| "service account: not a JSON object".to_string())?;
        let required = |name: &str| -> Result<String, String> {
            match obj.get(name) {
                Some(serde_json::Value::String(v)) if !v.is_empty() => Ok(v.clone()),
                Some(serde_json::Value::String(_)) => Err(format!("service account: field `{name}` is empty")),
                Some(_) => Err(format!("service account: field `{name}` must be a string")),
                None => Err(format!("service account: missing field `{name}`")),
            }
        };
        let private_key_id = match obj.get("private_key_id") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(v)) if v.is_empty() => None,
            Some(serde_json::Value::String(v)) => Some(v.clone()),
            Some(_) => return Err("service account: field `private_key_id` must be a string".to_string()),
        };
        let account = ServiceAccount {
            project_id: required("project_id")?,
            private_key: required("private_key")?,
            private_key_id,
            client_email: required("client_email")?,
            token_uri: required("token_uri")?,
        };
        if url::Url::parse(&account.token_uri).is_err() {
            return Err("service account: field `token_uri` is not a URL".to_string());
        }
        Ok(account)
    }
}

/// Configuration of one FCM credential.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// Base URL: `https://fcm.googleapis.com` or the loopback mock.
    pub endpoint: url::Url,
    /// The parsed service-account file.
    pub account: ServiceAccount,
    /// Android notification channel for alert pushes (`android.notification.channel_id`).
    pub channel_id: Option<String>,
}

/// The FCM vendor: builds requests and classifies answers for one credential.
pub struct Fcm {
    send_url: url::Url,
    token_url: url::Url,
    client_email: String,
    key: EncodingKey,
    header: Header,
    channel_id: Option<String>,
}

impl fmt::Debug for Fcm {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fcm")
            .field("send_url", &self.send_url.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("client_email", &self.client_email)
            .field("channel_id", &self.channel_id)
            .finish()
    }
}

/// Claims of the JWT-bearer assertion (fcm.md §2.2).
#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl Fcm {
    /// Validates the configuration and parses the key once, so a bad service account fails at
    /// startup rather than on the first token exchange.
    pub fn new(cfg: FcmConfig) -> Result<Fcm, BuildError> {
        if !matches!(cfg.endpoint.scheme(), "https" | "http") {
            return Err(BuildError::Payload("FCM endpoint must be an http(s) base URL"));
        }
        let mut send_url = cfg.endpoint;
        send_url
            .path_segments_mut()
            .map_err(|_| BuildError::Payload("FCM endpoint must be an http(s) base URL"))?
            .pop_if_empty()
            .extend(["v1", "projects", cfg.account.project_id.as_str(), "messages:send"]);
        let token_url = url::Url::parse(&cfg.account.token_uri)
            .map_err(|_| BuildError::Signing("service account token_uri is not a URL"))?;
        let key = EncodingKey::from_rsa_pem(cfg.account.private_key.as_bytes())
            .map_err(|_| BuildError::Signing("service account private_key is not an RSA PEM key"))?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = cfg.account.private_key_id;
        let fcm = Fcm {
            send_url,
            token_url,
            client_email: cfg.account.client_email,
            key,
            header,
            channel_id: cfg.channel_id,
        };
        // Parsing the PEM does not load the key into ring; one signature does.
        fcm.assertion(Timestamp::UNIX_EPOCH)?;
        Ok(fcm)
    }

    /// The signed RS256 JWT-bearer assertion at `now`.
    fn assertion(&self, now: Timestamp) -> Result<String, BuildError> {
        let iat = now.timestamp();
        let claims = AssertionClaims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: self.token_url.as_str(),
            iat,
            exp: iat + ASSERTION_LIFETIME.num_seconds(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map_err(|_| BuildError::Signing("FCM assertion could not be signed with the service account key"))
    }

    fn token_request(&self, now: Timestamp) -> Result<VendorRequest, BuildError> {
        let assertion = self.assertion(now)?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", &assertion)
            .finish();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        Ok(VendorRequest { method: Method::POST, url: self.token_url.clone(), headers, body: Bytes::from(form) })
    }

    /// The message's `data` map as sent: the push's data, plus title and body for VoIP (a
    /// data-only message; the app draws the call screen from them, as PushKit does on iOS).
    fn data(push: &VendorPush) -> Result<BTreeMap<&str, &str>, BuildError> {
        if push.data.keys().any(|k| is_reserved_data_key(k)) {
            return Err(BuildError::Payload("data key reserved by FCM (from, message_type, google*, gcm*)"));
        }
        let mut data: BTreeMap<&str, &str> = push.data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if push.push_type == PushType::Voip {
            if !push.title.is_empty() {
                data.insert("title", &push.title);
            }
            if !push.body.is_empty() {
                data.insert("body", &push.body);
            }
        }
        Ok(data)
    }

    fn message<'a>(&'a self, push: &'a VendorPush, token: &'a Token) -> Result<SendBody<'a>, BuildError> {
        let alert = push.push_type == PushType::Alert;
        let priority = match (push.push_type, push.priority) {
            (PushType::Voip, _) | (_, Priority::High) => "HIGH",
            (_, Priority::Normal) => "NORMAL",
        };
        let android_notification = AndroidNotification {
            channel_id: self.channel_id.as_deref(),
            tag: push.thread_id.as_deref(),
            // The field is an int32 on the wire.
            notification_count: push.badge.map(|b| b.min(i32::MAX as u32)),
        };
        Ok(SendBody {
            message: Message {
                token: token.as_str(),
                notification: alert.then_some(Notification { title: &push.title, body: &push.body }),
                data: Self::data(push)?,
                android: Android {
                    priority,
                    // FCM refuses more than its 4-week maximum, which is also its default.
                    ttl: push.ttl.map(|ttl| format!("{}s", ttl.as_secs().min(MAX_TTL_SECS))),
                    collapse_key: push.collapse_id.as_deref(),
                    notification: (alert && !android_notification.is_empty()).then_some(android_notification),
                },
            },
        })
    }
}

/// Data keys FCM refuses (fcm.md §3; the ErrorCode page widens the prefixes to `google`/`gcm`).
fn is_reserved_data_key(key: &str) -> bool {
    key == "from" || key == "message_type" || key.starts_with("google") || key.starts_with("gcm")
}

#[derive(Serialize)]
struct SendBody<'a> {
    message: Message<'a>,
}

#[derive(Serialize)]
struct Message<'a> {
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<Notification<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    data: BTreeMap<&'a str, &'a str>,
    android: Android<'a>,
}

#[derive(Serialize)]
struct Notification<'a> {
    title: &'a str,
    body: &'a str,
}

#[derive(Serialize)]
struct Android<'a> {
    priority: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    collapse_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<AndroidNotification<'a>>,
}

#[derive(Serialize)]
struct AndroidNotification<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification_count: Option<u32>,
}

impl AndroidNotification<'_> {
    fn is_empty(&self) -> bool {
        self.channel_id.is_none() && self.tag.is_none() && self.notification_count.is_none()
    }
}

/// Google's error model: `{"error": {code, message, status, details: [...]}}`.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "@type", default)]
    type_url: String,
    #[serde(rename = "errorCode", default)]
    error_code: Option<String>,
}

/// What classification needs from an error body.
struct ErrorFacts {
    /// The `FcmError` detail's code, as a static word if pushd knows it.
    error_code: Option<&'static str>,
    /// An `FcmError` detail carries an `errorCode`, known or not.
    has_error_code: bool,
    /// A `google.rpc.BadRequest` detail is present: the payload is at fault, not the token.
    bad_request: bool,
    /// The message talks about the registration token (the invalid-token form of
    /// `INVALID_ARGUMENT`, fcm.md §5).
    about_token: bool,
}

/// The `errorCode`s of Google's FcmError, as static words.
const ERROR_CODES: [&str; 8] = [
    "UNSPECIFIED_ERROR",
    "INVALID_ARGUMENT",
    "UNREGISTERED",
    "SENDER_ID_MISMATCH",
    "QUOTA_EXCEEDED",
    "UNAVAILABLE",
    "INTERNAL",
    "THIRD_PARTY_AUTH_ERROR",
];

fn error_facts(body: &[u8]) -> ErrorFacts {
    let Ok(ErrorAnswer { error }) = serde_json::from_slice::<ErrorAnswer>(body) else {
        return ErrorFacts { error_code: None, has_error_code: false, bad_request: false, about_token: false };
    };
    let raw_code = error
        .details
        .iter()
        .filter(|d| d.type_url.ends_with("google.firebase.fcm.v1.FcmError"))
        .find_map(|d| d.error_code.as_deref());
    let error_code = raw_code.and_then(|code| ERROR_CODES.iter().copied().find(|known| *known == code));
    let bad_request = error.details.iter().any(|d| d.type_url.ends_with("google.rpc.BadRequest"));
    let about_token = error.message.to_ascii_lowercase().contains("registration token");
    ErrorFacts { error_code, has_error_code: raw_code.is_some(), bad_request, about_token }
}

/// The FCM table (fcm.md §5) for one answer.
fn outcome(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    let facts = error_facts(body);
    let invalid_argument = |reason| {
        if facts.about_token && !facts.bad_request {
            Outcome::InvalidToken { reason, since: None }
        } else {
            Outcome::Fatal { reason }
        }
    };
    let quota = |reason| Outcome::Retry { after: Some(retry_after(headers).unwrap_or(QUOTA_RETRY_AFTER)), reason };
    let retry = |reason| Outcome::Retry { after: retry_after(headers), reason };
    match facts.error_code {
        Some(reason @ "UNREGISTERED") => return Outcome::InvalidToken { reason, since: None },
        Some(reason @ "INVALID_ARGUMENT") => return invalid_argument(reason),
        // A wrong credential answers this for every token: never prune on it.
        Some(reason @ ("SENDER_ID_MISMATCH" | "THIRD_PARTY_AUTH_ERROR")) => return Outcome::Fatal { reason },
        Some(reason @ "QUOTA_EXCEEDED") => return quota(reason),
        Some(reason @ ("UNAVAILABLE" | "INTERNAL")) => return retry(reason),
        // UNSPECIFIED_ERROR, or a code pushd does not know: the status decides.
        _ => {}
    }
    match status {
        StatusCode::BAD_REQUEST => invalid_argument("INVALID_ARGUMENT"),
        // Only a 401 without an FCM errorCode means the access token itself was refused.
        StatusCode::UNAUTHORIZED if !facts.has_error_code => Outcome::RefreshAuth { reason: "UNAUTHENTICATED" },
        StatusCode::UNAUTHORIZED => Outcome::Fatal { reason: "UNAUTHENTICATED" },
        StatusCode::FORBIDDEN => Outcome::Fatal { reason: "PERMISSION_DENIED" },
        // 404 without UNREGISTERED is a wrong URL or project, not a dead token: never prune.
        StatusCode::NOT_FOUND => Outcome::Fatal { reason: "NOT_FOUND" },
        StatusCode::TOO_MANY_REQUESTS => quota("RESOURCE_EXHAUSTED"),
        StatusCode::INTERNAL_SERVER_ERROR => retry("INTERNAL"),
        StatusCode::SERVICE_UNAVAILABLE => retry("UNAVAILABLE"),
        s if s.is_server_error() => retry("unknown"),
        _ => Outcome::Fatal { reason: "unknown" },
    }
}

impl Vendor for Fcm {
    fn kind(&self) -> VendorKind {
        VendorKind::Fcm
    }

    /// The OAuth2 JWT-bearer exchange at the service account's `token_uri`.
    fn auth_plan(&self, now: Timestamp) -> AuthPlan {
        AuthPlan::Remote(self.token_request(now))
    }

    /// `200 {access_token, expires_in}` → the access token, refreshed [`REFRESH_MARGIN`] before
    /// it expires (never sooner than [`MIN_REFRESH_AFTER`]). 400/401 (bad key, disabled account)
    /// are Fatal for the credential; 5xx, 429 and an unreadable 200 are transient.
    fn parse_auth(&self, status: StatusCode, body: &[u8], now: Timestamp) -> Result<AuthToken, Outcome> {
        // Google always states the life: an answer without one is unreadable.
        oauth2::access_token(status, body, now, None)
    }

    fn payload_limit(&self, _push: &VendorPush) -> usize {
        PAYLOAD_LIMIT
    }

    /// pushd's budget (fcm.md §4): UTF-8 bytes of the data keys and values as sent, plus the
    /// notification title and body, plus the `android.notification` strings (alert only). A
    /// push that cannot be encoded (reserved data key) counts as `usize::MAX`.
    fn payload_size(&self, push: &VendorPush) -> usize {
        let Ok(data) = Self::data(push) else {
            return usize::MAX;
        };
        let data_bytes: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
        let notification_bytes = match push.push_type {
            PushType::Alert => {
                push.title.len()
                    + push.body.len()
                    + self.channel_id.as_deref().map_or(0, str::len)
                    + push.thread_id.as_deref().map_or(0, str::len)
            }
            PushType::Silent | PushType::Voip => 0,
        };
        data_bytes + notification_bytes
    }

    fn request(
        &self,
        push: &VendorPush,
        tokens: &[Token],
        auth: Option<&AuthToken>,
        _now: Timestamp,
    ) -> Result<VendorRequest, BuildError> {
        let [token] = tokens else {
            return Err(BuildError::Payload("FCM takes exactly one token per request"));
        };
        let access = auth.ok_or(BuildError::Signing("FCM send needs an access token"))?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", access.value))
            .map_err(|_| BuildError::Signing("FCM access token is not a valid header value"))?;
        authorization.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = serde_json::to_vec(&self.message(push, token)?)
            .map_err(|_| BuildError::Payload("FCM message could not be encoded as JSON"))?;
        Ok(VendorRequest { method: Method::POST, url: self.send_url.clone(), headers, body: Bytes::from(body) })
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

    const FCM_TOKEN: &str = "fX3k9Qm2Tq6:APA91bH-demo_token";

    fn account_json() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo/fcm-service-account.json"))
            .expect("the demo service account is committed")
    }

    fn public_pem() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo/fcm-demo-key.pub.pem"))
            .expect("the demo public key is committed")
    }

    fn account() -> ServiceAccount {
        ServiceAccount::from_json(&account_json()).expect("demo account parses")
    }

    fn fcm_with(channel_id: Option<&str>) -> Fcm {
        Fcm::new(FcmConfig {
            endpoint: url::Url::parse("https://fcm.googleapis.com").expect("url"),
            account: account(),
            channel_id: channel_id.map(str::to_string),
        })
        .expect("demo account builds")
    }

    fn fcm() -> Fcm {
        fcm_with(Some("messages"))
    }

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(secs, 0).expect("valid test time")
    }

    fn token() -> Token {
        Token::parse_for(VendorKind::Fcm, FCM_TOKEN).expect("token")
    }

    fn access() -> AuthToken {
        AuthToken { value: "ya29.demo".into(), refresh_at: at(0) }
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
            ttl: Some(Duration::from_secs(3600)),
            created_at: at(1_767_225_600),
            thread_id: Some("conv-42".into()),
            data: BTreeMap::from([("conv".to_string(), "42".to_string()), ("msg".to_string(), "9f1c".to_string())]),
        }
    }

    fn send(fcm: &Fcm, p: &VendorPush) -> VendorRequest {
        fcm.request(p, &[token()], Some(&access()), at(0)).expect("request")
    }

    fn body_json(req: &VendorRequest) -> Value {
        serde_json::from_slice(&req.body).expect("JSON body")
    }

    #[test]
    fn alert_push_is_a_notification_message_with_android_options() {
        let fcm = fcm();
        let req = send(&fcm, &push(PushType::Alert));
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.url.as_str(), "https://fcm.googleapis.com/v1/projects/pushd-demo/messages:send");
        assert_eq!(req.headers.get("authorization").expect("auth"), "Bearer ya29.demo");
        assert!(req.headers.get("authorization").expect("auth").is_sensitive());
        assert_eq!(req.headers.get("content-type").expect("ct"), "application/json");
        assert_eq!(
            body_json(&req),
            json!({
                "message": {
                    "token": FCM_TOKEN,
                    "notification": { "title": "Alice", "body": "See you at 3?" },
                    "data": { "conv": "42", "msg": "9f1c" },
                    "android": {
                        "priority": "HIGH",
                        "ttl": "3600s",
                        "collapse_key": "conv-42",
                        "notification": { "channel_id": "messages", "tag": "conv-42", "notification_count": 7 }
                    }
                }
            })
        );
    }

    #[test]
    fn silent_push_is_a_data_only_message_at_its_own_priority() {
        let req = send(&fcm(), &push(PushType::Silent));
        assert_eq!(
            body_json(&req),
            json!({
                "message": {
                    "token": FCM_TOKEN,
                    "data": { "conv": "42", "msg": "9f1c" },
                    "android": { "priority": "NORMAL", "ttl": "3600s", "collapse_key": "conv-42" }
                }
            })
        );
    }

    #[test]
    fn voip_push_is_a_high_priority_data_only_message_with_title_and_body_as_data() {
        let mut p = push(PushType::Voip);
        p.priority = Priority::Normal;
        let req = send(&fcm(), &p);
        assert_eq!(
            body_json(&req),
            json!({
                "message": {
                    "token": FCM_TOKEN,
                    "data": { "conv": "42", "msg": "9f1c", "title": "Alice", "body": "See you at 3?" },
                    "android": { "priority": "HIGH", "ttl": "3600s", "collapse_key": "conv-42" }
                }
            })
        );
    }

    #[test]
    fn optional_fields_are_left_out_when_unset() {
        let fcm = fcm_with(None);
        let mut p = push(PushType::Alert);
        p.priority = Priority::Normal;
        p.ttl = None;
        p.collapse_id = None;
        p.badge = None;
        p.thread_id = None;
        p.data.clear();
        assert_eq!(
            body_json(&send(&fcm, &p)),
            json!({
                "message": {
                    "token": FCM_TOKEN,
                    "notification": { "title": "Alice", "body": "See you at 3?" },
                    "android": { "priority": "NORMAL" }
                }
            })
        );
    }

    #[test]
    fn ttl_is_capped_at_fcms_four_week_maximum() {
        let mut p = push(PushType::Alert);
        p.ttl = Some(Duration::from_secs(60 * 86_400));
        assert_eq!(body_json(&send(&fcm(), &p))["message"]["android"]["ttl"], "2419200s");
    }

    #[test]
    fn reserved_data_keys_are_refused() {
        let fcm = fcm();
        for key in ["from", "message_type", "google.c.a", "gcm.notification.x", "gcmx"] {
            let mut p = push(PushType::Alert);
            p.data.insert(key.into(), "x".into());
            let err = fcm.request(&p, &[token()], Some(&access()), at(0)).expect_err(key);
            assert!(matches!(err, BuildError::Payload(_)), "{key}");
            assert_eq!(fcm.payload_size(&p), usize::MAX, "{key}");
        }
    }

    #[test]
    fn a_send_needs_an_access_token_and_exactly_one_token() {
        let fcm = fcm();
        let p = push(PushType::Alert);
        assert!(matches!(fcm.request(&p, &[token()], None, at(0)), Err(BuildError::Signing(_))));
        assert!(fcm.request(&p, &[], Some(&access()), at(0)).is_err());
        assert!(fcm.request(&p, &[token(), token()], Some(&access()), at(0)).is_err());
        assert_eq!(fcm.max_batch(), 1);
    }

    #[test]
    fn endpoint_path_prefix_is_kept() {
        let fcm = Fcm::new(FcmConfig {
            endpoint: url::Url::parse("http://127.0.0.1:9000/fcm/").expect("url"),
            account: account(),
            channel_id: None,
        })
        .expect("builds");
        assert_eq!(
            send(&fcm, &push(PushType::Alert)).url.as_str(),
            "http://127.0.0.1:9000/fcm/v1/projects/pushd-demo/messages:send"
        );
    }

    #[test]
    fn token_request_posts_a_jwt_bearer_assertion_that_verifies_with_the_public_key() {
        let fcm = fcm();
        let now = at(1_767_225_600);
        let req = match fcm.auth_plan(now) {
            AuthPlan::Remote(Ok(req)) => req,
            _ => panic!("FCM fetches its token remotely"),
        };
        let account = account();
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.url.as_str(), account.token_uri);
        assert_eq!(req.headers.get("content-type").expect("ct"), "application/x-www-form-urlencoded");
        let body = std::str::from_utf8(&req.body).expect("utf-8");
        assert!(body.starts_with("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="));
        let form: BTreeMap<String, String> = url::form_urlencoded::parse(&req.body).into_owned().collect();
        assert_eq!(form.get("grant_type").map(String::as_str), Some(GRANT_TYPE));
        let assertion = form.get("assertion").expect("assertion");

        let header = jsonwebtoken::decode_header(assertion).expect("header");
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid, account.private_key_id);

        let key = DecodingKey::from_rsa_pem(public_pem().as_bytes()).expect("public key");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.set_audience(&[account.token_uri.as_str()]);
        let data = jsonwebtoken::decode::<Value>(assertion, &key, &validation).expect("signature verifies");
        assert_eq!(
            data.claims,
            json!({
                "iss": account.client_email,
                "scope": "https://www.googleapis.com/auth/firebase.messaging",
                "aud": account.token_uri,
                "iat": 1_767_225_600,
                "exp": 1_767_229_200
            })
        );
    }

    #[test]
    fn access_token_is_refreshed_five_minutes_before_it_expires() {
        let fcm = fcm();
        let now = at(1_767_225_600);
        let body = br#"{ "access_token": "ya29.c.b0Aa", "expires_in": 3599, "token_type": "Bearer" }"#;
        let token = fcm.parse_auth(StatusCode::OK, body, now).expect("token");
        assert_eq!(token, AuthToken { value: "ya29.c.b0Aa".into(), refresh_at: now + chrono::Duration::seconds(3299) });
    }

    #[test]
    fn a_short_lived_access_token_is_still_kept_thirty_seconds() {
        let now = at(1_767_225_600);
        for expires_in in [0, 60, 330, -5, i64::MIN] {
            let body = format!(r#"{{"access_token":"a","expires_in":{expires_in}}}"#);
            let token = fcm().parse_auth(StatusCode::OK, body.as_bytes(), now).expect("token");
            assert_eq!(token.refresh_at, now + chrono::Duration::seconds(30), "{expires_in}");
        }
    }

    #[test]
    fn an_absurd_token_life_is_capped_at_a_day() {
        let now = at(1_767_225_600);
        let body = format!(r#"{{"access_token":"a","expires_in":{}}}"#, i64::MAX);
        let token = fcm().parse_auth(StatusCode::OK, body.as_bytes(), now).expect("token");
        assert_eq!(token.refresh_at, now + chrono::Duration::seconds(86_400 - 300));
    }

    #[test]
    fn token_endpoint_errors_are_fatal_or_transient() {
        let fcm = fcm();
        let now = at(0);
        let rejected = Outcome::Fatal { reason: "auth_rejected" };
        let cases: &[(u16, &str, Outcome)] = &[
            (400, r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#, rejected.clone()),
            (401, r#"{"error":"invalid_client","error_description":"The OAuth client was not found."}"#, rejected),
            (500, "", Outcome::Retry { after: None, reason: "auth_unavailable" }),
            (503, "", Outcome::Retry { after: None, reason: "auth_unavailable" }),
            (200, "not json", Outcome::Retry { after: None, reason: "auth_bad_answer" }),
            (
                200,
                r#"{"access_token":"","expires_in":3600}"#,
                Outcome::Retry { after: None, reason: "auth_bad_answer" },
            ),
        ];
        for (status, body, expected) in cases {
            let status = StatusCode::from_u16(*status).expect("status");
            assert_eq!(&fcm.parse_auth(status, body.as_bytes(), now).expect_err("error"), expected, "{status}");
        }
    }

    #[test]
    fn service_account_errors_name_the_field_and_never_the_key() {
        let full: Value = serde_json::from_str(&account_json()).expect("json");
        for field in ["project_id", "private_key", "client_email", "token_uri"] {
            let mut v = full.clone();
            v.as_object_mut().expect("object").remove(field);
            let err = ServiceAccount::from_json(&v.to_string()).expect_err(field);
            assert!(err.contains(field), "{err}");
            assert!(!err.contains("BEGIN"), "{err}");
        }
        let mut v = full.clone();
        v["token_uri"] = json!("not a url");
        assert!(ServiceAccount::from_json(&v.to_string()).expect_err("url").contains("token_uri"));
        let mut v = full.clone();
        v.as_object_mut().expect("object").remove("private_key_id");
        assert_eq!(ServiceAccount::from_json(&v.to_string()).expect("optional kid").private_key_id, None);
        let err = ServiceAccount::from_json("{ \"private_key\": \"-----BEGIN").expect_err("bad json");
        assert!(!err.contains("BEGIN"), "{err}");
        assert!(!format!("{:?}", account()).contains("BEGIN"));
    }

    #[test]
    fn a_bad_private_key_fails_at_construction() {
        let mut account = account();
        account.private_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        let cfg = FcmConfig {
            endpoint: url::Url::parse("https://fcm.googleapis.com").expect("url"),
            account,
            channel_id: None,
        };
        assert!(matches!(Fcm::new(cfg), Err(BuildError::Signing(_))));
    }

    #[test]
    fn payload_size_counts_data_and_notification_strings_in_utf8_bytes() {
        let fcm = fcm();
        // data "conv"+"42" + "msg"+"9f1c" = 13; title 5 + body 13; channel 8 + tag 7.
        assert_eq!(fcm.payload_size(&push(PushType::Alert)), 13 + 5 + 13 + 8 + 7);
        assert_eq!(fcm.payload_size(&push(PushType::Silent)), 13);
        // VoIP carries title and body as data keys and values.
        assert_eq!(fcm.payload_size(&push(PushType::Voip)), 13 + 5 + 5 + 4 + 13);
        let mut p = push(PushType::Alert);
        p.body = "你好".into();
        assert_eq!(fcm.payload_size(&p), 13 + 5 + 6 + 8 + 7);
        assert_eq!(fcm.payload_limit(&p), 4096);
    }

    fn answer_with(status: u16, headers: &HeaderMap, body: &str) -> Outcome {
        let status = StatusCode::from_u16(status).expect("status");
        let mut out = fcm().classify(&[token()], status, headers, body.as_bytes());
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    fn answer(status: u16, body: &str) -> Outcome {
        answer_with(status, &HeaderMap::new(), body)
    }

    fn google_error(code: u16, status: &str, message: &str, error_code: Option<&str>) -> String {
        let details: Vec<Value> = error_code
            .map(|c| json!({ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c }))
            .into_iter()
            .collect();
        json!({ "error": { "code": code, "message": message, "status": status, "details": details } }).to_string()
    }

    /// fcm.md §5 / [F4] example 1: a payload error with a BadRequest field violation.
    const BAD_REQUEST_ANSWER: &str = r#"{
      "error": {
        "code": 400,
        "message": "Invalid value at 'message.data[0].value' (TYPE_STRING), 12",
        "status": "INVALID_ARGUMENT",
        "details": [
          {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [
              { "field": "message.data[0].value", "description": "Invalid value at 'message.data[0].value' (TYPE_STRING), 12" }
            ]
          }
        ]
      }
    }"#;

    /// fcm.md §5 / [F4] example 2: an invalid registration token.
    const INVALID_TOKEN_ANSWER: &str = r#"{
      "error": {
        "code": 400,
        "message": "The registration token is not a valid FCM registration token",
        "status": "INVALID_ARGUMENT",
        "details": [
          { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT" }
        ]
      }
    }"#;

    #[test]
    fn every_row_of_the_fcm_answer_table_maps_to_its_outcome() {
        use Outcome::*;
        let rows: Vec<(u16, String, Outcome)> = vec![
            (200, r#"{"name":"projects/pushd-demo/messages/0:1767225600123456%abcd1234ef"}"#.into(), Delivered),
            (400, INVALID_TOKEN_ANSWER.into(), InvalidToken { reason: "INVALID_ARGUMENT", since: None }),
            (400, BAD_REQUEST_ANSWER.into(), Fatal { reason: "INVALID_ARGUMENT" }),
            (
                400,
                google_error(400, "INVALID_ARGUMENT", "Message is too big", Some("INVALID_ARGUMENT")),
                Fatal { reason: "INVALID_ARGUMENT" },
            ),
            (
                404,
                google_error(404, "NOT_FOUND", "Requested entity was not found.", Some("UNREGISTERED")),
                InvalidToken { reason: "UNREGISTERED", since: None },
            ),
            (
                403,
                google_error(403, "PERMISSION_DENIED", "SenderId mismatch", Some("SENDER_ID_MISMATCH")),
                Fatal { reason: "SENDER_ID_MISMATCH" },
            ),
            (
                429,
                google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", Some("QUOTA_EXCEEDED")),
                Retry { after: Some(Duration::from_secs(60)), reason: "QUOTA_EXCEEDED" },
            ),
            (
                503,
                google_error(503, "UNAVAILABLE", "The service is currently unavailable.", Some("UNAVAILABLE")),
                Retry { after: None, reason: "UNAVAILABLE" },
            ),
            (
                500,
                google_error(500, "INTERNAL", "Internal error encountered.", Some("INTERNAL")),
                Retry { after: None, reason: "INTERNAL" },
            ),
            (
                401,
                google_error(
                    401,
                    "UNAUTHENTICATED",
                    "Auth error from APNS or Web Push Service",
                    Some("THIRD_PARTY_AUTH_ERROR"),
                ),
                Fatal { reason: "THIRD_PARTY_AUTH_ERROR" },
            ),
            (
                401,
                google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", None),
                RefreshAuth { reason: "UNAUTHENTICATED" },
            ),
            (
                403,
                google_error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied", None),
                Fatal { reason: "PERMISSION_DENIED" },
            ),
            (502, "<html>Bad Gateway</html>".into(), Retry { after: None, reason: "unknown" }),
            (504, "".into(), Retry { after: None, reason: "unknown" }),
            (418, "".into(), Fatal { reason: "unknown" }),
        ];
        for (status, body, expected) in rows {
            assert_eq!(answer(status, &body), expected, "{status} {body}");
        }
    }

    #[test]
    fn a_token_complaint_without_an_error_code_still_prunes_but_a_bare_400_does_not() {
        let body =
            google_error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", None);
        assert_eq!(answer(400, &body), Outcome::InvalidToken { reason: "INVALID_ARGUMENT", since: None });
        assert_eq!(answer(400, ""), Outcome::Fatal { reason: "INVALID_ARGUMENT" });
    }

    #[test]
    fn a_404_without_unregistered_never_prunes() {
        let body = google_error(404, "NOT_FOUND", "Requested entity was not found.", None);
        assert_eq!(answer(404, &body), Outcome::Fatal { reason: "NOT_FOUND" });
    }

    #[test]
    fn an_unknown_error_code_falls_back_to_the_status() {
        let body = google_error(500, "INTERNAL", "x", Some("UNSPECIFIED_ERROR"));
        assert_eq!(answer(500, &body), Outcome::Retry { after: None, reason: "INTERNAL" });
        let body = google_error(429, "RESOURCE_EXHAUSTED", "x", Some("SOMETHING_NEW"));
        assert_eq!(answer(429, &body), Outcome::Retry { after: Some(QUOTA_RETRY_AFTER), reason: "RESOURCE_EXHAUSTED" });
        // Only a 401 with no errorCode at all is a refused access token.
        for code in ["SOMETHING_NEW", "UNSPECIFIED_ERROR"] {
            let body = google_error(401, "UNAUTHENTICATED", "x", Some(code));
            assert_eq!(answer(401, &body), Outcome::Fatal { reason: "UNAUTHENTICATED" }, "{code}");
        }
    }

    #[test]
    fn retry_after_is_honoured_for_quota_and_server_errors() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("12"));
        let after = Some(Duration::from_secs(12));
        let quota = google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", Some("QUOTA_EXCEEDED"));
        assert_eq!(answer_with(429, &headers, &quota), Outcome::Retry { after, reason: "QUOTA_EXCEEDED" });
        let unavailable = google_error(503, "UNAVAILABLE", "x", Some("UNAVAILABLE"));
        assert_eq!(answer_with(503, &headers, &unavailable), Outcome::Retry { after, reason: "UNAVAILABLE" });
        assert_eq!(answer_with(500, &headers, ""), Outcome::Retry { after, reason: "INTERNAL" });
        assert_eq!(
            answer(429, ""),
            Outcome::Retry { after: Some(Duration::from_secs(60)), reason: "RESOURCE_EXHAUSTED" }
        );
    }
}

/// The `[credentials.<name>]` fields of an FCM credential.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FcmCredential {
    /// Base URL; default `https://fcm.googleapis.com`.
    endpoint: Option<String>,
    /// The service-account JSON key file.
    service_account_file: String,
    /// Overrides the key file's `token_uri`.
    token_uri: Option<String>,
    /// Android notification channel.
    channel_id: Option<String>,
}

/// Builds an FCM vendor from its credential table.
pub fn from_config(
    table: &toml::Table,
    ctx: &super::credential::CredentialContext<'_>,
) -> Result<super::credential::VendorBuild, Vec<super::credential::Problem>> {
    use super::credential::{fields, Problem, VendorBuild};
    let c: FcmCredential = fields(table)?;
    let mut problems = Vec::new();
    let endpoint = ctx
        .url("endpoint", c.endpoint.as_deref().unwrap_or("https://fcm.googleapis.com"))
        .map_err(|p| problems.push(p))
        .ok();
    let account = ctx
        .read_file("service_account_file", &c.service_account_file)
        .and_then(|json| ServiceAccount::from_json(&json).map_err(|e| Problem::new("service_account_file", e)))
        .map_err(|p| problems.push(p))
        .ok()
        .map(|mut a| {
            if let Some(uri) = &c.token_uri {
                a.token_uri = uri.clone();
            }
            a
        });
    if let Some(a) = &account {
        if let Err(p) = ctx.url("token_uri", &a.token_uri) {
            problems.push(p);
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (Some(endpoint), Some(account)) = (endpoint, account) else {
        return Err(vec![Problem::new("", "incomplete FCM credential")]);
    };
    let fcm = Fcm::new(FcmConfig { endpoint, account, channel_id: c.channel_id })
        .map_err(|e| vec![Problem::new("service_account_file", e.to_string())])?;
    Ok(VendorBuild::https(fcm))
}
