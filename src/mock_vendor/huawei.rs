//! Mock Huawei Push Kit: the OAuth 2.0 token endpoint and the v1/v2 send endpoint, validating
//! as `docs/vendors/huawei.md` §7 describes and answering with Huawei's business codes.
//!
//! Owns what is Huawei's own: the client-credentials client (the App ID), the token answer
//! (`/` escaped as `\/`) and the optional token-endpoint throttle (N tokens per 5 minutes), the
//! v1/v2 routes and which app may use them, the `message` wrapper and its checks (`80100001`,
//! `80100003`, `80100013`), the answer bodies (`80300007` when every token is invalid,
//! `80100000` with `illegal_tokens` inside the `msg` string otherwise) and the code table
//! scripts can name. The server core it plugs into (auth ledger checks, size and token-count
//! limits `80300008`/`80300010`, per-token rule lookup, recording) is `hms.rs`, shared with
//! Honor. Does not own: TLS, recording, rules (`mod.rs`, `tls.rs`). Token-endpoint calls are
//! counted ([`MockHuawei::token_requests`]), not recorded: the record is the sends, one entry
//! per request, its `token` the request's tokens joined with `,`.
//!
//! Scripting: rules are looked up per token of a batch, in order. A rule whose reason is
//! `80300007` (or `illegal_token`) marks just that token invalid; any other rule answers the
//! whole request (and stops the lookup, so later tokens' rules stay pending).
//!
//! ```text
//! POST /oauth2/v3/token ─▶ form (grant_type, client_id, client_secret) ─▶ throttle ─▶ token
//! POST /v1/{app_id}/messages:send ─▶ Bearer token ─▶ body (message, fields) ─▶ count, size
//!      (or /v2/{project_id}/…)     ─▶ per token: format, scripted rule ─▶ record ─▶ answer
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde_json::{json, Map, Value};

use super::hms::{self, refuse, Dialect, HmsMock, Refusal};
use super::oauth::{OauthError, Wording};
use super::{default_addr, lock, MockTls, Reply};
use crate::clock::{SharedClock, SystemClock};
use crate::model::Timestamp;
use crate::provider::huawei::{CATEGORIES, DAILY_QUOTA_CODE};

/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/oauth2/v3/token";
/// Longest `android.ttl`: 15 days.
const MAX_TTL_SECS: u64 = 1_296_000;
/// The token endpoint's throttle window (Huawei: 1000 tokens per app per 5 minutes).
const TOKEN_WINDOW_SECS: i64 = 300;

/// The codes a script can name, with the HTTP status the mock pairs them with (huawei.md §5;
/// the pairing is unverified) and Huawei's `msg`.
const CODES: &[(&str, u16, &str)] = &[
    ("80000000", 200, "Success"),
    ("80100001", 400, "UnSupported svc"),
    ("80100002", 400, "Only one token is allowed in synchronous sending"),
    ("80100003", 400, "Illegal payload"),
    ("80100004", 400, "Illegal expire time"),
    ("80100013", 400, "Illegal collapse_key"),
    ("80100016", 400, "The message contains sensitive information"),
    ("80100017", 400, "More than 100 topic tasks are being sent at the same time"),
    ("80100018", 400, "Message signature verification failed"),
    ("80200001", 401, "Authentication Error"),
    ("80200003", 401, "Oauth Token expired."),
    ("80200005", 401, "Jwt token expired."),
    ("80300002", 400, "No permission to send message to these tokens"),
    ("80300007", 200, "All the tokens are invalid"),
    ("80300008", 400, "Push message size is too long"),
    ("80300010", 400, "token count should within 1 and 1000"),
    ("80300011", 400, "No permission to send high level message"),
    ("80300013", 400, "Illegal receipt url"),
    ("80600003", 401, "Request OAuth service failed"),
    ("81000001", 500, "Inner Error"),
    (DAILY_QUOTA_CODE, 400, "When send test message, the api request exceed limit"),
];

