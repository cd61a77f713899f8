//! Mock Honor Push: the OAuth 2.0 token endpoint (both the documented Keycloak path and the
//! `/auth/token` path seen in SDKs) and the `sendMessage` endpoint, validating as
//! `docs/vendors/honor.md` §7 describes and answering in the shape community clients read
//! (`code`, `message`, `data.sendResult/requestId/failTokens/expireTokens`).
//!
//! Owns what is Honor's own: the client-credentials client (distinct from the App ID), the
//! Keycloak-style token answer, the send route, the `timestamp` header check, body checks that
//! catch a Huawei-shaped body (`message` wrapper, snake_case keys → `80100003`), the answer
//! bodies with their per-token lists, a switch between a numeric `200` and a string
//! `"80000000"` success code, and the code table scripts can name. The server core it plugs
//! into (auth ledger checks, size and token-count limits `80300008`/`80300010`, per-token rule
//! lookup, recording) is `hms.rs`, shared with Huawei. Does not own: TLS, recording, rules
//! (`mod.rs`, `tls.rs`). Token calls are counted ([`MockHonor::token_requests`]), not recorded;
//! each send is one record entry whose `token` is the request's tokens joined with `,`.
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

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::hms::{self, refuse, Dialect, HmsMock, Refusal};
use super::oauth::Wording;
use super::{default_addr, reply, MockTls, ReadRequest, Reply};
use crate::clock::{SharedClock, SystemClock};
use crate::provider::honor::DAILY_QUOTA_CODE;

/// The documented token path (a Keycloak realm).
pub const TOKEN_PATH: &str = "/auth/realms/developer/protocol/openid-connect/token";
/// The token path several SDKs use.
pub const SDK_TOKEN_PATH: &str = "/auth/token";
/// Longest `android.ttl`: 15 days.
const MAX_TTL_SECS: u64 = 1_296_000;
/// The list a token goes in when the rule says it is no longer valid.
const EXPIRE_TOKENS: &str = "expireTokens";
/// The list a token goes in when it failed otherwise (bad format, not this app).
const FAIL_TOKENS: &str = "failTokens";

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

    fn success_body(&self, sent: bool, fail: &[&str], expire: &[&str], n: u64) -> Value {
        json!({
            "code": self.success_code,
            "message": "success",
            "data": {
                "sendResult": sent,
                "requestId": request_id(n),
                "failTokens": fail,
                "expireTokens": expire,
            }
        })
    }
}

/// A running mock Honor Push (token endpoints + send endpoint).
/// Derefs to [`MockServer`](super::MockServer); the token endpoint's counters and [`HmsMock::sends_to`] are
/// [`HmsMock`]'s. Cheap to clone; clones share the server.
pub type MockHonor = HmsMock<MockHonorConfig>;

impl MockHonor {
    /// Binds `cfg.addr` and serves HTTPS (ALPN `h2`, `http/1.1`) on the current tokio runtime.
    /// Returns once listening.
    pub async fn start(cfg: MockHonorConfig) -> std::io::Result<Self> {
        hms::start(cfg.addr, cfg.tls.clone(), cfg.clock.clone(), cfg).await
    }
}

/// The tokens a recorded send body addressed.
pub fn tokens_of(body: &Value) -> Vec<String> {
    hms::token_strings(body.get("token"))
}

/// The `n`-th answer's `requestId`.
fn request_id(n: u64) -> String {
    format!("{}", 17_180_000_000_000u64 + n)
}

