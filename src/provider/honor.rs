//! Honor Push (荣耀推送, MagicOS): the wire format, the OAuth 2.0 client-credentials token call
//! and the answer table of `docs/vendors/honor.md`.
//!
//! Honor split from Huawei in 2020 and kept the Huawei shape with **camelCase** field names, no
//! `message` wrapper, a `timestamp` header and its own answer body (`code`, `message`,
//! `data.sendResult/failTokens/expireTokens`). Much of the answer side is undocumented: every
//! guess is one named constant marked "unverified" below.
//!
//! Owns what is Honor's own: the OAuth client (Keycloak realm endpoint, `client_id`/
//! `client_secret` distinct from the App ID), the send path, the camelCase body for a batch of
//! tokens sharing one push, the IM class field (`android.notification.importance`), the
//! `timestamp` header, the code table, the rate-limit statuses and the per-token lists. The
//! token call, auth parsing, headers, payload budget, batch key and classifier are the HMS
//! lineage's, shared with Huawei in `hms.rs`.
//!
//! Deliberately not here: caching the access token and coalescing refreshes (the shared auth
//! cache), batching pushes together, parking on a daily quota, retries, sleeping and metrics.
//!
//! ```text
//! client_id + client_secret ─form─▶ POST {token_url} ─▶ parse_auth ─▶ AuthToken (Bearer)
//! VendorPush + tokens + AuthToken + now ─▶ POST {send_url}/api/v1/{app_id}/sendMessage
//!                                          (Authorization: Bearer …, timestamp: <epoch ms>)
//! (status, Retry-After, {"code","message","data":{sendResult,failTokens,expireTokens}}) ─▶ Outcomes
//! ```
//!
//! IM classification: Honor's only API-level switch is `android.notification.importance`:
//! `"NORMAL"` files the push under "service & communication" (lock screen, sound, vibration),
//! `"LOW"` under "news & marketing". pushd sends `"NORMAL"` unless the credential's
//! `importance` says otherwise.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use super::code_text;
use super::credential::{CredentialContext, Problem, VendorBuild};
use super::hms::{self, Action, Answer, ClickAction, HmsVendor, OauthClient, Texts};
use super::{BuildError, VendorPush};
use crate::model::{PushType, Timestamp, VendorKind};

pub use super::hms::{MAX_BADGE, MAX_TOKEN_LIFE_SECS, MAX_TTL_SECS, MIN_REFRESH_AFTER, REFRESH_MARGIN};

/// Honor's documented token endpoint (a Keycloak realm). `…/auth/token` seen in community SDKs
/// also works with the mock; point `token_url` at it if Honor asks.
pub const DEFAULT_TOKEN_URL: &str =
    "https://iam.developer.honor.com/auth/realms/developer/protocol/openid-connect/token";

/// Base URL of the send API (`/api/v1/{app_id}/sendMessage` is appended).
pub const DEFAULT_SEND_URL: &str = "https://push-api.cloud.honor.com";

/// The header carrying the send time in epoch milliseconds (documented, required).
pub const TIMESTAMP_HEADER: HeaderName = HeaderName::from_static("timestamp");

/// Refresh after this long when the token answer has no `expires_in` (honor.md §2).
pub const REFRESH_WITHOUT_EXPIRY: chrono::Duration = chrono::Duration::minutes(50);

/// Bytes of the serialized body without its `token` list.
///
/// **Unverified**: Honor publishes no body limit; honor.md §4 assumes Huawei's 4096 bytes
/// (excluding tokens), and `fit` truncates the body to stay within it.
pub const PAYLOAD_LIMIT: usize = 4096;

/// Tokens one send may carry, unless the credential's `max_batch` lowers it.
///
/// **Unverified**: honor.md §4 assumes ≤ 1000 (Huawei lineage; beyond it Huawei answers
/// 80300010, which is Fatal for the whole batch). Lower `max_batch` if Honor refuses a batch.
pub const MAX_BATCH: usize = 1000;

/// The IM class of an alert unless the credential says otherwise: service & communication.
pub const DEFAULT_IMPORTANCE: &str = "NORMAL";

