//! Mock FCM: the OAuth2 token endpoint (JWT-bearer grant) and the HTTP v1 send endpoint,
//! validating as `docs/vendors/fcm.md` §7 items 1–9 and 14 describe and answering with
//! Google's error model.
//!
//! Owns: assertion verification (RS256, one service account), access tokens (issued, expired,
//! revoked; the ledger is `oauth.rs`), message checks with `BadRequest` field violations, the payload-size budget
//! (fcm.md §4), the errorCode table. Does not own: TLS, recording, rules (`mod.rs`,
//! `tls.rs`). Token-endpoint calls are counted ([`MockFcm::token_requests`]), not recorded as
//! [`Received`](super::Received) entries: the record is the sends.
//!
//! ```text
//! POST /token ─▶ form ─▶ assertion (alg, signature, iss, scope, aud, iat/exp) ─▶ mock-at-<n>
//! POST /v1/projects/{p}/messages:send ─▶ access token ─▶ project ─▶ message fields ─▶ size
//!                                      ─▶ scripted rule? ─▶ record ─▶ answer
//! ```

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{Method, Request};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};

use super::oauth::{token_form, AccessTokens, OauthError};
use super::tls::Protocols;
use super::{
    bearer, default_addr, loopback_url, reply, scripted_delay, start_mock, Conn, Core, MockAnswer, MockServer, MockTls,
    ReadRequest, Reply, Vendor,
};
use crate::clock::{SharedClock, SystemClock};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
const SCOPES: &[&str] =
    &["https://www.googleapis.com/auth/firebase.messaging", "https://www.googleapis.com/auth/cloud-platform"];
/// Longest assertion lifetime Google accepts (`exp - iat`).
const ASSERTION_MAX_LIFETIME_SECS: i64 = 3600;
/// Clock skew tolerated on the assertion's `iat`.
const ASSERTION_SKEW_SECS: i64 = 300;
/// Payload budget for token messages (fcm.md §4).
const MAX_PAYLOAD: usize = 4096;
/// Longest `android.ttl`: four weeks.
const MAX_TTL_SECS: u64 = 2_419_200;
const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";
const UNAUTHENTICATED_MESSAGE: &str = "Request had invalid authentication credentials. \
    Expected OAuth 2 access token, login cookie or other valid authentication credential.";

/// How an FCM error looks on the wire.
struct ErrorKind {
    http: u16,
    status: &'static str,
    message: &'static str,
    error_code: Option<&'static str>,
}

/// The FCM errors a script can ask for by errorCode (or `error.status`), fcm.md §5.
const SCRIPTABLE: &[ErrorKind] = &[
    ErrorKind {
        http: 404,
        status: "NOT_FOUND",
        message: "Requested entity was not found.",
        error_code: Some("UNREGISTERED"),
    },
    ErrorKind {
        http: 400,
        status: "INVALID_ARGUMENT",
        message: "The registration token is not a valid FCM registration token",
        error_code: Some("INVALID_ARGUMENT"),
    },
    ErrorKind {
        http: 403,
        status: "PERMISSION_DENIED",
        message: "SenderId mismatch",
        error_code: Some("SENDER_ID_MISMATCH"),
    },
    ErrorKind {
        http: 429,
        status: "RESOURCE_EXHAUSTED",
        message: "Quota exceeded for quota metric 'Send messages'.",
        error_code: Some("QUOTA_EXCEEDED"),
    },
    ErrorKind { http: 500, status: "INTERNAL", message: "Internal error encountered.", error_code: Some("INTERNAL") },
    ErrorKind {
        http: 503,
        status: "UNAVAILABLE",
        message: "The service is currently unavailable.",
        error_code: Some("UNAVAILABLE"),
    },
    ErrorKind {
        http: 401,
        status: "UNAUTHENTICATED",
        message: "Auth error from APNS or Web Push Service",
        error_code: Some("THIRD_PARTY_AUTH_ERROR"),
    },
    ErrorKind { http: 401, status: "UNAUTHENTICATED", message: UNAUTHENTICATED_MESSAGE, error_code: None },
    ErrorKind {
        http: 403,
        status: "PERMISSION_DENIED",
        message: "The caller does not have permission",
        error_code: None,
    },
];

/// The scripted error for `reason` (an errorCode, or an `error.status` name).
fn error_kind_for_reason(reason: &str) -> Option<&'static ErrorKind> {
    let code = match reason {
        "NOT_FOUND" => Some("UNREGISTERED"),
        "RESOURCE_EXHAUSTED" => Some("QUOTA_EXCEEDED"),
        "UNAUTHENTICATED" | "PERMISSION_DENIED" => None,
        other => Some(other),
    };
    SCRIPTABLE.iter().find(|k| k.error_code == code && (code.is_some() || k.status == reason))
}

/// The scripted error for a bare HTTP status.
fn error_kind_for_status(status: u16) -> Option<&'static ErrorKind> {
    let code = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "SENDER_ID_MISMATCH",
        404 => "UNREGISTERED",
        429 => "QUOTA_EXCEEDED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        _ => return None,
    };
    error_kind_for_reason(code)
}

