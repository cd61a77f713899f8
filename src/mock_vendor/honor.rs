//! Mock Honor Push: the OAuth 2.0 token endpoint (both the documented Keycloak path and the
//! `/auth/token` path seen in SDKs) and the `sendMessage` endpoint, validating as
//! `docs/vendors/honor.md` §7 describes and answering in the shape community clients read
//! (`code`, `message`, `data.sendResult/requestId/failTokens/expireTokens`).
//!
//! Owns: client-credentials checks (the OAuth client is distinct from the App ID), access
//! tokens (issued, expired by the mock clock, revoked; the ledger is `oauth.rs`), the `timestamp` header check, body
//! checks that catch a Huawei-shaped body (`message` wrapper, snake_case keys → `80100003`),
//! the size and token-count limits (`80300008`, `80300010`), per-token lists, and a switch
//! between a numeric `200` and a string `"80000000"` success code. Does not own: TLS,
//! recording, rules (`mod.rs`, `tls.rs`). Token calls are counted
//! ([`MockHonor::token_requests`]), not recorded; each send is one record entry whose `token`
//! is the request's tokens joined with `,`.
//!
//! Scripting: rules are looked up per token of a batch, in order. A rule whose reason is
//! `expire_token` (or `expireTokens`) puts that token in `expireTokens`, `fail_token` (or
//! `failTokens`) in `failTokens`; any other rule answers the whole request and stops the lookup.
//!
//! ```text
//! POST /auth/realms/developer/protocol/openid-connect/token | /auth/token ─▶ form ─▶ token
//! POST /api/v1/{app_id}/sendMessage ─▶ Bearer ─▶ timestamp ─▶ body (camelCase) ─▶ count, size
//!                                   ─▶ per token: format, scripted rule ─▶ record ─▶ answer
//! ```

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::oauth::{client_credentials, Access, AccessTokens, OauthError, Wording};
use super::tls::Protocols;
use super::{
    bearer, default_addr, reply, scripted_delay, start_mock, Conn, Core, MockAnswer, MockServer, MockTls, ReadRequest,
    Received, Reply, Vendor,
};
use crate::clock::{SharedClock, SystemClock};
use crate::provider::honor::DAILY_QUOTA_CODE;

/// The documented token path (a Keycloak realm).
pub const TOKEN_PATH: &str = "/auth/realms/developer/protocol/openid-connect/token";
/// The token path several SDKs use.
pub const SDK_TOKEN_PATH: &str = "/auth/token";
/// Bytes of the body without `token` (honor.md §7: mock convention, Huawei's limit).
const MAX_PAYLOAD: usize = 4096;
/// Tokens per request (mock convention).
const MAX_TOKENS: usize = 1000;
/// Longest token the mock accepts (mock convention).
const MAX_TOKEN_CHARS: usize = 512;
/// Longest `android.ttl`: 15 days.
const MAX_TTL_SECS: u64 = 1_296_000;

/// The codes a script can name, with the HTTP status the mock pairs them with and a message
/// (honor.md §5; every row unverified).
const CODES: &[(&str, u16, &str)] = &[
    ("80100001", 400, "parameter error"),
    ("80100003", 400, "Illegal payload"),
    ("80100004", 400, "Illegal ttl"),
    ("80200001", 401, "Authentication error"),
    ("80200003", 401, "Access token expired"),
    ("80300002", 403, "No permission to send message"),
    ("80300007", 200, "All the tokens are invalid"),
    ("80300008", 413, "Push message size is too long"),
    ("80300010", 400, "Too many tokens"),
    ("80600003", 401, "Request OAuth service failed"),
    ("81000001", 500, "Internal error"),
    (DAILY_QUOTA_CODE, 400, "Daily quota exceeded"),
];

/// Configuration of a [`MockHonor`].
#[derive(Clone)]
pub struct MockHonorConfig {
    /// Where to listen; default `127.0.0.1:0`.
    pub addr: std::net::SocketAddr,
    /// TLS material to share with other mocks; `None` generates a CA for this mock.
    pub tls: Option<Arc<MockTls>>,
    /// The clock token expiry is measured with.
    pub clock: SharedClock,
    /// The one app's numeric App ID (send path).
    pub app_id: String,
    /// Its OAuth client id.
    pub client_id: String,
    /// Its OAuth client secret.
    pub client_secret: String,
    /// Lifetime of issued access tokens (`expires_in`), seconds.
    pub token_ttl_secs: u64,
    /// Refuse sends without a numeric `timestamp` header (80100001).
    pub require_timestamp: bool,
    /// The success `code` to answer: numeric `200` (default) or e.g. `"80000000"`.
    pub success_code: Value,
}