/// The answer code meaning "this app's daily quota is used up: not again today".
///
/// **Unverified**: Honor documents no quota answer at all. The per-app daily cap it does state
/// is on test messages (`targetUserType: 1`, 1000 a day); pushd assumes Honor answers it like
/// its Huawei lineage (`80300029`, "the api request exceed limit" for test messages).
pub const DAILY_QUOTA_CODE: &str = "80300029";

/// HTTP statuses meaning "rate limited: slow down".
///
/// **Unverified**: Honor documents no rate-limit answer; honor.md §4 treats 429 and 503 alike.
pub const RATE_LIMIT_STATUSES: &[u16] = &[429, 503];

/// honor.md §5, one row per code (every row unverified: apart from success, Huawei lineage).
const CODES: &[(&str, Action)] = &[
    // Accepted; the token lists say which tokens failed. **Unverified**: community clients
    // compare `code` as text and accept `200` (documented by them), some also `80000000`
    // (Huawei lineage) and `0`.
    ("200", Action::PerToken),
    ("80000000", Action::PerToken),
    ("0", Action::PerToken),
    ("80100000", Action::PerToken),
    ("80100001", Action::Fatal),
    ("80100003", Action::Fatal),
    ("80100004", Action::Fatal),
    ("80200001", Action::RefreshAuth),
    ("80200003", Action::RefreshAuth),
    ("80300002", Action::Fatal),
    ("80300007", Action::AllInvalid),
    ("80300008", Action::Fatal),
    ("80300010", Action::Fatal),
    ("80600003", Action::RefreshAuth),
    ("81000001", Action::Retry(None)),
    (DAILY_QUOTA_CODE, Action::Quota),
];

/// Configuration of one Honor credential (one app).
#[derive(Clone)]
pub struct HonorConfig {
    /// The numeric App ID: goes in the send path.
    pub app_id: String,
    /// The OAuth client id (distinct from the App ID).
    pub client_id: String,
    /// The OAuth client secret. Never logged.
    pub client_secret: String,
    /// The full URL of the token endpoint.
    pub token_url: url::Url,
    /// Base URL of the send API.
    pub send_url: url::Url,
    /// `android.notification.importance` of alerts and calls: `NORMAL` or `LOW`.
    pub importance: String,
    /// The launcher Activity (`badge.badgeClass`); without it no badge is sent.
    pub badge_class: Option<String>,
    /// Send test messages (`targetUserType: 1`, 1000 per app per day): for staging apps.
    pub test_messages: bool,
    /// Tokens per request, 1..=[`MAX_BATCH`].
    pub max_batch: usize,
}

impl fmt::Debug for HonorConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HonorConfig")
            .field("app_id", &self.app_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token_url", &self.token_url.as_str())
            .field("send_url", &self.send_url.as_str())
            .field("importance", &self.importance)
            .field("badge_class", &self.badge_class)
            .field("test_messages", &self.test_messages)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

/// The Honor vendor: builds requests and classifies answers for one credential
/// ([`Vendor`](super::Vendor) comes from `hms.rs`).
pub struct Honor {
    cfg: HonorConfig,
    /// `{send_url}/api/v1/{app_id}/sendMessage`.
    send_url: url::Url,
}

impl fmt::Debug for Honor {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Honor").field("cfg", &self.cfg).field("send_url", &self.send_url.as_str()).finish()
    }
}

impl Honor {
    /// Builds the send URL from the configuration.
    pub fn new(cfg: HonorConfig) -> Result<Self, BuildError> {
        let mut send_url = cfg.send_url.clone();
        send_url
            .path_segments_mut()
            .map_err(|_| BuildError::Payload("Honor send_url must be an http(s) base URL"))?
            .pop_if_empty()
            .extend(["api", "v1", cfg.app_id.as_str(), "sendMessage"]);
        Ok(Self { cfg, send_url })
    }