/// Google's canonical status name for an HTTP status (for scripted codes outside the table).
fn status_name(http: u16) -> &'static str {
    match http {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if http >= 500 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

/// Configuration of a [`MockFcm`].
#[derive(Clone)]
pub struct MockFcmConfig {
    /// Where to listen; default `127.0.0.1:0`.
    pub addr: std::net::SocketAddr,
    /// TLS material to share with other mocks; `None` generates a CA for this mock.
    pub tls: Option<Arc<MockTls>>,
    /// The clock assertion times and access-token expiry are measured with.
    pub clock: SharedClock,
    /// The only project sends may address.
    pub project_id: String,
    /// The service account's `client_email`: the assertion's `iss`.
    pub client_email: String,
    /// The service account's RS256 public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key_pem: String,
    /// Lifetime of issued access tokens (`expires_in`).
    pub token_ttl_secs: u64,
}

impl std::fmt::Debug for MockFcmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockFcmConfig")
            .field("addr", &self.addr)
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .finish_non_exhaustive()
    }
}

impl MockFcmConfig {
    /// A config for one project/service account with every other setting at its default.
    pub fn new(
        project_id: impl Into<String>,
        client_email: impl Into<String>,
        public_key_pem: impl Into<String>,
    ) -> Self {
        Self {
            addr: default_addr(),
            tls: None,
            clock: Arc::new(SystemClock),
            project_id: project_id.into(),
            client_email: client_email.into(),
            public_key_pem: public_key_pem.into(),
            token_ttl_secs: 3600,
        }
    }
}

/// A running mock FCM (token endpoint + send endpoint). Derefs to [`MockServer`] for rules,
/// the record and counters. Cheap to clone; clones share the server.
#[derive(Clone)]
pub struct MockFcm {
    server: MockServer,
    fcm: Arc<Fcm>,
}

impl std::fmt::Debug for MockFcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockFcm").field("server", &self.server).finish_non_exhaustive()
    }
}

impl Deref for MockFcm {
    type Target = MockServer;

    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl From<MockFcm> for MockServer {
    fn from(mock: MockFcm) -> MockServer {
        mock.server
    }
}

impl MockFcm {
    /// Binds `cfg.addr` and serves HTTPS (ALPN `h2`, `http/1.1`) on the current tokio runtime.
    /// Returns once listening. Fails on a bad public key or a bind error.
    pub async fn start(cfg: MockFcmConfig) -> std::io::Result<Self> {
        let key = DecodingKey::from_rsa_pem(cfg.public_key_pem.as_bytes()).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("mock fcm: public_key_pem: {e}"))
        })?;
        let mut validation = Validation::new(Algorithm::RS256);
        // Time and audience are checked by hand against the mock clock and URL.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let protocols = Protocols::H2OrHttp1 { max_concurrent_streams: 1000 };
        let (server, fcm) = start_mock("fcm", cfg.addr, cfg.tls.clone(), cfg.clock.clone(), protocols, |core| {
            let port = core.addr().port();
            let mut audiences: Vec<String> =
                ["127.0.0.1", "localhost", "[::1]"].iter().map(|host| format!("https://{host}:{port}/token")).collect();
            if let Ok(own) = loopback_url("https", core.addr()) {
                audiences.push(format!("{own}token"));
            }
            audiences.push(GOOGLE_TOKEN_URL.to_owned());
            Fcm {
                core,
                cfg,
                key,
                validation,
                audiences,
                tokens: AccessTokens::new(),
                token_requests: AtomicU64::new(0),
                sent: AtomicU64::new(0),
            }
        })
        .await?;
        Ok(Self { server, fcm })
    }

    /// The token endpoint (`https://127.0.0.1:PORT/token`): the service account's `token_uri`.
    pub fn token_url(&self) -> url::Url {
        let mut url = self.url();
        url.set_path("/token");
        url
    }

    /// Calls to the token endpoint so far, successful or not.
    pub fn token_requests(&self) -> u64 {
        self.fcm.token_requests.load(Ordering::Relaxed)
    }
}

struct Fcm {
    core: Arc<Core>,
    cfg: MockFcmConfig,
    key: DecodingKey,
    validation: Validation,
    /// Accepted assertion `aud` values: this mock's token URL under loopback names, Google's.
    audiences: Vec<String>,
    tokens: AccessTokens,
    token_requests: AtomicU64,
    sent: AtomicU64,
}

/// An error answer: status and Google error-model body.
struct GoogleError {
    http: u16,
    body: Value,
}

fn google_error(http: u16, status: &str, message: &str, details: Vec<Value>) -> GoogleError {
    let mut error = json!({ "code": http, "message": message, "status": status });
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    GoogleError { http, body: json!({ "error": error }) }
}

fn fcm_detail(error_code: &str) -> Value {
    json!({ "@type": FCM_ERROR_TYPE, "errorCode": error_code })
}

/// `400 INVALID_ARGUMENT` with a `BadRequest` field violation (fcm.md §5, [F4] example 1).
fn violation(field: &str, description: String) -> GoogleError {
    let detail = json!({
        "@type": BAD_REQUEST_TYPE,
        "fieldViolations": [{ "field": field, "description": description }],
    });
    google_error(400, "INVALID_ARGUMENT", &description, vec![detail])
}

fn invalid_value(field: &str, kind: &str, value: &Value) -> GoogleError {
    violation(field, format!("Invalid value at '{field}' ({kind}), {value}"))
}