/// Configuration of a [`MockHuawei`].
#[derive(Clone)]
pub struct MockHuaweiConfig {
    /// Where to listen; default `127.0.0.1:0`.
    pub addr: std::net::SocketAddr,
    /// TLS material to share with other mocks; `None` generates a CA for this mock.
    pub tls: Option<Arc<MockTls>>,
    /// The clock token expiry is measured with.
    pub clock: SharedClock,
    /// The one app: OAuth `client_id` and the v1 path segment.
    pub app_id: String,
    /// Its client secret.
    pub client_secret: String,
    /// The project the v2 path may name.
    pub project_id: Option<String>,
    /// Lifetime of issued access tokens (`expires_in`), seconds.
    pub token_ttl_secs: u64,
    /// Refuse token calls (HTTP 429) beyond this many per 5 minutes; `None` = never.
    pub max_tokens_per_window: Option<u32>,
    /// Refuse notification messages whose `android.category` is not `IM` (80100003).
    pub require_im_category: bool,
}

impl std::fmt::Debug for MockHuaweiConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHuaweiConfig")
            .field("addr", &self.addr)
            .field("app_id", &self.app_id)
            .field("project_id", &self.project_id)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("max_tokens_per_window", &self.max_tokens_per_window)
            .field("require_im_category", &self.require_im_category)
            .finish_non_exhaustive()
    }
}

impl MockHuaweiConfig {
    /// A config for one app with every other setting at its default.
    pub fn new(app_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            addr: default_addr(),
            tls: None,
            clock: Arc::new(SystemClock),
            app_id: app_id.into(),
            client_secret: client_secret.into(),
            project_id: None,
            token_ttl_secs: 3600,
            max_tokens_per_window: None,
            require_im_category: false,
        }
    }
}

/// A running mock Huawei Push Kit (token endpoint + send endpoint).
/// Derefs to [`MockServer`](super::MockServer); the token endpoint's counters and [`HmsMock::sends_to`] are
/// [`HmsMock`]'s. Cheap to clone; clones share the server.
pub type MockHuawei = HmsMock<MockHuaweiConfig>;

impl MockHuawei {
    /// Binds `cfg.addr` and serves HTTPS (ALPN `h2`, `http/1.1`) on the current tokio runtime.
    /// Returns once listening.
    pub async fn start(cfg: MockHuaweiConfig) -> std::io::Result<Self> {
        hms::start(cfg.addr, cfg.tls.clone(), cfg.clock.clone(), cfg).await
    }
}

/// The tokens a recorded send body addressed.
pub fn tokens_of(body: &Value) -> Vec<String> {
    hms::token_strings(body.pointer("/message/token"))
}

/// The send routes: `/v1/{app_id}/messages:send` or `/v2/{project_id}/messages:send`.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Version {
    V1,
    V2,
}