    /// The body for `tokens` (empty: the form whose size and hash are budgeted).
    fn send_body<'a>(&'a self, push: &'a VendorPush, tokens: Vec<&'a str>) -> Result<SendBody<'a>, BuildError> {
        let data = hms::data_text(&push.data, "Honor data could not be encoded")?;
        // Honor has no high-priority data message: a call is shown as a notification too.
        let notification = match push.push_type {
            PushType::Alert | PushType::Voip => Some(AndroidNotification {
                title: &push.title,
                body: &push.body,
                importance: &self.cfg.importance,
                click_action: ClickAction::OPEN_APP,
                tag: push.collapse_id.as_deref(),
                group: push.thread_id.as_deref(),
                badge: match (&self.cfg.badge_class, push.badge, push.push_type) {
                    (Some(badge_class), Some(n), PushType::Alert) => {
                        Some(Badge { badge_class, set_num: n.min(MAX_BADGE) })
                    }
                    _ => None,
                },
            }),
            PushType::Silent => None,
        };
        Ok(SendBody {
            token: tokens,
            data,
            android: Android {
                ttl: hms::ttl_text(push),
                target_user_type: self.cfg.test_messages.then_some(1),
                notification,
            },
        })
    }
}

impl HmsVendor for Honor {
    const KIND: VendorKind = VendorKind::Honor;
    const TEXTS: Texts = Texts {
        batch: "Honor takes 1 to max_batch tokens per request",
        no_access_token: "Honor send needs an access token",
        bad_access_token: "Honor access token is not a valid header value",
        unencodable: "Honor message could not be encoded as JSON",
    };
    const CODES: &'static [(&'static str, Action)] = CODES;
    const REFRESH_WITHOUT_EXPIRY: chrono::Duration = REFRESH_WITHOUT_EXPIRY;
    const PAYLOAD_LIMIT: usize = PAYLOAD_LIMIT;

    fn batch_limit(&self) -> usize {
        self.cfg.max_batch
    }

    /// The OAuth client is not the App ID.
    fn oauth(&self) -> OauthClient<'_> {
        OauthClient {
            token_url: &self.cfg.token_url,
            client_id: &self.cfg.client_id,
            client_secret: &self.cfg.client_secret,
        }
    }

    fn send_url(&self) -> &url::Url {
        &self.send_url
    }

    fn content(&self, push: &VendorPush) -> Result<Vec<u8>, BuildError> {
        self.body(push, Vec::new())
    }

    fn body(&self, push: &VendorPush, tokens: Vec<&str>) -> Result<Vec<u8>, BuildError> {
        hms::to_json(&self.send_body(push, tokens)?, Self::TEXTS.unencodable)
    }

    /// `timestamp: <epoch ms>` on every send (documented, required).
    fn more_headers(&self, headers: &mut HeaderMap, now: Timestamp) {
        headers.insert(TIMESTAMP_HEADER, HeaderValue::from(now.timestamp_millis()));
    }

    fn rate_limit_reason(status: StatusCode) -> Option<&'static str> {
        RATE_LIMIT_STATUSES.contains(&status.as_u16()).then_some("rate_limited")
    }

    /// `{"code", "message", "data": {sendResult, requestId, failTokens, expireTokens}}`. A
    /// failed send that names no token is retried whole.
    fn read_answer(body: &[u8]) -> Option<Answer> {
        let answer = serde_json::from_slice::<SendAnswer>(body).ok()?;
        let code = code_text(&answer.code)?;
        let data = answer.data.unwrap_or_default();
        let request_id = code_text(&data.request_id).unwrap_or_default();
        let invalid = if data.send_result == Some(false) && data.fail_tokens.is_empty() && data.expire_tokens.is_empty()
        {
            Err("send_result_false")
        } else {
            let named = |list: Vec<serde_json::Value>, reason| {
                list.into_iter().filter_map(move |v| v.as_str().map(|t| (t.to_owned(), reason)))
            };
            Ok(named(data.expire_tokens, "expire_token").chain(named(data.fail_tokens, "fail_token")).collect())
        };
        Some(Answer { code, request_id, invalid })
    }
}