impl std::fmt::Debug for MockHonorConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHonorConfig")
            .field("addr", &self.addr)
            .field("app_id", &self.app_id)
            .field("client_id", &self.client_id)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("require_timestamp", &self.require_timestamp)
            .field("success_code", &self.success_code)
            .finish_non_exhaustive()
    }
}

impl MockHonorConfig {
    /// A config for one app with every other setting at its default.
    pub fn new(app_id: impl Into<String>, client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            addr: default_addr(),
            tls: None,
            clock: Arc::new(SystemClock),
            app_id: app_id.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            token_ttl_secs: 3600,
            require_timestamp: true,
            success_code: json!(200),
        }
    }
}

/// A running mock Honor Push (token endpoints + send endpoint). Derefs to [`MockServer`] for
/// rules, the record and counters. Cheap to clone; clones share the server.
#[derive(Clone)]
pub struct MockHonor {
    server: MockServer,
    honor: Arc<HonorMock>,
}

impl std::fmt::Debug for MockHonor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHonor").field("server", &self.server).finish_non_exhaustive()
    }
}

impl Deref for MockHonor {
    type Target = MockServer;

    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl From<MockHonor> for MockServer {
    fn from(mock: MockHonor) -> MockServer {
        mock.server
    }
}

impl MockHonor {
    /// Binds `cfg.addr` and serves HTTPS (ALPN `h2`, `http/1.1`) on the current tokio runtime.
    /// Returns once listening.
    pub async fn start(cfg: MockHonorConfig) -> std::io::Result<Self> {
        let protocols = Protocols::H2OrHttp1 { max_concurrent_streams: 1000 };
        let (server, honor) =
            start_mock("honor", cfg.addr, cfg.tls.clone(), cfg.clock.clone(), protocols, |core| HonorMock {
                core,
                cfg,
                tokens: AccessTokens::new(),
                token_requests: AtomicU64::new(0),
                answers: AtomicU64::new(0),
            })
            .await?;
        Ok(Self { server, honor })
    }

    /// The documented token endpoint, `https://127.0.0.1:PORT/auth/realms/…/token`.
    pub fn token_url(&self) -> url::Url {
        let mut url = self.url();
        url.set_path(TOKEN_PATH);
        url
    }

    /// Calls to either token endpoint so far, successful or not.
    pub fn token_requests(&self) -> u64 {
        self.honor.token_requests.load(Ordering::Relaxed)
    }

    /// Expires every access token issued so far: the next send with one gets `80200003`.
    pub fn expire_all_tokens(&self) {
        self.honor.tokens.revoke_all();
    }

    /// The sends whose token list includes `token`.
    pub fn sends_to(&self, token: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| tokens_of(&r.body).iter().any(|t| t == token)).collect()
    }
}