impl Dialect for MockHuaweiConfig {
    const VENDOR: &'static str = "huawei";
    const TOKEN_PATHS: &'static [&'static str] = &[TOKEN_PATH];
    const CODES: &'static [(&'static str, u16, &'static str)] = CODES;
    /// Huawei's `error_description`s of refused token calls.
    const WORDING: Wording = Wording {
        not_post: "use POST",
        bad_grant: "grant_type must be client_credentials",
        bad_client: "invalid client id or secret",
    };
    const BAD_FORMAT_LIST: &'static str = "illegal_tokens";
    type Route = (Version, String);
    /// Times of successful token calls within the throttle window.
    type TokenState = Mutex<VecDeque<Timestamp>>;

    /// The App ID is the OAuth client.
    fn client(&self) -> (&str, &str) {
        (&self.app_id, &self.client_secret)
    }

    fn token_ttl_secs(&self) -> u64 {
        self.token_ttl_secs
    }

    /// Huawei allows 1000 tokens per app per 5 minutes: the mock's window is configurable.
    fn admit(&self, fetches: &Self::TokenState, now: Timestamp) -> Result<(), OauthError> {
        if let Some(max) = self.max_tokens_per_window {
            let mut fetches = lock(fetches);
            while fetches.front().is_some_and(|t| *t + chrono::Duration::seconds(TOKEN_WINDOW_SECS) <= now) {
                fetches.pop_front();
            }
            if fetches.len() >= max as usize {
                return Err(OauthError::new(429, "too_many_requests", "token limit per 5 minutes reached"));
            }
            fetches.push_back(now);
        }
        Ok(())
    }

    fn access_token(n: u64) -> String {
        format!("DQEBAJ{n:04}+mock/hms=")
    }

    fn token_answer(&self, token: &str) -> Reply {
        // Huawei escapes `/` as `\/`: a client slicing strings instead of parsing JSON gets a
        // token that does not work.
        let text = json!({ "access_token": token, "expires_in": self.token_ttl_secs, "token_type": "Bearer" })
            .to_string()
            .replace('/', "\\/");
        let mut response = Response::new(Full::new(Bytes::from(text)));
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        response
    }

    fn tokens_of(body: &Value) -> Vec<String> {
        tokens_of(body)
    }

    fn route(&self, path: &str) -> Option<(Version, String)> {
        [("v1", Version::V1), ("v2", Version::V2)].into_iter().find_map(|(v, version)| {
            let rest = path.strip_prefix('/')?.strip_prefix(v)?.strip_prefix('/')?;
            let id = rest.strip_suffix("/messages:send").filter(|id| !id.is_empty() && !id.contains('/'))?;
            Some((version, id.to_owned()))
        })
    }

    /// v1 names the token's app; v2 names this app's project.
    fn addressed(&self, (version, id): &(Version, String), client: &str) -> bool {
        match version {
            Version::V1 => id == client,
            Version::V2 => self.project_id.as_deref() == Some(id.as_str()) && client == self.app_id,
        }
    }

    fn message<'b>(&self, body: Option<&'b Value>) -> Result<&'b Map<String, Value>, Refusal> {
        let message = body
            .and_then(Value::as_object)
            .and_then(|b| b.get("message"))
            .and_then(Value::as_object)
            .ok_or_else(|| refuse("80100001", "Illegal request body: message is required"))?;
        if body.and_then(|b| b.get("validate_only")).is_some_and(|v| !v.is_boolean()) {
            return Err(refuse("80100001", "validate_only must be a boolean"));
        }
        check_message(message, self.require_im_category)?;
        Ok(message)
    }

    /// `illegal_token` names `80300007` for a whole request, too.
    fn script_code(reason: &str) -> &str {
        if reason == "illegal_token" {
            "80300007"
        } else {
            reason
        }
    }

    fn token_list(reason: &str) -> Option<&'static str> {
        matches!(reason, "80300007" | "illegal_token").then_some("illegal_tokens")
    }

    fn error_body(code: &str, msg: &str, n: u64) -> Value {
        json!({ "code": code, "msg": msg, "requestId": format!("{:024}", 168_812_345_678_901_234_000_000u128 + u128::from(n)) })
    }

    /// `80000000` when every token was taken, `80300007` when none was, else `80100000`
    /// with the illegal tokens in a JSON document inside `msg`.
    fn accepted(&self, sent: usize, listed: &[(&'static str, &str)], n: u64) -> Value {
        let illegal: Vec<&str> = listed.iter().map(|(_, token)| *token).collect();
        if illegal.is_empty() {
            Self::error_body("80000000", "Success", n)
        } else if illegal.len() == sent {
            Self::error_body("80300007", "All the tokens are invalid", n)
        } else {
            let detail =
                json!({ "success": sent - illegal.len(), "failure": illegal.len(), "illegal_tokens": illegal });
            Self::error_body("80100000", &detail.to_string(), n)
        }
    }
}

/// `ttl`: digits, an optional fraction of 1–9 digits, an optional `s`/`S`; at most 15 days.
fn valid_ttl(ttl: &str) -> bool {
    let number = ttl.strip_suffix(['s', 'S']).unwrap_or(ttl);
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f) || f.len() > 9) {
        return false;
    }
    let fractional = fraction.is_some_and(|f| f.bytes().any(|b| b != b'0'));
    whole.parse::<u64>().is_ok_and(|s| s < MAX_TTL_SECS || (s == MAX_TTL_SECS && !fractional))
}