#[derive(Serialize)]
struct SendBody<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    token: Vec<&'a str>,
    /// The deep-link data as a JSON object encoded in a string (Honor wants a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    android: Android<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Android<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_user_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<AndroidNotification<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AndroidNotification<'a> {
    title: &'a str,
    body: &'a str,
    importance: &'a str,
    click_action: ClickAction,
    /// Replaces an earlier notification with the same tag (the push's collapse id).
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    /// Groups the notifications of one conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    badge: Option<Badge<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Badge<'a> {
    badge_class: &'a str,
    set_num: u32,
}

/// A send answer: `{"code": 200, "message": "...", "data": {...}}`.
#[derive(Deserialize)]
struct SendAnswer {
    code: serde_json::Value,
    #[serde(default)]
    data: Option<SendData>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SendData {
    send_result: Option<bool>,
    request_id: serde_json::Value,
    fail_tokens: Vec<serde_json::Value>,
    expire_tokens: Vec<serde_json::Value>,
}

/// The `[credentials.<name>]` fields of an Honor credential.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HonorCredential {
    /// Numeric App ID (send path).
    app_id: String,
    /// OAuth client id.
    client_id: String,
    /// OAuth client secret.
    client_secret: String,
    /// Full URL of the token endpoint; default [`DEFAULT_TOKEN_URL`].
    token_url: Option<String>,
    /// Base URL of the send API; default [`DEFAULT_SEND_URL`].
    send_url: Option<String>,
    /// `android.notification.importance`: `NORMAL` (default, IM) or `LOW`.
    importance: Option<String>,
    /// Launcher Activity for badges (`badge.badgeClass`).
    badge_class: Option<String>,
    /// Send test messages (`targetUserType: 1`).
    #[serde(default)]
    test_messages: bool,
    /// Tokens per request, 1..=1000.
    max_batch: Option<i64>,
}