/// The tokens a recorded send body addressed.
pub fn tokens_of(body: &Value) -> Vec<String> {
    body.get("token")
        .and_then(Value::as_array)
        .map(|ts| ts.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

struct HonorMock {
    core: Arc<Core>,
    cfg: MockHonorConfig,
    tokens: AccessTokens,
    token_requests: AtomicU64,
    /// Numbers the `requestId`s of answers.
    answers: AtomicU64,
}

/// A refusal with an Honor (Huawei-lineage) code.
#[derive(Debug)]
struct Refusal {
    http: u16,
    code: &'static str,
    message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    let http = CODES.iter().find(|(c, _, _)| *c == code).map_or(400, |(_, http, _)| *http);
    Refusal { http, code, message: message.into() }
}

/// How the mock answers one send.
struct Answer {
    http: u16,
    body: Option<Value>,
    retry_after_secs: Option<u64>,
    delay_ms: Option<u64>,
}

/// What a valid send carried.
struct Valid {
    access_token: String,
    tokens: Vec<String>,
}

/// Which list a per-token rule puts its token in.
#[derive(Clone, Copy, PartialEq)]
enum TokenList {
    Expire,
    Fail,
}

impl Vendor for HonorMock {
    type ConnState = ();

    async fn handle(&self, req: Request<Incoming>, conn: &Conn<()>) -> Reply {
        let read = ReadRequest::read(req).await;
        if read.path == TOKEN_PATH || read.path == SDK_TOKEN_PATH {
            return self.token_endpoint(&read);
        }
        let parsed = read.json();
        let tokens = parsed.as_ref().map(tokens_of).unwrap_or_default();
        let answer = match self.validate(&read, parsed.as_ref()) {
            Ok(valid) => self.answer(&valid),
            Err(Some(r)) => Answer {
                http: r.http,
                body: Some(self.error_body(r.code, &r.message)),
                retry_after_secs: None,
                delay_ms: None,
            },
            Err(None) => Answer { http: 404, body: None, retry_after_secs: None, delay_ms: None },
        };
        let recorded = answer.body.clone().unwrap_or(Value::Null);
        self.core.record(read.received("honor", tokens.join(","), conn.id, answer.http, recorded));
        let script = MockAnswer { delay_ms: answer.delay_ms, ..MockAnswer::default() };
        scripted_delay(Some(&script)).await;
        let headers: Vec<_> =
            answer.retry_after_secs.map(|s| (http::header::RETRY_AFTER, s.to_string())).into_iter().collect();
        reply(answer.http, &headers, answer.body.as_ref())
    }
}

impl HonorMock {
    fn request_id(&self) -> String {
        let n = self.answers.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}", 17_180_000_000_000u64 + n)
    }

    /// An error answer; the code as a JSON number, as Honor's `code` may be.
    fn error_body(&self, code: &str, message: &str) -> Value {
        let code = code.parse::<u64>().map_or_else(|_| json!(code), |n| json!(n));
        json!({ "code": code, "message": message, "data": { "requestId": self.request_id() } })
    }

    fn success_body(&self, sent: bool, fail: &[&str], expire: &[&str]) -> Value {
        json!({
            "code": self.cfg.success_code,
            "message": "success",
            "data": {
                "sendResult": sent,
                "requestId": self.request_id(),
                "failTokens": fail,
                "expireTokens": expire,
            }
        })
    }

    fn answer(&self, valid: &Valid) -> Answer {
        let mut fail: Vec<&str> = Vec::new();
        let mut expire: Vec<&str> = Vec::new();
        let mut delay_ms = None;
        for token in &valid.tokens {
            if !token_format_ok(token) {
                fail.push(token);
                continue;
            }
            match self.core.take_answer(token) {
                None => {}
                Some(a) => {
                    match per_token(&a) {
                        Some(TokenList::Expire) => expire.push(token),
                        Some(TokenList::Fail) => fail.push(token),
                        None => return self.scripted(&a, valid),
                    }
                    delay_ms = delay_ms.max(a.delay_ms);
                }
            }
        }
        let sent = fail.len() + expire.len() < valid.tokens.len();
        Answer { http: 200, body: Some(self.success_body(sent, &fail, &expire)), retry_after_secs: None, delay_ms }
    }

    fn scripted(&self, a: &MockAnswer, valid: &Valid) -> Answer {
        let (http, body) = if a.expire_auth {
            self.tokens.revoke(&valid.access_token);
            (401, Some(self.error_body("80200003", "Access token expired")))
        } else {
            match (a.status, a.reason.as_deref()) {
                (None | Some(200), None) => (200, Some(self.success_body(true, &[], &[]))),
                (status, Some(code)) => {
                    let (http, message) =
                        CODES.iter().find(|(c, _, _)| *c == code).map_or((400, "Scripted error"), |(_, h, m)| (*h, *m));
                    (status.unwrap_or(http), Some(self.error_body(code, message)))
                }
                (Some(400), None) => (400, Some(self.error_body("80100001", "parameter error"))),
                (Some(401), None) => (401, Some(self.error_body("80200001", "Authentication error"))),
                (Some(500), None) => (500, Some(self.error_body("81000001", "Internal error"))),
                // 429, 503, 502, 504: a gateway answer without a body.
                (Some(status), None) => (status, None),
            }
        };
        Answer { http, body, retry_after_secs: a.retry_after_secs, delay_ms: a.delay_ms }
    }

    /// Send checks: route, auth, timestamp, body. `Err(None)` = 404.
    fn validate(&self, r: &ReadRequest, body: Option<&Value>) -> Result<Valid, Option<Refusal>> {
        // An app id that is not this app's is a wrong URL (honor.md §7 item 3).
        let ours = r.path.strip_prefix("/api/v1/").and_then(|rest| rest.strip_suffix("/sendMessage"));
        if ours != Some(self.cfg.app_id.as_str()) {
            return Err(None);
        }
        if r.method != Method::POST {
            return Err(None);
        }
        let access_token = r.header("authorization").and_then(bearer).unwrap_or_default().to_owned();
        match self.tokens.check(&access_token, self.core.clock().now()) {
            Access::Valid(client) if client == self.cfg.client_id => {}
            Access::Expired => return Err(Some(refuse("80200003", "Access token expired"))),
            Access::Valid(_) | Access::Unknown => return Err(Some(refuse("80200001", "Authentication error"))),
        }
        if self.cfg.require_timestamp {
            let ok = r.header("timestamp").is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                return Err(Some(refuse("80100001", "timestamp header (epoch milliseconds) is required")));
            }
        }
        if !r.content_type_is("application/json") {
            return Err(Some(refuse("80100001", "Content-Type must be application/json")));
        }
        let body =
            body.and_then(Value::as_object).ok_or_else(|| Some(refuse("80100001", "body is not a JSON object")))?;
        check_body(body).map_err(Some)?;
        let tokens = tokens_of(&Value::Object(body.clone()));
        if tokens.len() > MAX_TOKENS {
            return Err(Some(refuse("80300010", "Too many tokens")));
        }
        let mut without_token = body.clone();
        without_token.remove("token");
        if Value::Object(without_token).to_string().len() > MAX_PAYLOAD {
            return Err(Some(refuse("80300008", "Push message size is too long")));
        }
        Ok(Valid { access_token, tokens })
    }

    fn token_endpoint(&self, r: &ReadRequest) -> Reply {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        let token = match self.exchange(r) {
            Ok(token) => token,
            Err(e) => return e.reply(),
        };
        // Keycloak's answer, extras included.
        let body = json!({
            "access_token": token,
            "expires_in": self.cfg.token_ttl_secs,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "profile email",
        });
        reply(200, &[], Some(&body))
    }

    fn exchange(&self, r: &ReadRequest) -> Result<String, OauthError> {
        client_credentials(r, &self.cfg.client_id, &self.cfg.client_secret, &WORDING)?;
        let now = self.core.clock().now();
        Ok(self
            .tokens
            .issue(&self.cfg.client_id, now, self.cfg.token_ttl_secs, |n| format!("eyJhbGciOi.mock-honor-{n}")))
    }
}