fn unknown_field(field: &str, name: &str) -> GoogleError {
    violation(field, format!("Invalid JSON payload received. Unknown name \"{name}\" at '{field}': Cannot find field."))
}

fn unauthenticated() -> GoogleError {
    google_error(401, "UNAUTHENTICATED", UNAUTHENTICATED_MESSAGE, vec![])
}

fn unregistered() -> GoogleError {
    google_error(404, "NOT_FOUND", "Requested entity was not found.", vec![fcm_detail("UNREGISTERED")])
}

/// What a valid send carried.
struct Valid {
    project: String,
    access_token: String,
}

impl Vendor for Fcm {
    type ConnState = ();

    async fn handle(&self, req: Request<Incoming>, conn: &Conn<()>) -> Reply {
        let read = ReadRequest::read(req).await;
        if read.path == "/token" {
            return self.token_endpoint(&read);
        }
        let parsed = read.json();
        let token = parsed
            .as_ref()
            .and_then(|b| b.get("message"))
            .and_then(|m| m.get("token"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let (http, body, script) = match self.validate(&read, parsed.as_ref()) {
            Err(e) => (e.http, e.body, None),
            Ok(valid) => match self.core.take_answer(&token) {
                None => (200, self.success(&valid), None),
                Some(answer) => {
                    let (http, body) = self.scripted(&answer, &valid);
                    (http, body, Some(answer))
                }
            },
        };
        let mut headers = Vec::new();
        if let Some(secs) = script.as_ref().and_then(|a| a.retry_after_secs) {
            headers.push((http::header::RETRY_AFTER, secs.to_string()));
        }
        self.core.record(read.received("fcm", token, conn.id, http, body.clone()));
        scripted_delay(script.as_ref()).await;
        reply(http, &headers, Some(&body))
    }
}

impl Fcm {
    fn success(&self, valid: &Valid) -> Value {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        json!({ "name": format!("projects/{}/messages/{n}", valid.project) })
    }

    fn scripted(&self, answer: &MockAnswer, valid: &Valid) -> (u16, Value) {
        if answer.expire_auth {
            self.tokens.revoke(&valid.access_token);
            let e = unauthenticated();
            return (e.http, e.body);
        }
        let reason = answer.reason.as_deref();
        let kind = match (answer.status, reason) {
            (None, None) | (Some(200), _) => return (200, self.success(valid)),
            (_, Some(reason)) => error_kind_for_reason(reason),
            (Some(status), None) => error_kind_for_status(status),
        };
        let e = match kind {
            Some(kind) => google_error(
                answer.status.unwrap_or(kind.http),
                kind.status,
                kind.message,
                kind.error_code.map(fcm_detail).into_iter().collect(),
            ),
            None => {
                // An errorCode the table does not know: pass it through as given.
                let http = answer.status.unwrap_or(500);
                google_error(http, status_name(http), "Scripted error.", reason.map(fcm_detail).into_iter().collect())
            }
        };
        (e.http, e.body)
    }

    /// Send checks, in the order Google meets them: route, auth, project, body.
    fn validate(&self, r: &ReadRequest, body: Option<&Value>) -> Result<Valid, GoogleError> {
        let project = r
            .path
            .strip_prefix("/v1/projects/")
            .and_then(|rest| rest.strip_suffix("/messages:send"))
            .filter(|p| !p.is_empty() && !p.contains('/'))
            .ok_or_else(|| google_error(404, "NOT_FOUND", "Requested entity was not found.", vec![]))?;
        if r.method != Method::POST {
            // No canonical code fits; a mock-only status name tests can tell apart.
            return Err(google_error(405, "METHOD_NOT_ALLOWED", "Use POST.", vec![]));
        }
        let access_token = self.authenticate(r)?;
        if project != self.cfg.project_id {
            let message = format!(
                "Permission 'cloudmessaging.messages.create' denied on resource \
                 '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
            );
            return Err(google_error(403, "PERMISSION_DENIED", &message, vec![]));
        }
        let body = body
            .and_then(Value::as_object)
            .ok_or_else(|| violation("", "Invalid JSON payload received.".to_owned()))?;
        for key in body.keys() {
            if !matches!(key.as_str(), "message" | "validate_only" | "validateOnly") {
                return Err(unknown_field("", key));
            }
        }
        if let Some(v) = field(body, "validate_only") {
            if !v.is_boolean() {
                return Err(invalid_value("validate_only", "TYPE_BOOL", v));
            }
        }
        let message = body
            .get("message")
            .and_then(Value::as_object)
            .ok_or_else(|| violation("message", "Message must be set.".to_owned()))?;
        check_message(message)?;
        if payload_bytes(message) > MAX_PAYLOAD {
            return Err(violation("message", "Message is too big".to_owned()));
        }
        Ok(Valid { project: project.to_owned(), access_token })
    }

    fn authenticate(&self, r: &ReadRequest) -> Result<String, GoogleError> {
        let token = r.header("authorization").and_then(bearer).ok_or_else(unauthenticated)?;
        if !self.tokens.is_valid(token, self.core.clock().now()) {
            return Err(unauthenticated());
        }
        Ok(token.to_owned())
    }

    fn token_endpoint(&self, r: &ReadRequest) -> Reply {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        match self.exchange(r) {
            Ok(token) => {
                let body =
                    json!({ "access_token": token, "expires_in": self.cfg.token_ttl_secs, "token_type": "Bearer" });
                reply(200, &[], Some(&body))
            }
            Err(e) => {
                tracing::debug!(error = e.error, description = %e.description, "mock fcm refused a token exchange");
                e.reply()
            }
        }
    }

    fn exchange(&self, r: &ReadRequest) -> Result<String, OauthError> {
        let [grant_type, assertion] = token_form(r, ["grant_type", "assertion"], "Use POST.")?;
        if grant_type.as_deref() != Some(GRANT_TYPE) {
            let description = format!("Invalid grant_type: {}", grant_type.unwrap_or_default());
            return Err(OauthError::new(400, "unsupported_grant_type", description));
        }
        let assertion =
            assertion.ok_or(OauthError::new(400, "invalid_request", "Missing required parameter: assertion"))?;
        self.verify_assertion(&assertion).map_err(|description| OauthError::new(400, "invalid_grant", description))?;
        let now = self.core.clock().now();
        Ok(self.tokens.issue(&self.cfg.client_email, now, self.cfg.token_ttl_secs, |n| format!("mock-at-{n}")))
    }

    /// fcm.md §7 item 2; the error text is what Google says (or close to it).
    fn verify_assertion(&self, jwt: &str) -> Result<(), &'static str> {
        const BAD_SIGNATURE: &str = "Invalid JWT Signature.";
        const BAD_TIME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and \
            in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
        if jwt.split('.').count() != 3 {
            return Err("Invalid JWT: malformed.");
        }
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| "Invalid JWT: bad header.")?;
        if header.alg != Algorithm::RS256 {
            return Err("Invalid JWT: alg must be RS256.");
        }
        let claims = jsonwebtoken::decode::<Value>(jwt, &self.key, &self.validation).map_err(|_| BAD_SIGNATURE)?.claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        if text("iss") != Some(self.cfg.client_email.as_str()) {
            return Err(BAD_SIGNATURE);
        }
        let scoped = text("scope").is_some_and(|scope| scope.split_whitespace().any(|s| SCOPES.contains(&s)));
        if !scoped {
            return Err("Invalid OAuth scope or ID token audience provided.");
        }
        if !text("aud").is_some_and(|aud| self.audiences.iter().any(|a| a == aud)) {
            return Err("Invalid JWT: Failed audience check.");
        }
        let (Some(iat), Some(exp)) =
            (claims.get("iat").and_then(Value::as_i64), claims.get("exp").and_then(Value::as_i64))
        else {
            return Err(BAD_TIME);
        };
        let now = self.core.clock().now().timestamp();
        let lifetime = exp - iat;
        if !(1..=ASSERTION_MAX_LIFETIME_SECS).contains(&lifetime) || (now - iat).abs() > ASSERTION_SKEW_SECS {
            return Err(BAD_TIME);
        }
        Ok(())
    }
}