/// Builds an Honor vendor from its credential table.
pub fn from_config(table: &toml::Table, ctx: &CredentialContext<'_>) -> Result<VendorBuild, Vec<Problem>> {
    let c: HonorCredential = super::credential::fields(table)?;
    let mut problems = Vec::new();
    if c.app_id.is_empty() || !c.app_id.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(Problem::new("app_id", "must be the numeric App ID from the Honor developer console"));
    }
    for (field, value) in [("client_id", &c.client_id), ("client_secret", &c.client_secret)] {
        if value.trim().is_empty() {
            problems.push(Problem::new(field, "must not be empty"));
        }
    }
    let token_url = ctx.url("token_url", c.token_url.as_deref().unwrap_or(DEFAULT_TOKEN_URL));
    let send_url = ctx.url("send_url", c.send_url.as_deref().unwrap_or(DEFAULT_SEND_URL));
    let importance = c.importance.unwrap_or_else(|| DEFAULT_IMPORTANCE.to_owned());
    if !matches!(importance.as_str(), "NORMAL" | "LOW") {
        problems.push(Problem::new("importance", format!("{importance:?}: expected \"NORMAL\" (IM) or \"LOW\"")));
    }
    let badge_class = hms::optional_text("badge_class", c.badge_class, &mut problems);
    let max_batch = match c.max_batch {
        None => MAX_BATCH,
        Some(n) => match usize::try_from(n) {
            Ok(n) if (1..=MAX_BATCH).contains(&n) => n,
            _ => {
                problems.push(Problem::new("max_batch", format!("{n}: expected 1 to {MAX_BATCH}")));
                MAX_BATCH
            }
        },
    };
    let (token_url, send_url) = match hms::endpoints(token_url, send_url, &mut problems) {
        Some(urls) if problems.is_empty() => urls,
        _ => return Err(problems),
    };
    let honor = Honor::new(HonorConfig {
        app_id: c.app_id,
        client_id: c.client_id,
        client_secret: c.client_secret,
        token_url,
        send_url,
        importance,
        badge_class,
        test_messages: c.test_messages,
        max_batch,
    })
    .map_err(|e| vec![Problem::new("send_url", e.to_string())])?;
    Ok(VendorBuild::https(honor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Token;
    use crate::provider::fixtures::{self, at, json_body, push, table};
    use crate::provider::{AuthPlan, AuthToken, Outcome, Vendor, VendorRequest};
    use http::{HeaderMap, HeaderValue, Method};
    use serde_json::{json, Value};
    use std::time::Duration;

    const TOKEN_A: &str = "IQAAAACy0example_HonorToken";
    const TOKEN_B: &str = "IQAAAACy0second_HonorToken";
    const TOKEN_C: &str = "IQAAAACy0third_HonorToken";

    fn config() -> HonorConfig {
        HonorConfig {
            app_id: "104400001".into(),
            client_id: "5F2A0C7E".into(),
            client_secret: "k9-client-secret".into(),
            token_url: url::Url::parse(DEFAULT_TOKEN_URL).expect("url"),
            send_url: url::Url::parse(DEFAULT_SEND_URL).expect("url"),
            importance: "NORMAL".into(),
            badge_class: Some("com.example.im.MainActivity".into()),
            test_messages: false,
            max_batch: MAX_BATCH,
        }
    }

    fn honor_with(edit: impl FnOnce(&mut HonorConfig)) -> Honor {
        let mut cfg = config();
        edit(&mut cfg);
        Honor::new(cfg).expect("builds")
    }

    fn honor() -> Honor {
        honor_with(|_| {})
    }

    fn token(s: &str) -> Token {
        Token::parse_for(VendorKind::Honor, s).expect("token")
    }

    fn access() -> AuthToken {
        AuthToken { value: "eyJhbGciOi.demo".into(), refresh_at: at(0) }
    }

    fn send(h: &Honor, p: &VendorPush, tokens: &[&str]) -> VendorRequest {
        let tokens: Vec<Token> = tokens.iter().map(|t| token(t)).collect();
        h.request(p, &tokens, Some(&access()), chrono::DateTime::from_timestamp_millis(1_718_000_000_123).expect("t"))
            .expect("request")
    }

    #[test]
    fn an_alert_is_a_camel_case_notification_with_normal_importance_and_a_timestamp() {
        let req = send(&honor(), &push(PushType::Alert), &[TOKEN_A]);
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.url.as_str(), "https://push-api.cloud.honor.com/api/v1/104400001/sendMessage");
        assert_eq!(req.headers["authorization"], "Bearer eyJhbGciOi.demo");
        assert!(req.headers["authorization"].is_sensitive());
        assert_eq!(req.headers["content-type"], "application/json; charset=UTF-8");
        assert_eq!(req.headers["timestamp"], "1718000000123");
        assert_eq!(
            json_body(&req),
            json!({
                "token": [TOKEN_A],
                "data": r#"{"conv":"c42","msg":"m9","sender":"alice"}"#,
                "android": {
                    "ttl": "86400s",
                    "notification": {
                        "title": "Alice",
                        "body": "See you at 8?",
                        "importance": "NORMAL",
                        "clickAction": { "type": 3 },
                        "group": "c42",
                        "badge": { "badgeClass": "com.example.im.MainActivity", "setNum": 3 }
                    }
                }
            })
        );
    }

    #[test]
    fn a_batch_carries_every_token_and_respects_the_configured_size() {
        let req = send(&honor(), &push(PushType::Alert), &[TOKEN_A, TOKEN_B]);
        assert_eq!(json_body(&req)["token"], json!([TOKEN_A, TOKEN_B]));
        let small = honor_with(|c| c.max_batch = 2);
        assert_eq!(small.max_batch(), 2);
        let three = [token(TOKEN_A), token(TOKEN_B), token(TOKEN_C)];
        assert!(matches!(
            small.request(&push(PushType::Alert), &three, Some(&access()), at(0)),
            Err(BuildError::Payload(_))
        ));
    }

    #[test]
    fn a_silent_push_is_a_data_message_without_a_notification() {
        let mut p = push(PushType::Silent);
        p.title.clear();
        p.body.clear();
        p.ttl = None;
        assert_eq!(
            json_body(&send(&honor(), &p, &[TOKEN_A])),
            json!({ "token": [TOKEN_A], "data": r#"{"conv":"c42","msg":"m9","sender":"alice"}"#, "android": {} })
        );
    }

    #[test]
    fn a_call_is_a_notification_without_a_badge() {
        let mut p = push(PushType::Voip);
        p.badge = Some(2);
        p.collapse_id = Some("call-7".into());
        p.ttl = Some(Duration::from_secs(30));
        let android = json_body(&send(&honor(), &p, &[TOKEN_A]))["android"].clone();
        assert_eq!(android["ttl"], "30s");
        assert_eq!(android["notification"]["tag"], "call-7");
        assert_eq!(android["notification"]["importance"], "NORMAL");
        assert_eq!(android["notification"].get("badge"), None);
    }

    #[test]
    fn no_huawei_shaped_or_snake_case_key_is_ever_sent() {
        let p = push(PushType::Alert);
        let text = String::from_utf8(send(&honor_with(|c| c.test_messages = true), &p, &[TOKEN_A]).body.to_vec())
            .expect("utf-8");
        for huawei_key in ["\"message\"", "validate_only", "click_action", "set_num", "\"class\"", "target_user_type"] {
            assert!(!text.contains(huawei_key), "{huawei_key} in {text}");
        }
        assert!(text.contains("\"targetUserType\":1"), "{text}");
    }

    #[test]
    fn ttl_is_capped_at_fifteen_days_and_the_badge_at_99() {
        let mut p = push(PushType::Alert);
        p.ttl = Some(Duration::from_secs(60 * 86_400));
        p.badge = Some(500);
        let android = json_body(&send(&honor(), &p, &[TOKEN_A]))["android"].clone();
        assert_eq!(android["ttl"], "1296000s");
        assert_eq!(android["notification"]["badge"]["setNum"], 99);
        let low = honor_with(|c| {
            c.importance = "LOW".into();
            c.badge_class = None;
        });
        let n = json_body(&send(&low, &p, &[TOKEN_A]))["android"]["notification"].clone();
        assert_eq!(n["importance"], "LOW");
        assert_eq!(n.get("badge"), None);
    }

    #[test]
    fn a_send_needs_an_access_token_and_at_least_one_token() {
        let h = honor();
        let p = push(PushType::Alert);
        assert!(matches!(h.request(&p, &[token(TOKEN_A)], None, at(0)), Err(BuildError::Signing(_))));
        assert!(matches!(h.request(&p, &[], Some(&access()), at(0)), Err(BuildError::Payload(_))));
    }

    #[test]
    fn the_token_request_uses_the_oauth_client_not_the_app_id() {
        let AuthPlan::Remote(Ok(req)) = honor().auth_plan(at(0)) else {
            panic!("Honor fetches its token remotely");
        };
        assert_eq!(req.url.as_str(), DEFAULT_TOKEN_URL);
        assert_eq!(req.headers["content-type"], "application/x-www-form-urlencoded");
        assert_eq!(
            std::str::from_utf8(&req.body).expect("utf-8"),
            "grant_type=client_credentials&client_id=5F2A0C7E&client_secret=k9-client-secret"
        );
    }

    #[test]
    fn a_keycloak_token_answer_is_read_and_refreshed_early() {
        let now = at(1_767_225_600);
        let body = br#"{"access_token":"eyJhbGciOi","expires_in":3600,"refresh_expires_in":0,
            "token_type":"Bearer","not-before-policy":0,"scope":"profile"}"#;
        let token = honor().parse_auth(StatusCode::OK, body, now).expect("token");
        assert_eq!(token, AuthToken { value: "eyJhbGciOi".into(), refresh_at: now + chrono::Duration::seconds(3300) });
        let no_life = honor().parse_auth(StatusCode::OK, br#"{"access_token":"a"}"#, now).expect("token");
        assert_eq!(no_life.refresh_at, now + chrono::Duration::minutes(50));
    }

    #[test]
    fn token_endpoint_errors_are_fatal_or_transient() {
        let h = honor();
        let rejected = Outcome::Fatal { reason: "auth_rejected" };
        let cases: &[(u16, &str, Outcome)] = &[
            (401, r#"{"error":"invalid_client","error_description":"Invalid client credentials"}"#, rejected.clone()),
            (400, r#"{"error":"unauthorized_client","error_description":"x"}"#, rejected),
            (502, "", Outcome::Retry { after: None, reason: "auth_unavailable" }),
            (200, "{}", Outcome::Retry { after: None, reason: "auth_bad_answer" }),
        ];
        for (status, body, expected) in cases {
            let status = StatusCode::from_u16(*status).expect("status");
            assert_eq!(&h.parse_auth(status, body.as_bytes(), at(0)).expect_err("error"), expected, "{status}");
        }
    }

    #[test]
    fn payload_size_is_the_body_without_its_tokens() {
        let h = honor();
        let p = push(PushType::Alert);
        let mut body = json_body(&send(&h, &p, &[TOKEN_A, TOKEN_B]));
        body.as_object_mut().expect("object").remove("token");
        assert_eq!(h.payload_size(&p), body.to_string().len());
        assert_eq!(h.payload_limit(&p), 4096);
    }

    #[test]
    fn pushes_differing_only_in_what_is_not_sent_share_a_batch_key() {
        let h = honor();
        let a = push(PushType::Alert);
        let mut b = a.clone();
        b.created_at = at(5);
        b.priority = super::super::Priority::Normal;
        assert_eq!(h.batch_key(&a), h.batch_key(&b));
        let mut other_badge = a.clone();
        other_badge.badge = Some(9);
        assert_ne!(h.batch_key(&a), h.batch_key(&other_badge));
        let no_badges = honor_with(|c| c.badge_class = None);
        assert_eq!(no_badges.batch_key(&a), no_badges.batch_key(&other_badge));
    }

    fn classify_with(tokens: &[&str], status: u16, headers: &HeaderMap, body: &str) -> Vec<Outcome> {
        let tokens: Vec<Token> = tokens.iter().map(|t| token(t)).collect();
        fixtures::classify(&honor(), &tokens, status, headers, body)
    }

    fn answer(status: u16, body: &str) -> Outcome {
        fixtures::classify_one(&honor(), token(TOKEN_A), status, body)
    }

    fn coded(code: Value) -> String {
        json!({ "code": code, "message": "scripted", "data": null }).to_string()
    }

    #[test]
    fn every_row_of_the_honor_answer_table_maps_to_its_outcome() {
        use Outcome::*;
        let ok = r#"{"code":200,"message":"success","data":{"sendResult":true,"requestId":"17180000001234","failTokens":[],"expireTokens":[]}}"#;
        let fatal = |reason| Fatal { reason };
        let rows: Vec<(u16, String, Outcome)> = vec![
            (200, ok.into(), Delivered),
            (200, r#"{"code":"80000000","message":"Success"}"#.into(), Delivered),
            (200, r#"{"code":0,"message":"ok","data":{"sendResult":true}}"#.into(), Delivered),
            (400, coded(json!(80100001)), fatal("80100001")),
            (400, coded(json!(80100003)), fatal("80100003")),
            (400, coded(json!(80100004)), fatal("80100004")),
            (401, coded(json!(80200001)), RefreshAuth { reason: "80200001" }),
            (401, coded(json!("80200003")), RefreshAuth { reason: "80200003" }),
            (403, coded(json!(80300002)), fatal("80300002")),
            (200, coded(json!(80300007)), InvalidToken { reason: "80300007", since: None }),
            (413, coded(json!(80300008)), fatal("80300008")),
            (400, coded(json!(80300010)), fatal("80300010")),
            (401, coded(json!(80600003)), RefreshAuth { reason: "80600003" }),
            (500, coded(json!(81000001)), Retry { after: None, reason: "81000001" }),
            (200, coded(json!(80300029)), QuotaExhausted { until: None, reason: "80300029" }),
            (429, String::new(), Retry { after: None, reason: "rate_limited" }),
            (503, "<html>busy</html>".into(), Retry { after: None, reason: "rate_limited" }),
            (401, "Unauthorized".into(), RefreshAuth { reason: "unauthorized" }),
            (500, String::new(), Retry { after: None, reason: "server_error" }),
            (504, String::new(), Retry { after: None, reason: "server_error" }),
            (404, String::new(), fatal("not_found")),
            (200, "not json".into(), Retry { after: None, reason: "unreadable_answer" }),
            (200, coded(json!(80999999)), fatal("unknown_code")),
            (502, coded(json!(80999999)), Retry { after: None, reason: "server_error" }),
        ];
        for (status, body, expected) in rows {
            assert_eq!(answer(status, &body), expected, "{status} {body}");
        }
    }

    #[test]
    fn expired_and_failed_tokens_are_pruned_one_by_one() {
        let body = r#"{"code":200,"message":"success","data":{"sendResult":true,"requestId":"1",
            "failTokens":["IQAAAACy0third_HonorToken"],"expireTokens":["IQAAAACy0second_HonorToken"]}}"#;
        let got = classify_with(&[TOKEN_A, TOKEN_B, TOKEN_C], 200, &HeaderMap::new(), body);
        assert_eq!(
            got,
            vec![
                Outcome::Delivered,
                Outcome::InvalidToken { reason: "expire_token", since: None },
                Outcome::InvalidToken { reason: "fail_token", since: None },
            ]
        );
        let partial = r#"{"code":80100000,"data":{"sendResult":true,"expireTokens":["IQAAAACy0example_HonorToken"]}}"#;
        let got = classify_with(&[TOKEN_A, TOKEN_B], 200, &HeaderMap::new(), partial);
        assert_eq!(got, vec![Outcome::InvalidToken { reason: "expire_token", since: None }, Outcome::Delivered]);
    }

    #[test]
    fn a_failed_send_without_token_lists_is_retried() {
        let body = r#"{"code":200,"message":"success","data":{"sendResult":false,"failTokens":[],"expireTokens":[]}}"#;
        assert_eq!(
            classify_with(&[TOKEN_A, TOKEN_B], 200, &HeaderMap::new(), body),
            vec![Outcome::Retry { after: None, reason: "send_result_false" }; 2]
        );
    }

    #[test]
    fn retry_after_is_honoured_on_rate_limits() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
        let after = Some(Duration::from_secs(3));
        assert_eq!(
            classify_with(&[TOKEN_A], 429, &headers, ""),
            vec![Outcome::Retry { after, reason: "rate_limited" }]
        );
        assert_eq!(
            classify_with(&[TOKEN_A], 503, &headers, ""),
            vec![Outcome::Retry { after, reason: "rate_limited" }]
        );
    }

    fn ctx() -> CredentialContext<'static> {
        fixtures::credential_ctx("test-honor")
    }

    #[test]
    fn a_minimal_credential_builds_with_normal_importance_by_default() {
        let t = table("app_id = \"104400001\"\nclient_id = \"5F2A\"\nclient_secret = \"k9\"");
        let build = from_config(&t, &ctx()).expect("builds");
        assert_eq!(build.vendor.kind(), VendorKind::Honor);
        assert_eq!(build.vendor.max_batch(), 1000);
        let req = build.vendor.request(&push(PushType::Alert), &[token(TOKEN_A)], Some(&access()), at(0)).expect("r");
        assert_eq!(json_body(&req)["android"]["notification"]["importance"], "NORMAL");
    }

    #[test]
    fn credential_problems_name_their_field_and_never_the_secret() {
        let bad = table(
            "app_id = \"abc\"\nclient_id = \"\"\nclient_secret = \"k9-secret-value\"\nimportance = \"HIGH\"\n\
             max_batch = 5000\ntoken_url = \"not a url\"",
        );
        let problems = from_config(&bad, &ctx()).err().expect("problems");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["app_id", "client_id", "importance", "max_batch", "token_url"]);
        assert!(problems.iter().all(|p| !p.what.contains("k9-secret")));
        let unknown =
            from_config(&table("app_id = \"1\"\nclient_id = \"c\"\nclient_secret = \"s\"\ncategory = \"IM\""), &ctx());
        assert_eq!(unknown.err().expect("problem")[0].field, "category");
        assert!(!format!("{:?}", honor()).contains("k9-client-secret"));
    }
}