/// Keycloak's `error_description`s of refused token calls.
const WORDING: Wording = Wording {
    not_post: "HTTP 405 Method Not Allowed",
    bad_grant: "Unsupported grant_type",
    bad_client: "Invalid client or Invalid client credentials",
};

/// Which list a rule puts its token in, if it is a per-token rule.
fn per_token(a: &MockAnswer) -> Option<TokenList> {
    if a.expire_auth || !matches!(a.status, None | Some(200)) {
        return None;
    }
    match a.reason.as_deref() {
        Some("expire_token" | "expireTokens") => Some(TokenList::Expire),
        Some("fail_token" | "failTokens") => Some(TokenList::Fail),
        _ => None,
    }
}

/// Mock convention: 1–512 characters, no whitespace.
fn token_format_ok(token: &str) -> bool {
    !token.is_empty() && token.chars().count() <= MAX_TOKEN_CHARS && !token.chars().any(char::is_whitespace)
}

/// `ttl`: `\d+s`, at most 15 days.
fn valid_ttl(ttl: &str) -> bool {
    ttl.strip_suffix('s')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .is_some_and(|d| d.parse::<u64>().is_ok_and(|s| s <= MAX_TTL_SECS))
}

/// Unknown keys (snake_case ones from a Huawei-shaped body in particular) are refused.
fn known_keys(obj: &Map<String, Value>, known: &[&str], path: &str) -> Result<(), Refusal> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) if k.contains('_') => {
            Err(refuse("80100003", format!("Illegal payload, {path}.{k}: Honor fields are camelCase")))
        }
        Some(k) => Err(refuse("80100003", format!("Illegal payload, unknown field {path}.{k}"))),
        None => Ok(()),
    }
}