/// `obj[snake]`, or its lowerCamelCase twin (proto3 JSON accepts both).
fn field<'a>(obj: &'a Map<String, Value>, snake: &str) -> Option<&'a Value> {
    obj.get(snake).or_else(|| obj.get(&camel(snake)))
}

fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `key` is `snake` or its camelCase twin.
fn is_field(key: &str, snake: &str) -> bool {
    key == snake || key == camel(snake)
}

fn object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>, GoogleError> {
    value.as_object().ok_or_else(|| invalid_value(field, "TYPE_MESSAGE", value))
}

/// Checks `names` of `obj`, where present, are strings.
fn strings(obj: &Map<String, Value>, path: &str, names: &[&str]) -> Result<(), GoogleError> {
    for name in names {
        if let Some(v) = field(obj, name) {
            if !v.is_string() {
                return Err(invalid_value(&format!("{path}.{name}"), "TYPE_STRING", v));
            }
        }
    }
    Ok(())
}

/// A `map<string, string>` of data: values strings, keys not reserved (fcm.md §3).
fn data_map(value: &Value, path: &str) -> Result<(), GoogleError> {
    let map = object(value, path)?;
    for (i, (key, v)) in map.iter().enumerate() {
        let reserved = key == "from" || key == "message_type" || key.starts_with("google") || key.starts_with("gcm");
        if reserved {
            let field = format!("{path}[{i}].key");
            return Err(violation(&field, format!("Invalid value at '{field}': reserved data key \"{key}\"")));
        }
        if !v.is_string() {
            return Err(invalid_value(&format!("{path}[{i}].value"), "TYPE_STRING", v));
        }
    }
    Ok(())
}