impl Dialect for MockHonorConfig {
    const VENDOR: &'static str = "honor";
    const TOKEN_PATHS: &'static [&'static str] = &[TOKEN_PATH, SDK_TOKEN_PATH];
    const CODES: &'static [(&'static str, u16, &'static str)] = CODES;
    /// Keycloak's `error_description`s of refused token calls.
    const WORDING: Wording = Wording {
        not_post: "HTTP 405 Method Not Allowed",
        bad_grant: "Unsupported grant_type",
        bad_client: "Invalid client or Invalid client credentials",
    };
    const BAD_FORMAT_LIST: &'static str = FAIL_TOKENS;
    /// The send path names this app (`/api/v1/{app_id}/sendMessage`): nothing more to check.
    type Route = ();
    type TokenState = ();

    /// The OAuth client, not the App ID.
    fn client(&self) -> (&str, &str) {
        (&self.client_id, &self.client_secret)
    }

    fn token_ttl_secs(&self) -> u64 {
        self.token_ttl_secs
    }

    fn access_token(n: u64) -> String {
        format!("eyJhbGciOi.mock-honor-{n}")
    }

    /// Keycloak's answer, extras included.
    fn token_answer(&self, token: &str) -> Reply {
        let body = json!({
            "access_token": token,
            "expires_in": self.token_ttl_secs,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "profile email",
        });
        reply(200, &[], Some(&body))
    }

    fn tokens_of(body: &Value) -> Vec<String> {
        tokens_of(body)
    }

    /// An app id that is not this app's is a wrong URL (honor.md §7 item 3).
    fn route(&self, path: &str) -> Option<()> {
        let app = path.strip_prefix("/api/v1/").and_then(|rest| rest.strip_suffix("/sendMessage"));
        (app == Some(self.app_id.as_str())).then_some(())
    }

    fn addressed(&self, _route: &(), client: &str) -> bool {
        client == self.client_id
    }

    fn check_headers(&self, r: &ReadRequest) -> Result<(), Refusal> {
        if self.require_timestamp {
            let ok = r.header("timestamp").is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                return Err(refuse("80100001", "timestamp header (epoch milliseconds) is required"));
            }
        }
        Ok(())
    }

    /// The body itself: Honor has no `message` wrapper.
    fn message<'b>(&self, body: Option<&'b Value>) -> Result<&'b Map<String, Value>, Refusal> {
        let body = body.and_then(Value::as_object).ok_or_else(|| refuse("80100001", "body is not a JSON object"))?;
        check_body(body)?;
        Ok(body)
    }

    fn token_list(reason: &str) -> Option<&'static str> {
        match reason {
            "expire_token" | "expireTokens" => Some(EXPIRE_TOKENS),
            "fail_token" | "failTokens" => Some(FAIL_TOKENS),
            _ => None,
        }
    }

    /// An error answer; the code as a JSON number, as Honor's `code` may be.
    fn error_body(code: &str, message: &str, n: u64) -> Value {
        let code = code.parse::<u64>().map_or_else(|_| json!(code), |n| json!(n));
        json!({ "code": code, "message": message, "data": { "requestId": request_id(n) } })
    }

    /// The success code with `sendResult` true unless no token was taken.
    fn accepted(&self, sent: usize, listed: &[(&'static str, &str)], n: u64) -> Value {
        let list = |name: &str| listed.iter().filter(|(l, _)| *l == name).map(|(_, t)| *t).collect::<Vec<_>>();
        self.success_body(listed.len() < sent, &list(FAIL_TOKENS), &list(EXPIRE_TOKENS), n)
    }
}

/// `ttl`: `\d+s`, at most 15 days.
fn valid_ttl(ttl: &str) -> bool {
    ttl.strip_suffix('s')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .is_some_and(|d| d.parse::<u64>().is_ok_and(|s| s <= MAX_TTL_SECS))
}

/// Unknown keys (snake_case ones from a Huawei-shaped body in particular) are refused.
fn known_keys(obj: &Map<String, Value>, known: &[&str], path: &str) -> Result<(), Refusal> {
    match hms::unknown_key(obj, known) {
        Some(k) if k.contains('_') => {
            Err(refuse("80100003", format!("Illegal payload, {path}.{k}: Honor fields are camelCase")))
        }
        Some(k) => Err(refuse("80100003", format!("Illegal payload, unknown field {path}.{k}"))),
        None => Ok(()),
    }
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
    hms::strings(b, &["data"], "body")?;
    let top = match b.get("notification") {
        Some(n) => {
            let n = n.as_object().ok_or_else(|| refuse("80100003", "Illegal payload, notification"))?;
            known_keys(n, &["title", "body", "image"], "notification")?;
            hms::strings(n, &["title", "body", "image"], "notification")?;
            Some(n)
        }
        None => None,
    };
    if let Some(android) = b.get("android") {
        let a = android.as_object().ok_or_else(|| refuse("80100003", "Illegal payload, android"))?;
        known_keys(a, &["ttl", "biTag", "data", "targetUserType", "notification"], "android")?;
        hms::strings(a, &["ttl", "biTag", "data"], "android")?;
        if a.get("ttl").and_then(Value::as_str).is_some_and(|t| !valid_ttl(t)) {
            return Err(refuse("80100004", "Illegal ttl"));
        }
        if !hms::int_in(a, "targetUserType", 0..=1) {
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
    hms::strings(n, &["title", "body", "image", "bigTitle", "bigBody", "importance", "when", "tag", "group"], PATH)?;
    hms::texts_present(n, top)?;
    if n.get("importance").is_some_and(|i| !matches!(i.as_str(), Some("LOW" | "NORMAL"))) {
        return Err(refuse("80100001", "importance must be LOW or NORMAL"));
    }
    let click = n
        .get("clickAction")
        .and_then(Value::as_object)
        .ok_or_else(|| refuse("80100003", "Illegal payload, clickAction is mandatory"))?;
    known_keys(click, &["type", "intent", "url", "action"], "android.notification.clickAction")?;
    if !hms::click_ok(click) {
        return Err(refuse("80100003", "Illegal payload, clickAction"));
    }
    if let Some(badge) = n.get("badge") {
        let b = badge.as_object().ok_or_else(|| refuse("80100003", "Illegal payload, badge"))?;
        known_keys(b, &["badgeClass", "addNum", "setNum"], "android.notification.badge")?;
        if !hms::badge_ok(b, ["badgeClass", "addNum", "setNum"]) {
            return Err(refuse("80100001", "badge: badgeClass required, addNum 1..99, setNum 0..99"));
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

    const APP: &str = "104400001";
    const CLIENT: &str = "5F2A0C7E";
    const SECRET: &str = "k9-client-secret";
    const TOKEN: &str = "IQAAAACy0example_HonorToken";

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