fn strings(obj: &Map<String, Value>, names: &[&str], path: &str) -> Result<(), Refusal> {
    match names.iter().find(|n| obj.get(**n).is_some_and(|v| !v.is_string())) {
        Some(n) => Err(refuse("80100003", format!("Illegal payload, {path}.{n} must be a string"))),
        None => Ok(()),
    }
}

fn int_in(obj: &Map<String, Value>, name: &str, range: std::ops::RangeInclusive<i64>) -> bool {
    obj.get(name).is_none_or(|v| v.as_i64().is_some_and(|n| range.contains(&n)))
}

/// honor.md §7 item 5.
fn check_body(b: &Map<String, Value>) -> Result<(), Refusal> {
    if b.contains_key("message") || b.contains_key("validate_only") {
        return Err(refuse("80100003", "Illegal payload, no message wrapper: Honor fields are top level"));
    }
    known_keys(b, &["token", "data", "notification", "android"], "body")?;
    let tokens = b.get("token").and_then(Value::as_array);
    if !tokens.is_some_and(|ts| !ts.is_empty() && ts.iter().all(Value::is_string)) {
        return Err(refuse("80100001", "token must be a non-empty array of strings"));
    }
    strings(b, &["data"], "body")?;
    let top = match b.get("notification") {
        Some(n) => {
            let n = n.as_object().ok_or_else(|| refuse("80100003", "Illegal payload, notification"))?;
            known_keys(n, &["title", "body", "image"], "notification")?;
            strings(n, &["title", "body", "image"], "notification")?;
            Some(n)
        }
        None => None,
    };
    if let Some(android) = b.get("android") {
        let a = android.as_object().ok_or_else(|| refuse("80100003", "Illegal payload, android"))?;
        known_keys(a, &["ttl", "biTag", "data", "targetUserType", "notification"], "android")?;
        strings(a, &["ttl", "biTag", "data"], "android")?;
        if a.get("ttl").and_then(Value::as_str).is_some_and(|t| !valid_ttl(t)) {
            return Err(refuse("80100004", "Illegal ttl"));
        }
        if !int_in(a, "targetUserType", 0..=1) {
            return Err(refuse("80100001", "targetUserType must be 0 or 1"));
        }
        if let Some(n) = a.get("notification") {
            let n = n.as_object().ok_or_else(|| refuse("80100003", "Illegal payload, android.notification"))?;
            check_notification(n, top)?;
        }
    }
    Ok(())
}