fn unknown_key(obj: &Map<String, Value>, known: &[&str], path: &str) -> Result<(), Refusal> {
    match hms::unknown_key(obj, known) {
        Some(k) => Err(refuse("80100003", format!("Illegal payload, unknown field {path}.{k}"))),
        None => Ok(()),
    }
}

fn one_of(obj: &Map<String, Value>, name: &str, allowed: &[&str]) -> bool {
    obj.get(name).is_none_or(|v| v.as_str().is_some_and(|s| allowed.contains(&s)))
}

/// huawei.md §7 item 5.
fn check_message(m: &Map<String, Value>, require_im: bool) -> Result<(), Refusal> {
    const KEYS: &[&str] = &["data", "notification", "android", "apns", "webpush", "token", "topic", "condition"];
    unknown_key(m, KEYS, "message")?;
    let targets = ["token", "topic", "condition"].iter().filter(|t| m.contains_key(**t)).count();
    if targets != 1 {
        return Err(refuse("80100003", "Illegal payload, exactly one of token, topic, condition"));
    }
    if !m.contains_key("token") {
        return Err(refuse("80100001", "the mock serves token messages only"));
    }
    let token_list = m.get("token").and_then(Value::as_array);
    if !token_list.is_some_and(|ts| ts.iter().all(Value::is_string)) {
        return Err(refuse("80100003", "Illegal payload, token must be an array of strings"));
    }
    hms::strings(m, &["data"], "message")?;
    let top = match m.get("notification") {
        Some(n) => {
            let n = n.as_object().ok_or_else(|| refuse("80100003", "Illegal payload, notification"))?;
            unknown_key(n, &["title", "body", "image"], "message.notification")?;
            hms::strings(n, &["title", "body", "image"], "message.notification")?;
            Some(n)
        }
        None => None,
    };
    if let Some(android) = m.get("android") {
        let a = android.as_object().ok_or_else(|| refuse("80100003", "Illegal payload, android"))?;
        check_android(a, top, require_im)?;
    }
    Ok(())
}

fn check_android(a: &Map<String, Value>, top: Option<&Map<String, Value>>, require_im: bool) -> Result<(), Refusal> {
    const KEYS: &[&str] = &[
        "collapse_key",
        "urgency",
        "category",
        "ttl",
        "bi_tag",
        "receipt_id",
        "target_user_type",
        "data",
        "notification",
        "fast_app_target",
    ];
    unknown_key(a, KEYS, "message.android")?;
    hms::strings(a, &["category", "ttl", "bi_tag", "receipt_id", "data", "urgency"], "message.android")?;
    if !hms::int_in(a, "collapse_key", -1..=100) {
        return Err(refuse("80100013", "Illegal collapse_key"));
    }
    if !one_of(a, "urgency", &["HIGH", "NORMAL"]) {
        return Err(refuse("80100003", "Illegal payload, urgency must be HIGH or NORMAL"));
    }
    if !one_of(a, "category", CATEGORIES) {
        return Err(refuse("80100003", "Illegal payload, unknown category"));
    }
    if a.get("ttl").and_then(Value::as_str).is_some_and(|t| !valid_ttl(t)) {
        return Err(refuse("80100003", "Illegal payload, ttl"));
    }
    if !hms::int_in(a, "target_user_type", 0..=1) {
        return Err(refuse("80100003", "Illegal payload, target_user_type"));
    }
    if let Some(n) = a.get("notification") {
        let n = n.as_object().ok_or_else(|| refuse("80100003", "Illegal payload, android.notification"))?;
        check_notification(n, top)?;
        if require_im && a.get("category").and_then(Value::as_str) != Some("IM") {
            return Err(refuse("80100003", "Illegal payload, category IM is required (mock option)"));
        }
    }
    Ok(())
}