/// fcm.md §7 items 6–7.
fn check_message(msg: &Map<String, Value>) -> Result<(), GoogleError> {
    const KNOWN: &[&str] = &[
        "name",
        "data",
        "notification",
        "android",
        "webpush",
        "apns",
        "fcm_options",
        "token",
        "topic",
        "condition",
        "fid",
    ];
    if let Some(key) = msg.keys().find(|k| !KNOWN.iter().any(|f| is_field(k, f))) {
        return Err(unknown_field("message", key));
    }
    let targets: Vec<&str> =
        ["token", "topic", "condition", "fid"].into_iter().filter(|t| msg.contains_key(*t)).collect();
    match targets.as_slice() {
        [] => {
            return Err(violation(
                "message",
                "Recipient of the message is not set.".to_owned(),
            ))
        }
        [_] => {}
        [first, second, ..] => {
            return Err(violation(
                "message",
                format!("Invalid value at 'message' (oneof), oneof field 'target' is already set. Cannot set '{second}' after '{first}'"),
            ))
        }
    }
    strings(msg, "message", &["token", "topic", "condition", "fid"])?;
    if msg.get("token").and_then(Value::as_str) == Some("") {
        return Err(unregistered());
    }
    if let Some(data) = msg.get("data") {
        data_map(data, "message.data")?;
    }
    if let Some(notification) = msg.get("notification") {
        let n = object(notification, "message.notification")?;
        if let Some(key) = n.keys().find(|k| !["title", "body", "image"].contains(&k.as_str())) {
            return Err(unknown_field("message.notification", key));
        }
        strings(n, "message.notification", &["title", "body", "image"])?;
    }
    if let Some(android) = msg.get("android") {
        check_android(object(android, "message.android")?)?;
    }
    if let Some(apns) = msg.get("apns") {
        let apns = object(apns, "message.apns")?;
        if let Some(headers) = apns.get("headers") {
            let headers = object(headers, "message.apns.headers")?;
            for (i, v) in headers.values().enumerate() {
                if !v.is_string() {
                    let field = format!("message.apns.headers[{i}].value");
                    return Err(invalid_value(&field, "TYPE_STRING", v));
                }
            }
        }
        if let Some(payload) = apns.get("payload") {
            object(payload, "message.apns.payload")?;
        }
    }
    Ok(())
}

fn check_android(android: &Map<String, Value>) -> Result<(), GoogleError> {
    const PATH: &str = "message.android";
    strings(android, PATH, &["collapse_key", "restricted_package_name"])?;
    if let Some(priority) = field(android, "priority") {
        let known =
            priority.as_str().is_some_and(|p| p.eq_ignore_ascii_case("normal") || p.eq_ignore_ascii_case("high"));
        if !known {
            let kind = "type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority";
            return Err(invalid_value("message.android.priority", kind, priority));
        }
    }
    if let Some(ttl) = field(android, "ttl") {
        if !ttl.as_str().is_some_and(valid_ttl) {
            let kind = "type.googleapis.com/google.protobuf.Duration";
            return Err(invalid_value("message.android.ttl", kind, ttl));
        }
    }
    if let Some(data) = field(android, "data") {
        data_map(data, "message.android.data")?;
    }
    if let Some(notification) = field(android, "notification") {
        const NOTE: &str = "message.android.notification";
        let n = object(notification, NOTE)?;
        strings(n, NOTE, ANDROID_NOTIFICATION_STRINGS)?;
        if let Some(count) = field(n, "notification_count") {
            let int32 = count.as_i64().and_then(|c| i32::try_from(c).ok());
            if int32.is_none() {
                let field = "message.android.notification.notification_count";
                return Err(invalid_value(field, "TYPE_INT32", count));
            }
        }
    }
    Ok(())
}

const ANDROID_NOTIFICATION_STRINGS: &[&str] = &[
    "title",
    "body",
    "icon",
    "color",
    "sound",
    "tag",
    "click_action",
    "body_loc_key",
    "title_loc_key",
    "channel_id",
    "ticker",
    "image",
];

/// A protobuf Duration string: `^\d+(\.\d{1,9})?s$`, at most four weeks.
fn valid_ttl(ttl: &str) -> bool {
    let Some(number) = ttl.strip_suffix('s') else {
        return false;
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f) || f.len() > 9) {
        return false;
    }
    let fractional = fraction.is_some_and(|f| f.bytes().any(|b| b != b'0'));
    match whole.parse::<u64>() {
        Ok(secs) => secs < MAX_TTL_SECS || (secs == MAX_TTL_SECS && !fractional),
        Err(_) => false,
    }
}

/// Payload bytes as pushd budgets them (fcm.md §4): data keys + values, notification
/// title/body/image, android.notification strings. Call after [`check_message`].
fn payload_bytes(msg: &Map<String, Value>) -> usize {
    let str_len = |v: &Value| v.as_str().map_or(0, str::len);
    let mut total = 0;
    if let Some(data) = msg.get("data").and_then(Value::as_object) {
        total += data.iter().map(|(k, v)| k.len() + str_len(v)).sum::<usize>();
    }
    if let Some(n) = msg.get("notification").and_then(Value::as_object) {
        total += ["title", "body", "image"].iter().filter_map(|f| n.get(*f)).map(str_len).sum::<usize>();
    }
    let android_notification =
        msg.get("android").and_then(Value::as_object).and_then(|a| field(a, "notification")).and_then(Value::as_object);
    if let Some(n) = android_notification {
        total += n.values().map(str_len).sum::<usize>();
    }
    total
}

#[cfg(test)]
mod tests {
    use super::super::testing::{client, FCM_ACCOUNT_JSON, FCM_PUB_PEM};
    use super::super::MockRule;
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use jsonwebtoken::{EncodingKey, Header};

    const REG_TOKEN: &str = "fX3k9Qm2Tq6:APA91bHdemo";

    struct Account {
        project_id: String,
        client_email: String,
        private_key: String,
    }