fn check_notification(n: &Map<String, Value>, top: Option<&Map<String, Value>>) -> Result<(), Refusal> {
    const PATH: &str = "android.notification";
    const KEYS: &[&str] = &[
        "title",
        "body",
        "clickAction",
        "image",
        "style",
        "bigTitle",
        "bigBody",
        "importance",
        "when",
        "buttons",
        "badge",
        "notifyId",
        "tag",
        "group",
    ];
    known_keys(n, KEYS, PATH)?;
    strings(n, &["title", "body", "image", "bigTitle", "bigBody", "importance", "when", "tag", "group"], PATH)?;
    for text in ["title", "body"] {
        if !n.contains_key(text) && !top.is_some_and(|t| t.contains_key(text)) {
            return Err(refuse("80100003", format!("Illegal payload, {text} is mandatory")));
        }
    }
    if n.get("importance").is_some_and(|i| !matches!(i.as_str(), Some("LOW" | "NORMAL"))) {
        return Err(refuse("80100001", "importance must be LOW or NORMAL"));
    }
    let click = n
        .get("clickAction")
        .and_then(Value::as_object)
        .ok_or_else(|| refuse("80100003", "Illegal payload, clickAction is mandatory"))?;
    known_keys(click, &["type", "intent", "url", "action"], "android.notification.clickAction")?;
    let has = |k: &str| click.get(k).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let click_ok = match click.get("type").and_then(Value::as_i64) {
        Some(1) => has("intent") || has("action"),
        Some(2) => click.get("url").and_then(Value::as_str).is_some_and(|u| u.starts_with("https://")),
        Some(3) => true,
        _ => false,
    };
    if !click_ok {
        return Err(refuse("80100003", "Illegal payload, clickAction"));
    }
    if let Some(badge) = n.get("badge") {
        let b = badge.as_object().ok_or_else(|| refuse("80100003", "Illegal payload, badge"))?;
        known_keys(b, &["badgeClass", "addNum", "setNum"], "android.notification.badge")?;
        let class_ok = b.get("badgeClass").and_then(Value::as_str).is_some_and(|c| !c.is_empty());
        if !class_ok || !int_in(b, "addNum", 1..=99) || !int_in(b, "setNum", 0..=99) {
            return Err(refuse("80100001", "badge: badgeClass required, addNum 1..99, setNum 0..99"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::client;
    use super::super::MockRule;
    use super::*;
    use crate::clock::ManualClock;

    const APP: &str = "104400001";
    const CLIENT: &str = "5F2A0C7E";
    const SECRET: &str = "k9-client-secret";
    const TOKEN: &str = "IQAAAACy0example_HonorToken";

    fn clock() -> ManualClock {
        ManualClock::new(chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("valid timestamp"))
    }

    async fn start_with(clock: &ManualClock, edit: impl FnOnce(&mut MockHonorConfig)) -> MockHonor {
        let mut cfg = MockHonorConfig::new(APP, CLIENT, SECRET);
        cfg.clock = Arc::new(clock.clone());
        edit(&mut cfg);
        MockHonor::start(cfg).await.expect("mock starts")
    }

    async fn start(clock: &ManualClock) -> MockHonor {
        start_with(clock, |_| {}).await
    }

    const GOOD_FORM: [(&str, &str); 3] =
        [("grant_type", "client_credentials"), ("client_id", CLIENT), ("client_secret", SECRET)];

    async fn fetch(c: &reqwest::Client, mock: &MockHonor, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let url = mock.url().join(path.trim_start_matches('/')).expect("url");
        let response = c.post(url).form(form).send().await.expect("mock answers");
        (response.status().as_u16(), response.json().await.expect("JSON"))
    }

    async fn access_token(c: &reqwest::Client, mock: &MockHonor) -> String {
        let (status, body) = fetch(c, mock, TOKEN_PATH, &GOOD_FORM).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    async fn send_with(
        c: &reqwest::Client,
        mock: &MockHonor,
        at: &str,
        timestamp: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let url = mock.url().join(&format!("api/v1/{APP}/sendMessage")).expect("url");
        let mut req = c.post(url).bearer_auth(at).json(body);
        if let Some(t) = timestamp {
            req = req.header("timestamp", t);
        }
        let response = req.send().await.expect("mock answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("text");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn send(c: &reqwest::Client, mock: &MockHonor, at: &str, body: &Value) -> (u16, Value) {
        send_with(c, mock, at, Some("1718000000123"), body).await
    }

    fn message(tokens: &[&str]) -> Value {
        json!({
            "token": tokens,
            "data": "{\"conv\":\"c42\",\"msg\":\"m9\"}",
            "android": {
                "ttl": "86400s", "biTag": "p-77",
                "notification": {
                    "title": "Alice", "body": "See you at 8?", "importance": "NORMAL",
                    "clickAction": { "type": 3 }, "notifyId": 42,
                    "badge": { "badgeClass": "com.example.im.MainActivity", "setNum": 3 }
                }
            }
        })
    }

    #[tokio::test]
    async fn both_token_paths_issue_tokens_and_a_send_is_recorded() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);

        let (status, token) = fetch(&c, &mock, TOKEN_PATH, &GOOD_FORM).await;
        let (sdk_status, _) = fetch(&c, &mock, SDK_TOKEN_PATH, &GOOD_FORM).await;
        let at = token["access_token"].as_str().expect("token");
        let (sent, answer) = send(&c, &mock, at, &message(&[TOKEN])).await;

        assert_eq!((status, sdk_status), (200, 200));
        assert_eq!((token["expires_in"].as_u64(), token["token_type"].as_str()), (Some(3600), Some("Bearer")));
        assert_eq!(sent, 200, "{answer}");
        assert_eq!(answer["code"], 200);
        assert_eq!(answer["data"]["sendResult"], true);
        assert_eq!(answer["data"]["expireTokens"], json!([]));
        assert_eq!(mock.token_requests(), 2);
        let got = mock.received();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].vendor, got[0].token.as_str()), ("honor", TOKEN));
        assert_eq!(got[0].headers["timestamp"], "1718000000123");
        assert_eq!(got[0].headers["authorization"], "Bearer eyJhb");
        assert_eq!(got[0].body, message(&[TOKEN]));
    }

    #[tokio::test]
    async fn the_app_secret_or_app_id_is_not_the_oauth_client() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);

        let app_as_client = fetch(
            &c,
            &mock,
            TOKEN_PATH,
            &[("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", SECRET)],
        )
        .await;
        let wrong_secret = fetch(
            &c,
            &mock,
            TOKEN_PATH,
            &[("grant_type", "client_credentials"), ("client_id", CLIENT), ("client_secret", "x")],
        )
        .await;
        let grant = fetch(&c, &mock, TOKEN_PATH, &[("grant_type", "password")]).await;

        for (status, body) in [&app_as_client, &wrong_secret] {
            assert_eq!(*status, 401);
            assert_eq!(body["error"], "invalid_client");
        }
        assert_eq!((grant.0, grant.1["error"].as_str()), (400, Some("unsupported_grant_type")));
    }

    #[tokio::test]
    async fn auth_and_the_timestamp_header_are_checked() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.token_ttl_secs = 60).await;
        let c = client(&mock, false);
        let at = access_token(&c, &mock).await;

        let no_timestamp = send_with(&c, &mock, &at, None, &message(&[TOKEN])).await;
        let bad_timestamp = send_with(&c, &mock, &at, Some("yesterday"), &message(&[TOKEN])).await;
        let unknown = send(&c, &mock, "eyJ.forged", &message(&[TOKEN])).await;
        clock.advance(chrono::Duration::seconds(60));
        let expired = send(&c, &mock, &at, &message(&[TOKEN])).await;
        let fresh = access_token(&c, &mock).await;
        mock.expire_all_tokens();
        let revoked = send(&c, &mock, &fresh, &message(&[TOKEN])).await;
        let wrong_app = c
            .post(mock.url().join("api/v1/999/sendMessage").expect("url"))
            .bearer_auth(&fresh)
            .json(&message(&[TOKEN]))
            .send()
            .await
            .expect("answer");

        assert_eq!((no_timestamp.0, &no_timestamp.1["code"]), (400, &json!(80100001)));
        assert_eq!(bad_timestamp.0, 400);
        assert_eq!((unknown.0, &unknown.1["code"]), (401, &json!(80200001)));
        assert_eq!((expired.0, &expired.1["code"]), (401, &json!(80200003)));
        assert_eq!((revoked.0, &revoked.1["code"]), (401, &json!(80200003)));
        assert_eq!(wrong_app.status(), 404);
    }

    #[tokio::test]
    async fn a_huawei_shaped_or_invalid_body_is_refused() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let at = access_token(&c, &mock).await;
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut m = message(&[TOKEN]);
            f(&mut m);
            m
        };
        let cases: Vec<(&str, Value, u16, u64)> = vec![
            ("message wrapper", json!({ "validate_only": false, "message": message(&[TOKEN]) }), 400, 80100003),
            (
                "click_action",
                edit(&|m| m["android"]["notification"]["click_action"] = json!({"type": 3})),
                400,
                80100003,
            ),
            ("channel_id", edit(&|m| m["android"]["notification"]["channel_id"] = json!("chat")), 400, 80100003),
            (
                "set_num",
                edit(&|m| m["android"]["notification"]["badge"] = json!({"class": "A", "set_num": 1})),
                400,
                80100003,
            ),
            (
                "no clickAction",
                edit(&|m| {
                    if let Some(n) = m["android"]["notification"].as_object_mut() {
                        n.remove("clickAction");
                    }
                }),
                400,
                80100003,
            ),
            (
                "url type without url",
                edit(&|m| m["android"]["notification"]["clickAction"] = json!({"type": 2})),
                400,
                80100003,
            ),
            ("importance", edit(&|m| m["android"]["notification"]["importance"] = json!("HIGH")), 400, 80100001),
            ("setNum", edit(&|m| m["android"]["notification"]["badge"]["setNum"] = json!(100)), 400, 80100001),
            ("ttl", edit(&|m| m["android"]["ttl"] = json!("1296001s")), 400, 80100004),
            ("ttl form", edit(&|m| m["android"]["ttl"] = json!("86400")), 400, 80100004),
            ("data object", edit(&|m| m["data"] = json!({"conv": "c42"})), 400, 80100003),
            ("no tokens", edit(&|m| m["token"] = json!([])), 400, 80100001),
            ("too big", edit(&|m| m["data"] = json!("x".repeat(4096))), 413, 80300008),
        ];
        let mut failures = Vec::new();
        for (name, body, http, code) in &cases {
            let (status, answer) = send(&c, &mock, &at, body).await;
            if status != *http || answer["code"] != json!(code) {
                failures.push(format!("{name}: expected {http} {code}, got {status} {answer}"));
            }
        }
        let names: Vec<String> = (0..1001).map(|i| format!("tok{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let over = send(&c, &mock, &at, &message(&refs)).await;
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!((over.0, &over.1["code"]), (400, &json!(80300010)));
    }

    #[tokio::test]
    async fn per_token_rules_fill_the_expire_and_fail_lists() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let at = access_token(&c, &mock).await;
        mock.script(MockRule::for_token("GONE", MockAnswer::with_reason("expire_token")));
        mock.script(MockRule::for_token("ALIEN", MockAnswer::with_reason("fail_token")));

        let (status, mixed) = send(&c, &mock, &at, &message(&["OK1", "GONE", "ALIEN", "bad token"])).await;
        let (_, none_sent) = send(&c, &mock, &at, &message(&["GONE"])).await;

        assert_eq!(status, 200);
        assert_eq!(mixed["data"]["expireTokens"], json!(["GONE"]));
        assert_eq!(mixed["data"]["failTokens"], json!(["ALIEN", "bad token"]));
        assert_eq!(mixed["data"]["sendResult"], true);
        assert_eq!(none_sent["data"]["sendResult"], false);
        assert_eq!(mock.received()[0].token, "OK1,GONE,ALIEN,bad token");
        assert_eq!(mock.sends_to("GONE").len(), 2);
    }

    #[tokio::test]
    async fn scripted_answers_and_the_success_code_switch() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.success_code = json!("80000000")).await;
        let c = client(&mock, false);
        let at = access_token(&c, &mock).await;
        let once = |a: MockAnswer| MockRule::any(a).times(1);
        mock.script(once(MockAnswer { retry_after_secs: Some(2), ..MockAnswer::with_status(429) }));
        mock.script(once(MockAnswer::with_reason("80300007")));
        mock.script(once(MockAnswer::with_reason(DAILY_QUOTA_CODE)));
        mock.script(once(MockAnswer::with_status(500)));
        mock.script(once(MockAnswer { expire_auth: true, ..MockAnswer::default() }));

        let mut got = Vec::new();
        for _ in 0..6 {
            let url = mock.url().join(&format!("api/v1/{APP}/sendMessage")).expect("url");
            let r = c
                .post(url)
                .bearer_auth(&at)
                .header("timestamp", "1718000000123")
                .json(&message(&[TOKEN]))
                .send()
                .await
                .expect("answer");
            let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let status = r.status().as_u16();
            let body: Value = serde_json::from_str(&r.text().await.expect("text")).unwrap_or(Value::Null);
            got.push((status, body["code"].clone(), retry_after));
        }

        assert_eq!(
            got,
            vec![
                (429, Value::Null, Some("2".to_owned())),
                (200, json!(80300007), None),
                (400, json!(80300029), None),
                (500, json!(81000001), None),
                (401, json!(80200003), None),
                (401, json!(80200003), None),
            ]
        );
        let fresh = access_token(&c, &mock).await;
        assert_eq!(send(&c, &mock, &fresh, &message(&[TOKEN])).await.1["code"], "80000000");
    }

    #[test]
    fn ttl_is_seconds_with_an_s() {
        for ok in ["0s", "86400s", "1296000s"] {
            assert!(valid_ttl(ok), "{ok}");
        }
        for bad in ["", "s", "86400", "1.5s", "1296001s", "-1s"] {
            assert!(!valid_ttl(bad), "{bad}");
        }
    }
}