fn check_notification(n: &Map<String, Value>, top: Option<&Map<String, Value>>) -> Result<(), Refusal> {
    const PATH: &str = "message.android.notification";
    const KEYS: &[&str] = &[
        "title",
        "body",
        "icon",
        "color",
        "sound",
        "default_sound",
        "tag",
        "click_action",
        "body_loc_key",
        "body_loc_args",
        "title_loc_key",
        "title_loc_args",
        "multi_lang_key",
        "channel_id",
        "notify_summary",
        "image",
        "style",
        "big_title",
        "big_body",
        "auto_clear",
        "notify_id",
        "group",
        "badge",
        "ticker",
        "when",
        "local_only",
        "importance",
        "use_default_vibrate",
        "use_default_light",
        "vibrate_config",
        "visibility",
        "light_settings",
        "foreground_show",
        "inbox_content",
        "buttons",
        "profile_id",
    ];
    unknown_key(n, KEYS, PATH)?;
    hms::strings(n, &["title", "body", "channel_id", "tag", "group", "image", "sound", "importance"], PATH)?;
    hms::texts_present(n, top)?;
    if !one_of(n, "importance", &["LOW", "NORMAL", "HIGH"]) {
        return Err(refuse("80100003", "Illegal payload, importance must be LOW or NORMAL"));
    }
    if !hms::int_in(n, "notify_id", 0..=i64::from(i32::MAX)) {
        return Err(refuse("80100003", "Illegal payload, notify_id"));
    }
    let click = n
        .get("click_action")
        .and_then(Value::as_object)
        .ok_or_else(|| refuse("80100003", "Illegal payload, click_action is mandatory"))?;
    if !hms::click_ok(click) {
        return Err(refuse("80100003", "Illegal payload, click_action"));
    }
    if let Some(badge) = n.get("badge") {
        let b = badge.as_object().ok_or_else(|| refuse("80100003", "Illegal payload, badge"))?;
        unknown_key(b, &["class", "add_num", "set_num"], "message.android.notification.badge")?;
        if !hms::badge_ok(b, ["class", "add_num", "set_num"]) {
            return Err(refuse("80100003", "Illegal payload, badge"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{client, clock};
    use super::super::{MockAnswer, MockRule};
    use super::*;
    use crate::clock::ManualClock;

    const APP: &str = "104123456";
    const SECRET: &str = "s3cr3t-app-secret";
    const TOKEN: &str = "ABC123exampleTokenValue_xyz";

    async fn start_with(clock: &ManualClock, edit: impl FnOnce(&mut MockHuaweiConfig)) -> MockHuawei {
        let mut cfg = MockHuaweiConfig::new(APP, SECRET);
        cfg.clock = Arc::new(clock.clone());
        edit(&mut cfg);
        MockHuawei::start(cfg).await.expect("mock starts")
    }

    async fn start(clock: &ManualClock) -> MockHuawei {
        start_with(clock, |_| {}).await
    }

    async fn fetch(c: &reqwest::Client, mock: &MockHuawei, form: &[(&str, &str)]) -> (u16, String) {
        let response = c.post(mock.token_url()).form(form).send().await.expect("mock answers");
        (response.status().as_u16(), response.text().await.expect("text"))
    }

    async fn access_token(c: &reqwest::Client, mock: &MockHuawei) -> String {
        let form = [("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", SECRET)];
        let (status, text) = fetch(c, mock, &form).await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        v["access_token"].as_str().expect("token").to_owned()
    }

    async fn send_path(c: &reqwest::Client, mock: &MockHuawei, path: &str, at: &str, body: &Value) -> (u16, Value) {
        let url = mock.url().join(path).expect("url");
        let response = c.post(url).bearer_auth(at).json(body).send().await.expect("mock answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("text");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn send(c: &reqwest::Client, mock: &MockHuawei, at: &str, body: &Value) -> (u16, Value) {
        send_path(c, mock, &format!("v1/{APP}/messages:send"), at, body).await
    }

    fn message(tokens: &[&str]) -> Value {
        json!({
            "validate_only": false,
            "message": {
                "token": tokens,
                "data": "{\"conv\":\"c42\",\"msg\":\"m9\"}",
                "android": {
                    "category": "IM", "collapse_key": -1, "ttl": "86400s", "bi_tag": "p-77",
                    "notification": {
                        "title": "Alice", "body": "See you at 8?", "channel_id": "chat",
                        "importance": "NORMAL", "click_action": { "type": 3 }, "tag": "c42",
                        "badge": { "class": "com.example.im.MainActivity", "set_num": 3 }
                    }
                }
            }
        })
    }

    #[tokio::test]
    async fn a_token_call_then_an_im_send_is_accepted_and_recorded() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let form = [("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", SECRET)];

        let (status, raw) = fetch(&c, &mock, &form).await;
        let token: Value = serde_json::from_str(&raw).expect("JSON");
        let at = token["access_token"].as_str().expect("token");
        let (sent, answer) = send(&c, &mock, at, &message(&[TOKEN])).await;

        assert_eq!(status, 200);
        assert!(raw.contains("\\/"), "`/` is escaped in the raw JSON: {raw}");
        assert!(at.contains('/') && at.contains('+') && at.ends_with('='), "{at}");
        assert_eq!((token["expires_in"].as_u64(), token["token_type"].as_str()), (Some(3600), Some("Bearer")));
        assert_eq!(sent, 200, "{answer}");
        assert_eq!(answer["code"], "80000000");
        assert_eq!(mock.token_requests(), 1);
        let got = mock.received();
        assert_eq!(got.len(), 1, "token calls are not recorded as sends");
        assert_eq!((got[0].vendor, got[0].token.as_str(), got[0].status), ("huawei", TOKEN, 200));
        assert_eq!(got[0].headers["authorization"], "Bearer DQEBA");
        assert_eq!(got[0].body, message(&[TOKEN]));
        assert_eq!(got[0].answer, answer);
    }

    #[tokio::test]
    async fn a_wrong_secret_or_grant_is_refused_by_the_token_endpoint() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);

        let wrong =
            fetch(&c, &mock, &[("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", "x")]).await;
        let other =
            fetch(&c, &mock, &[("grant_type", "client_credentials"), ("client_id", "1"), ("client_secret", SECRET)])
                .await;
        let grant =
            fetch(&c, &mock, &[("grant_type", "password"), ("client_id", APP), ("client_secret", SECRET)]).await;
        let json_body =
            c.post(mock.token_url()).json(&json!({"grant_type": "client_credentials"})).send().await.expect("answer");

        for (status, text) in [&wrong, &other] {
            assert_eq!(*status, 401);
            assert!(text.contains("invalid_client") && !text.contains(SECRET), "{text}");
        }
        assert_eq!(grant.0, 400);
        assert!(grant.1.contains("unsupported_grant_type"));
        assert_eq!(json_body.status(), 400);
        assert_eq!(mock.token_requests(), 4);
    }

    #[tokio::test]
    async fn access_tokens_expire_with_the_mock_clock_and_unknown_ones_are_refused() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.token_ttl_secs = 600).await;
        let c = client(&mock, false);
        let at = access_token(&c, &mock).await;

        let fresh = send(&c, &mock, &at, &message(&[TOKEN])).await;
        clock.advance(chrono::Duration::seconds(600));
        let expired = send(&c, &mock, &at, &message(&[TOKEN])).await;
        let unknown = send(&c, &mock, "not-issued-here", &message(&[TOKEN])).await;
        let second = access_token(&c, &mock).await;
        mock.expire_all_tokens();
        let revoked = send(&c, &mock, &second, &message(&[TOKEN])).await;

        assert_eq!(fresh.0, 200);
        assert_eq!((expired.0, expired.1["code"].as_str()), (401, Some("80200003")));
        assert_eq!((unknown.0, unknown.1["code"].as_str()), (401, Some("80200001")));
        assert_eq!((revoked.0, revoked.1["code"].as_str()), (401, Some("80200003")));
    }

    #[tokio::test]
    async fn the_token_endpoint_throttles_past_its_window_limit() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.max_tokens_per_window = Some(2)).await;
        let c = client(&mock, false);
        let form = [("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", SECRET)];

        let first = fetch(&c, &mock, &form).await.0;
        let second = fetch(&c, &mock, &form).await.0;
        let third = fetch(&c, &mock, &form).await.0;
        clock.advance(chrono::Duration::seconds(300));
        let after_window = fetch(&c, &mock, &form).await.0;

        assert_eq!((first, second, third, after_window), (200, 200, 429, 200));
    }

    #[tokio::test]
    async fn invalid_messages_are_refused_with_huawei_codes() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let at = access_token(&c, &mock).await;
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut m = message(&[TOKEN]);
            f(&mut m);
            m
        };
        let cases: Vec<(&str, Value, u16, &str)> = vec![
            ("no message", json!({ "validate_only": false }), 400, "80100001"),
            ("data object", edit(&|m| m["message"]["data"] = json!({"conv": "c42"})), 400, "80100003"),
            (
                "no click_action",
                edit(&|m| {
                    if let Some(n) = m["message"]["android"]["notification"].as_object_mut() {
                        n.remove("click_action");
                    }
                }),
                400,
                "80100003",
            ),
            (
                "camelCase clickAction",
                edit(&|m| m["message"]["android"]["notification"]["clickAction"] = json!({"type": 3})),
                400,
                "80100003",
            ),
            (
                "url without https",
                edit(&|m| {
                    m["message"]["android"]["notification"]["click_action"] = json!({"type": 2, "url": "http://x"})
                }),
                400,
                "80100003",
            ),
            ("ttl unit", edit(&|m| m["message"]["android"]["ttl"] = json!("1h")), 400, "80100003"),
            ("ttl too long", edit(&|m| m["message"]["android"]["ttl"] = json!("1296001s")), 400, "80100003"),
            ("collapse_key", edit(&|m| m["message"]["android"]["collapse_key"] = json!(101)), 400, "80100013"),
            ("urgency", edit(&|m| m["message"]["android"]["urgency"] = json!("URGENT")), 400, "80100003"),
            ("category", edit(&|m| m["message"]["android"]["category"] = json!("CHAT")), 400, "80100003"),
            (
                "importance",
                edit(&|m| m["message"]["android"]["notification"]["importance"] = json!("MAX")),
                400,
                "80100003",
            ),
            (
                "set_num",
                edit(&|m| m["message"]["android"]["notification"]["badge"]["set_num"] = json!(100)),
                400,
                "80100003",
            ),
            (
                "badge class",
                edit(&|m| m["message"]["android"]["notification"]["badge"] = json!({"set_num": 1})),
                400,
                "80100003",
            ),
            ("topic too", edit(&|m| m["message"]["topic"] = json!("news")), 400, "80100003"),
            ("no tokens", edit(&|m| m["message"]["token"] = json!([])), 400, "80300010"),
            ("too big", edit(&|m| m["message"]["data"] = json!("x".repeat(4096))), 400, "80300008"),
        ];
        let mut failures = Vec::new();
        for (name, body, http, code) in &cases {
            let (status, answer) = send(&c, &mock, &at, body).await;
            if status != *http || answer["code"] != *code {
                failures.push(format!("{name}: expected {http} {code}, got {status} {answer}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[tokio::test]
    async fn a_thousand_tokens_pass_and_one_more_is_refused() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let at = access_token(&c, &mock).await;
        let names: Vec<String> = (0..1001).map(|i| format!("tok{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();

        let ok = send(&c, &mock, &at, &message(&refs[..1000])).await;
        let over = send(&c, &mock, &at, &message(&refs)).await;

        assert_eq!((ok.0, ok.1["code"].as_str()), (200, Some("80000000")));
        assert_eq!((over.0, over.1["code"].as_str()), (400, Some("80300010")));
    }

    #[tokio::test]
    async fn an_invalid_token_in_a_batch_is_named_in_a_partial_success() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let at = access_token(&c, &mock).await;
        mock.script(MockRule::for_token("BADTOKEN1", MockAnswer::with_reason("80300007")));

        let (status, partial) = send(&c, &mock, &at, &message(&["GOOD1", "BADTOKEN1", "has space"])).await;
        let (_, all_bad) = send(&c, &mock, &at, &message(&["BADTOKEN1"])).await;

        assert_eq!(status, 200);
        assert_eq!(partial["code"], "80100000");
        let detail: Value =
            serde_json::from_str(partial["msg"].as_str().expect("msg is a string")).expect("JSON inside");
        assert_eq!(detail, json!({ "success": 1, "failure": 2, "illegal_tokens": ["BADTOKEN1", "has space"] }));
        assert_eq!(all_bad["code"], "80300007");
        assert_eq!(mock.received()[0].token, "GOOD1,BADTOKEN1,has space");
        assert_eq!(mock.sends_to("BADTOKEN1").len(), 2);
        assert_eq!(mock.sends_to("GOOD1").len(), 1);
    }

    #[tokio::test]
    async fn scripted_answers_use_huawei_codes_and_statuses() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let at = access_token(&c, &mock).await;
        let once = |a: MockAnswer| MockRule::any(a).times(1);
        mock.script(once(MockAnswer { retry_after_secs: Some(2), ..MockAnswer::with_status(503) }));
        mock.script(once(MockAnswer::with_reason("81000001")));
        mock.script(once(MockAnswer::with_reason(DAILY_QUOTA_CODE)));
        mock.script(once(MockAnswer::with_reason("80300002")));
        mock.script(once(MockAnswer { expire_auth: true, ..MockAnswer::default() }));

        let mut got = Vec::new();
        for _ in 0..5 {
            let url = mock.url().join(&format!("v1/{APP}/messages:send")).expect("url");
            let r = c.post(url).bearer_auth(&at).json(&message(&[TOKEN])).send().await.expect("answer");
            let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let status = r.status().as_u16();
            let body: Value = serde_json::from_str(&r.text().await.expect("text")).unwrap_or(Value::Null);
            got.push((status, body["code"].as_str().map(str::to_owned), retry_after));
        }
        let after_expiry = send(&c, &mock, &at, &message(&[TOKEN])).await;

        let summary: Vec<(u16, Option<&str>, Option<&str>)> =
            got.iter().map(|(s, c, r)| (*s, c.as_deref(), r.as_deref())).collect();
        assert_eq!(
            summary,
            [
                (503, None, Some("2")),
                (500, Some("81000001"), None),
                (400, Some(DAILY_QUOTA_CODE), None),
                (400, Some("80300002"), None),
                (401, Some("80200003"), None),
            ]
        );
        assert_eq!(after_expiry.1["code"], "80200003", "the expired token stays expired");
    }

    #[tokio::test]
    async fn routes_apps_and_the_im_category_option_are_checked() {
        let clock = clock();
        let mock = start_with(&clock, |c| {
            c.project_id = Some("388421841221892636".into());
            c.require_im_category = true;
        })
        .await;
        let c = client(&mock, false);
        let at = access_token(&c, &mock).await;
        let mut no_category = message(&[TOKEN]);
        if let Some(a) = no_category["message"]["android"].as_object_mut() {
            a.remove("category");
        }

        let v2 = send_path(&c, &mock, "v2/388421841221892636/messages:send", &at, &message(&[TOKEN])).await;
        let other_app = send_path(&c, &mock, "v1/999/messages:send", &at, &message(&[TOKEN])).await;
        let nowhere = send_path(&c, &mock, "v1/messages", &at, &message(&[TOKEN])).await;
        let unclassified = send(&c, &mock, &at, &no_category).await;

        assert_eq!(v2.0, 200);
        assert_eq!((other_app.0, other_app.1["code"].as_str()), (401, Some("80200001")));
        assert_eq!(nowhere.0, 404);
        assert_eq!((unclassified.0, unclassified.1["code"].as_str()), (400, Some("80100003")));
    }

    #[test]
    fn ttl_accepts_huawei_duration_forms() {
        for ok in ["86400s", "86400", "86400S", "0.5s", "1296000s", "1.123456789"] {
            assert!(valid_ttl(ok), "{ok}");
        }
        for bad in ["", "s", "1h", "-1s", "1.s", "1296001s", "1296000.5s", "1.1234567890s"] {
            assert!(!valid_ttl(bad), "{bad}");
        }
    }
}