    fn account() -> Account {
        let v: Value = serde_json::from_str(FCM_ACCOUNT_JSON).expect("demo account parses");
        let text = |k: &str| v[k].as_str().expect("demo account field").to_owned();
        Account { project_id: text("project_id"), client_email: text("client_email"), private_key: text("private_key") }
    }

    fn clock() -> ManualClock {
        ManualClock::new(chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("valid timestamp"))
    }

    async fn start(clock: &ManualClock) -> MockFcm {
        let a = account();
        let mut cfg = MockFcmConfig::new(a.project_id, a.client_email, FCM_PUB_PEM);
        cfg.clock = Arc::new(clock.clone());
        MockFcm::start(cfg).await.expect("mock starts")
    }

    fn assertion_from(claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("demo-key-1".to_owned());
        let key = EncodingKey::from_rsa_pem(account().private_key.as_bytes()).expect("key");
        jsonwebtoken::encode(&header, claims, &key).expect("signs")
    }

    fn claims(mock: &MockFcm, clock: &ManualClock) -> Value {
        let now = clock.now().timestamp();
        json!({
            "iss": account().client_email,
            "scope": SCOPES[0],
            "aud": mock.token_url().as_str(),
            "iat": now,
            "exp": now + 3600,
        })
    }

    async fn exchange(client: &reqwest::Client, mock: &MockFcm, form: &[(&str, &str)]) -> (u16, Value) {
        let response = client.post(mock.token_url()).form(form).send().await.expect("mock answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    async fn access_token(client: &reqwest::Client, mock: &MockFcm, clock: &ManualClock) -> String {
        let assertion = assertion_from(&claims(mock, clock));
        let (status, body) = exchange(client, mock, &[("grant_type", GRANT_TYPE), ("assertion", &assertion)]).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    async fn send(client: &reqwest::Client, mock: &MockFcm, token: &str, body: &Value) -> (u16, Value) {
        send_to(client, mock, &account().project_id, token, body).await
    }

    async fn send_to(
        client: &reqwest::Client,
        mock: &MockFcm,
        project: &str,
        token: &str,
        body: &Value,
    ) -> (u16, Value) {
        let url = mock.url().join(&format!("v1/projects/{project}/messages:send")).expect("url");
        let response = client.post(url).bearer_auth(token).json(body).send().await.expect("mock answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    fn message() -> Value {
        json!({
            "message": {
                "token": REG_TOKEN,
                "notification": { "title": "Alice", "body": "See you at 3?" },
                "data": { "conv": "42", "msg": "9f1c" },
                "android": {
                    "priority": "HIGH",
                    "ttl": "3600s",
                    "collapse_key": "conv-42",
                    "notification": { "channel_id": "messages", "tag": "conv-42", "notification_count": 7 }
                },
                "apns": {
                    "headers": { "apns-priority": "10", "apns-push-type": "alert" },
                    "payload": { "aps": { "badge": 7 } }
                }
            }
        })
    }

    fn error_code(body: &Value) -> Option<&str> {
        body["error"]["details"].as_array()?.iter().find(|d| d["@type"] == FCM_ERROR_TYPE)?["errorCode"].as_str()
    }

    fn violated_field(body: &Value) -> Option<&str> {
        body["error"]["details"].as_array()?.iter().find(|d| d["@type"] == BAD_REQUEST_TYPE)?["fieldViolations"][0]
            ["field"]
            .as_str()
    }

    #[tokio::test]
    async fn token_exchange_then_send_is_recorded() {
        let clock = clock();
        let mock = start(&clock).await;
        let client = client(&mock, false);

        let token = access_token(&client, &mock, &clock).await;
        let (status, body) = send(&client, &mock, &token, &message()).await;

        assert_eq!(token, "mock-at-1");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["name"], format!("projects/{}/messages/1", account().project_id));
        assert_eq!(mock.token_requests(), 1);
        let got = mock.received();
        assert_eq!(got.len(), 1, "token calls are not recorded as sends");
        let r = &got[0];
        assert_eq!((r.vendor, r.token.as_str(), r.status), ("fcm", REG_TOKEN, 200));
        assert_eq!(r.http_version, "HTTP/2.0", "ALPN picks h2 when offered");
        assert_eq!(r.headers["authorization"], "Bearer mock-");
        assert_eq!(r.body, message());
        assert_eq!(r.answer, body);
    }

    #[tokio::test]
    async fn http1_clients_are_served_too() {
        let clock = clock();
        let mock = start(&clock).await;
        let ca = reqwest::Certificate::from_pem(mock.ca_pem().as_bytes()).expect("CA");
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .http1_only()
            .build()
            .expect("client");

        let token = access_token(&client, &mock, &clock).await;
        let (status, _) = send(&client, &mock, &token, &message()).await;

        assert_eq!(status, 200);
        assert_eq!(mock.received()[0].http_version, "HTTP/1.1");
    }

    #[tokio::test]
    async fn revoked_access_token_is_unauthenticated_until_a_new_one_is_fetched() {
        let clock = clock();
        let mock = start(&clock).await;
        let client = client(&mock, false);
        let first = access_token(&client, &mock, &clock).await;
        mock.script(MockRule::any(MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));

        let revoked = send(&client, &mock, &first, &message()).await;
        let again = send(&client, &mock, &first, &message()).await;
        let second = access_token(&client, &mock, &clock).await;
        let fresh = send(&client, &mock, &second, &message()).await;

        for (status, body) in [&revoked, &again] {
            assert_eq!(*status, 401);
            assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
            assert_eq!(error_code(body), None, "a plain 401 carries no errorCode");
        }
        assert_eq!(fresh.0, 200);
        assert_eq!(mock.token_requests(), 2);
    }

    #[tokio::test]
    async fn access_token_expires_after_its_ttl() {
        let clock = clock();
        let mock = start(&clock).await;
        let client = client(&mock, false);
        let token = access_token(&client, &mock, &clock).await;

        clock.advance(chrono::Duration::seconds(3599));
        let before = send(&client, &mock, &token, &message()).await.0;
        clock.advance(chrono::Duration::seconds(1));
        let after = send(&client, &mock, &token, &message()).await.0;

        assert_eq!((before, after), (200, 401));
    }

    #[tokio::test]
    async fn bad_assertions_are_invalid_grant() {
        let clock = clock();
        let mock = start(&clock).await;
        let client = client(&mock, false);
        let good = claims(&mock, &clock);
        let with = |key: &str, value: Value| {
            let mut c = good.clone();
            c[key] = value;
            assertion_from(&c)
        };
        let now = clock.now().timestamp();
        // Claims swapped under a valid signature: the signature no longer matches.
        let forged = {
            let real = assertion_from(&good);
            let other = with("iss", json!("evil@example.com"));
            let parts: Vec<&str> = real.split('.').collect();
            let other_claims = other.split('.').nth(1).expect("claims part");
            format!("{}.{}.{}", parts[0], other_claims, parts[2])
        };
        let cases = [
            ("forged", forged),
            ("other iss", with("iss", json!("someone@else.iam.gserviceaccount.com"))),
            ("no fcm scope", with("scope", json!("https://www.googleapis.com/auth/drive"))),
            ("other aud", with("aud", json!("https://example.com/token"))),
            ("two hours", with("exp", json!(now + 7200))),
            ("stale iat", {
                let mut c = good.clone();
                c["iat"] = json!(now - 600);
                c["exp"] = json!(now + 3000);
                assertion_from(&c)
            }),
            ("not a jwt", "abc".to_owned()),
        ];

        let mut failures = Vec::new();
        for (name, assertion) in &cases {
            let form = [("grant_type", GRANT_TYPE), ("assertion", assertion.as_str())];
            let (status, body) = exchange(&client, &mock, &form).await;
            if status != 400 || body["error"] != "invalid_grant" {
                failures.push(format!("{name}: {status} {body}"));
            }
        }
        let google_aud = with("aud", json!(GOOGLE_TOKEN_URL));
        let accepted = exchange(&client, &mock, &[("grant_type", GRANT_TYPE), ("assertion", &google_aud)]).await;
        let wrong_grant = exchange(&client, &mock, &[("grant_type", "password")]).await;

        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(accepted.0, 200, "Google's own token URL is a valid aud");
        assert_eq!(wrong_grant.0, 400);
        assert_eq!(wrong_grant.1["error"], "unsupported_grant_type");
        assert_eq!(mock.token_requests(), cases.len() as u64 + 2);
    }

    #[tokio::test]
    async fn invalid_messages_name_the_violated_field() {
        let clock = clock();
        let mock = start(&clock).await;
        let client = client(&mock, false);
        let token = access_token(&client, &mock, &clock).await;
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut m = message();
            f(&mut m);
            m
        };
        let cases: Vec<(&str, Value, &str)> = vec![
            ("number in data", edit(&|m| m["message"]["data"]["unread"] = json!(7)), "message.data[2].value"),
            ("reserved key", edit(&|m| m["message"]["data"]["google.x"] = json!("1")), "message.data[1].key"),
            ("from key", edit(&|m| m["message"]["data"]["from"] = json!("1")), "message.data[1].key"),
            ("ttl unit", edit(&|m| m["message"]["android"]["ttl"] = json!("1h")), "message.android.ttl"),
            ("ttl too long", edit(&|m| m["message"]["android"]["ttl"] = json!("2419201s")), "message.android.ttl"),
            ("priority", edit(&|m| m["message"]["android"]["priority"] = json!("urgent")), "message.android.priority"),
            (
                "count as text",
                edit(&|m| m["message"]["android"]["notification"]["notification_count"] = json!("7")),
                "message.android.notification.notification_count",
            ),
            ("title number", edit(&|m| m["message"]["notification"]["title"] = json!(5)), "message.notification.title"),
            (
                "apns header number",
                edit(&|m| m["message"]["apns"]["headers"]["apns-priority"] = json!(10)),
                "message.apns.headers[0].value",
            ),
            ("two targets", edit(&|m| m["message"]["topic"] = json!("news")), "message"),
            (
                "no target",
                edit(&|m| {
                    if let Some(msg) = m["message"].as_object_mut() {
                        msg.remove("token");
                    }
                }),
                "message",
            ),
            ("unknown field", edit(&|m| m["message"]["priority"] = json!("high")), "message"),
            ("too big", edit(&|m| m["message"]["data"]["pad"] = json!("x".repeat(4096))), "message"),
            ("no message", json!({ "validate_only": false }), "message"),
        ];

        let mut failures = Vec::new();
        for (name, body, field) in &cases {
            let (status, answer) = send(&client, &mock, &token, body).await;
            let ok = status == 400
                && answer["error"]["status"] == "INVALID_ARGUMENT"
                && violated_field(&answer) == Some(*field);
            if !ok {
                failures.push(format!("{name}: expected field {field}, got {status} {answer}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert!(mock.received().iter().all(|r| r.status == 400));
    }

    #[tokio::test]
    async fn routing_auth_and_target_errors_use_google_answers() {
        let clock = clock();
        let mock = start(&clock).await;
        let client = client(&mock, false);
        let token = access_token(&client, &mock, &clock).await;
        let mut empty_token = message();
        empty_token["message"]["token"] = json!("");

        let unregistered = send(&client, &mock, &token, &empty_token).await;
        let other_project = send_to(&client, &mock, "someone-else", &token, &message()).await;
        let unknown_token = send(&client, &mock, "ya29.not-ours", &message()).await;
        let not_json = client
            .post(mock.url().join("v1/projects/pushd-demo/messages:send").expect("url"))
            .bearer_auth(&token)
            .body("{")
            .send()
            .await
            .expect("mock answers");

        assert_eq!(unregistered.0, 404);
        assert_eq!(error_code(&unregistered.1), Some("UNREGISTERED"));
        assert_eq!(other_project.0, 403);
        assert_eq!(other_project.1["error"]["status"], "PERMISSION_DENIED");
        assert_eq!(error_code(&other_project.1), None);
        assert_eq!(unknown_token.0, 401);
        assert_eq!(not_json.status(), 400);
    }

    #[tokio::test]
    async fn camel_case_fields_and_validate_only_are_accepted() {
        let clock = clock();
        let mock = start(&clock).await;
        let client = client(&mock, false);
        let token = access_token(&client, &mock, &clock).await;
        let body = json!({
            "validateOnly": true,
            "message": {
                "token": REG_TOKEN,
                "android": {
                    "collapseKey": "c",
                    "ttl": "0.5s",
                    "priority": "normal",
                    "notification": { "channelId": "m", "notificationCount": 1 }
                }
            }
        });

        let (status, answer) = send(&client, &mock, &token, &body).await;

        assert_eq!(status, 200, "{answer}");
        assert_eq!(mock.received()[0].body["validateOnly"], true);
    }

    #[tokio::test]
    async fn scripted_errors_follow_the_google_error_model() {
        let clock = clock();
        let mock = start(&clock).await;
        let client = client(&mock, false);
        let token = access_token(&client, &mock, &clock).await;
        let script = |reason: &str| MockRule::any(MockAnswer::with_reason(reason)).times(1);
        mock.script(script("UNREGISTERED"));
        mock.script(script("INVALID_ARGUMENT"));
        mock.script(script("SENDER_ID_MISMATCH"));
        mock.script(
            MockRule::any(MockAnswer { retry_after_secs: Some(30), ..MockAnswer::with_reason("QUOTA_EXCEEDED") })
                .times(1),
        );
        mock.script(script("INTERNAL"));
        mock.script(MockRule::any(MockAnswer::with_status(503)).times(1));

        let mut got = Vec::new();
        for _ in 0..6 {
            let url = mock.url().join("v1/projects/pushd-demo/messages:send").expect("url");
            let response = client.post(url).bearer_auth(&token).json(&message()).send().await.expect("mock answers");
            let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("JSON");
            got.push((status, error_code(&body).map(str::to_owned), retry_after, body));
        }

        let summary: Vec<(u16, Option<&str>, Option<&str>)> =
            got.iter().map(|(s, c, r, _)| (*s, c.as_deref(), r.as_deref())).collect();
        assert_eq!(
            summary,
            [
                (404, Some("UNREGISTERED"), None),
                (400, Some("INVALID_ARGUMENT"), None),
                (403, Some("SENDER_ID_MISMATCH"), None),
                (429, Some("QUOTA_EXCEEDED"), Some("30")),
                (500, Some("INTERNAL"), None),
                (503, Some("UNAVAILABLE"), None),
            ]
        );
        let invalid_token = &got[1].3;
        assert_eq!(violated_field(invalid_token), None, "a bad token has no BadRequest detail");
        assert_eq!(got[3].3["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(send(&client, &mock, &token, &message()).await.0, 200);
    }

    #[test]
    fn ttl_follows_the_protobuf_duration_form() {
        for ok in ["0s", "3600s", "0.5s", "1.123456789s", "2419200s", "2419200.000s"] {
            assert!(valid_ttl(ok), "{ok}");
        }
        for bad in ["", "s", "1", "1h", "-1s", "1.s", ".5s", "1.1234567890s", "2419200.1s", "2419201s"] {
            assert!(!valid_ttl(bad), "{bad}");
        }
    }

    #[test]
    fn payload_budget_counts_data_and_notification_text() {
        let m = message();
        let msg = m["message"].as_object().expect("object");
        // data: conv+42 (6) + msg+9f1c (7); notification: Alice (5) + See you at 3? (13);
        // android.notification strings: messages (8) + conv-42 (7).
        assert_eq!(payload_bytes(msg), 6 + 7 + 5 + 13 + 8 + 7);
    }
}
