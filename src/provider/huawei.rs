//! Huawei Push Kit (HMS Core, REST "downlink message" API v1/v2): the wire format, the OAuth 2.0
//! client-credentials token call and the answer table of `docs/vendors/huawei.md`.
//!
//! Owns what is Huawei's own: the OAuth client (`client_id` = App ID), the send path (v1 or v2),
//! the `message` body for a batch of up to [`MAX_BATCH`] tokens sharing one push, the IM
//! classification fields (`android.category`, `android.notification.importance`), the code
//! table, the rate-limit statuses (503 is flow control) and the per-token result of `80100000`
//! (a JSON document inside the `msg` string). The token call, auth parsing, headers, payload
//! budget (4096 bytes of the `message` without its token list), batch key and classifier are
//! the HMS lineage's, shared with Honor in `hms.rs`.
//!
//! Deliberately not here: caching the access token and coalescing refreshes (the shared auth
//! cache), batching pushes together, parking on a daily quota, retries, sleeping and metrics.
//!
//! ```text
//! app_id + client_secret ─form─▶ POST {token_url} ─▶ parse_auth ─▶ AuthToken (Bearer, 1 h)
//! VendorPush + tokens[..1000] + AuthToken ─▶ POST {send_url}/v1/{app_id}/messages:send
//!      (or /v2/{project_id}/messages:send when a project_id is configured)
//! (status, Retry-After, {"code","msg","requestId"}) ─▶ one Outcome per token
//! ```
//!
//! IM classification: an alert goes out as a notification message with `android.category`
//! (default `"IM"`, per credential `category`) and `importance: "NORMAL"`, so Huawei files it
//! under "service & communication" (lock screen, sound) instead of the capped, silent
//! "news & marketing". A call (VoIP) is a high-urgency data message with category `"VOIP"`
//! (per credential `voip_category`). Both categories need the self-classification right in
//! AppGallery Connect; without it Huawei classifies by itself.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::code_text;
use super::credential::{CredentialContext, Problem, VendorBuild};
use super::hms::{self, Action, Answer, ClickAction, HmsVendor, OauthClient, Texts};
use super::{BuildError, VendorPush};
use crate::model::{PushType, VendorKind};

pub use super::hms::{MAX_BADGE, MAX_TOKEN_LIFE_SECS, MAX_TTL_SECS, MIN_REFRESH_AFTER, REFRESH_MARGIN};

/// Huawei's OAuth 2.0 token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth-login.cloud.huawei.com/oauth2/v3/token";

/// Base URL of the send API (`/v1/{app_id}/messages:send` is appended).
pub const DEFAULT_SEND_URL: &str = "https://push-api.cloud.huawei.com";

/// Token life assumed when the answer has no `expires_in` (Huawei issues one hour).
pub const DEFAULT_TOKEN_LIFE_SECS: i64 = 3600;

/// Bytes of the serialized `message` without its `token` list (huawei.md §4; beyond: 80300008).
pub const PAYLOAD_LIMIT: usize = 4096;

/// Tokens one send may carry (huawei.md §3; beyond: 80300010).
pub const MAX_BATCH: usize = 1000;

/// The IM class an alert carries unless the credential says otherwise.
pub const DEFAULT_CATEGORY: &str = "IM";

/// The class a call (VoIP data message) carries unless the credential says otherwise.
pub const DEFAULT_VOIP_CATEGORY: &str = "VOIP";

/// The self-classification values of `android.category` (huawei.md §3).
pub const CATEGORIES: &[&str] = &[
    "IM",
    "VOIP",
    "SUBSCRIPTION",
    "TRAVEL",
    "HEALTH",
    "WORK",
    "ACCOUNT",
    "EXPRESS",
    "FINANCE",
    "DEVICE_REMINDER",
    "MAIL",
    "PLAY_VOICE",
    "MARKETING",
];

/// The answer code meaning "this app's daily quota is used up: not again today".
///
/// **Unverified.** The v1/v2 error table documents no daily-quota code: Huawei accepts pushes
/// beyond the per-device "news & marketing" cap and drops them (receipt codes 256/102). The one
/// daily cap it enforces per app is on test messages (`target_user_type: 1`, 500 a day, limited
/// "until the next day"), and the only quota code in Huawei's published tables is `80300029`
/// ("When send test message, the api request exceed limit", HarmonyOS v3 reference). pushd
/// treats that code as the daily quota; confirm against a real answer before relying on it.
pub const DAILY_QUOTA_CODE: &str = "80300029";

/// Wait before retrying `80100017` (more than 100 concurrent topic tasks; huawei.md §5: ≥ 1 s).
pub const TOPIC_TASKS_RETRY_AFTER: Duration = Duration::from_secs(1);

/// huawei.md §5, one row per documented business code (plus the unverified quota code).
const CODES: &[(&str, Action)] = &[
    ("80000000", Action::Delivered),
    ("80100000", Action::PerToken),
    ("80100001", Action::Fatal),
    ("80100002", Action::Fatal),
    ("80100003", Action::Fatal),
    ("80100004", Action::Fatal),
    ("80100013", Action::Fatal),
    ("80100016", Action::Fatal),
    ("80100017", Action::Retry(Some(TOPIC_TASKS_RETRY_AFTER))),
    ("80100018", Action::Fatal),
    ("80200001", Action::RefreshAuth),
    ("80200003", Action::RefreshAuth),
    ("80200005", Action::RefreshAuth),
    ("80300002", Action::Fatal),
    ("80300007", Action::AllInvalid),
    ("80300008", Action::Fatal),
    ("80300010", Action::Fatal),
    ("80300011", Action::Fatal),
    ("80300013", Action::Fatal),
    ("80600003", Action::RefreshAuth),
    ("81000001", Action::Retry(None)),
    (DAILY_QUOTA_CODE, Action::Quota),
];

/// Configuration of one Huawei credential (one app).
#[derive(Clone)]
pub struct HuaweiConfig {
    /// The App ID: also the OAuth `client_id` and the v1 path segment.
    pub app_id: String,
    /// The OAuth client secret ("App Secret"). Never logged.
    pub client_secret: String,
    /// Sends go to the v2 path `/v2/{project_id}/messages:send` when set.
    pub project_id: Option<String>,
    /// The full URL of the token endpoint.
    pub token_url: url::Url,
    /// Base URL of the send API.
    pub send_url: url::Url,
    /// `android.category` of alerts (`None`: left out, Huawei classifies by itself).
    pub category: Option<String>,
    /// `android.category` of calls (`None`: left out).
    pub voip_category: Option<String>,
    /// `android.notification.channel_id`: a channel the app created on the device.
    pub channel_id: Option<String>,
    /// The launcher Activity (`badge.class`); without it no badge is sent.
    pub badge_class: Option<String>,
    /// Send test messages (`target_user_type: 1`, 500 per app per day): for staging apps.
    pub test_messages: bool,
}

impl fmt::Debug for HuaweiConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HuaweiConfig")
            .field("app_id", &self.app_id)
            .field("client_secret", &"<redacted>")
            .field("project_id", &self.project_id)
            .field("token_url", &self.token_url.as_str())
            .field("send_url", &self.send_url.as_str())
            .field("category", &self.category)
            .field("voip_category", &self.voip_category)
            .field("channel_id", &self.channel_id)
            .field("badge_class", &self.badge_class)
            .field("test_messages", &self.test_messages)
            .finish()
    }
}

/// The Huawei vendor: builds requests and classifies answers for one credential
/// ([`Vendor`](super::Vendor) comes from `hms.rs`).
pub struct Huawei {
    cfg: HuaweiConfig,
    /// `{send_url}/v1/{app_id}/messages:send` (or the v2 form).
    send_url: url::Url,
}

impl fmt::Debug for Huawei {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Huawei").field("cfg", &self.cfg).field("send_url", &self.send_url.as_str()).finish()
    }
}

impl Huawei {
    /// Builds the send URL from the configuration.
    pub fn new(cfg: HuaweiConfig) -> Result<Self, BuildError> {
        let (version, id) = match &cfg.project_id {
            Some(project) => ("v2", project.as_str()),
            None => ("v1", cfg.app_id.as_str()),
        };
        let mut send_url = cfg.send_url.clone();
        send_url
            .path_segments_mut()
            .map_err(|_| BuildError::Payload("Huawei send_url must be an http(s) base URL"))?
            .pop_if_empty()
            .extend([version, id, "messages:send"]);
        Ok(Self { cfg, send_url })
    }

    /// The `message` object for `tokens` (empty: the form whose size and hash are budgeted).
    fn message<'a>(&'a self, push: &'a VendorPush, tokens: Vec<&'a str>) -> Result<Message<'a>, BuildError> {
        let mut data: BTreeMap<&str, &str> = push.data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if push.push_type == PushType::Voip {
            // A call is a data message: the app draws the call screen from these.
            if !push.title.is_empty() {
                data.insert("title", &push.title);
            }
            if !push.body.is_empty() {
                data.insert("body", &push.body);
            }
        }
        let data = hms::data_text(&data, "Huawei data could not be encoded")?;
        let ttl = hms::ttl_text(push);
        let target_user_type = self.cfg.test_messages.then_some(1);
        let android = match push.push_type {
            PushType::Alert => Android {
                category: self.cfg.category.as_deref(),
                urgency: None,
                ttl,
                target_user_type,
                notification: Some(AndroidNotification {
                    title: &push.title,
                    body: &push.body,
                    channel_id: self.cfg.channel_id.as_deref(),
                    importance: "NORMAL",
                    click_action: ClickAction::OPEN_APP,
                    tag: push.collapse_id.as_deref(),
                    group: push.thread_id.as_deref(),
                    badge: match (&self.cfg.badge_class, push.badge) {
                        (Some(class), Some(n)) => Some(Badge { class, set_num: n.min(MAX_BADGE) }),
                        _ => None,
                    },
                }),
            },
            PushType::Silent => {
                Android { category: None, urgency: Some("NORMAL"), ttl, target_user_type, notification: None }
            }
            PushType::Voip => Android {
                category: self.cfg.voip_category.as_deref(),
                urgency: Some("HIGH"),
                ttl,
                target_user_type,
                notification: None,
            },
        };
        Ok(Message { token: tokens, data, android })
    }
}

impl HmsVendor for Huawei {
    const KIND: VendorKind = VendorKind::Huawei;
    const TEXTS: Texts = Texts {
        batch: "Huawei takes 1 to 1000 tokens per request",
        no_access_token: "Huawei send needs an access token",
        bad_access_token: "Huawei access token is not a valid header value",
        unencodable: "Huawei message could not be encoded as JSON",
    };
    const CODES: &'static [(&'static str, Action)] = CODES;
    const REFRESH_WITHOUT_EXPIRY: chrono::Duration =
        chrono::Duration::seconds(DEFAULT_TOKEN_LIFE_SECS).checked_sub(&REFRESH_MARGIN).expect("3600 s - 5 min");
    const PAYLOAD_LIMIT: usize = PAYLOAD_LIMIT;

    fn batch_limit(&self) -> usize {
        MAX_BATCH
    }

    /// The App ID is the OAuth client.
    fn oauth(&self) -> OauthClient<'_> {
        OauthClient {
            token_url: &self.cfg.token_url,
            client_id: &self.cfg.app_id,
            client_secret: &self.cfg.client_secret,
        }
    }

    fn send_url(&self) -> &url::Url {
        &self.send_url
    }

    /// The serialized `message` without tokens: what Huawei's 4096-byte limit counts.
    fn content(&self, push: &VendorPush) -> Result<Vec<u8>, BuildError> {
        hms::to_json(&self.message(push, Vec::new())?, Self::TEXTS.unencodable)
    }

    fn body(&self, push: &VendorPush, tokens: Vec<&str>) -> Result<Vec<u8>, BuildError> {
        let message = self.message(push, tokens)?;
        hms::to_json(&SendBody { validate_only: false, message }, Self::TEXTS.unencodable)
    }

    /// 503 is flow control (huawei.md §5); 429 is not documented but means the same.
    fn rate_limit_reason(status: StatusCode) -> Option<&'static str> {
        match status {
            StatusCode::TOO_MANY_REQUESTS => Some("rate_limited"),
            StatusCode::SERVICE_UNAVAILABLE => Some("flow_control"),
            _ => None,
        }
    }

    /// `{"code", "msg", "requestId"}`; with `80100000`, `msg` is a JSON document encoded as a
    /// string, decoded a second time for its `illegal_tokens`.
    fn read_answer(body: &[u8]) -> Option<Answer> {
        let answer = serde_json::from_slice::<SendAnswer>(body).ok()?;
        let code = code_text(&answer.code)?;
        let partial = match &answer.msg {
            serde_json::Value::String(s) => serde_json::from_str::<PartialResult>(s).ok(),
            other => serde_json::from_value::<PartialResult>(other.clone()).ok(),
        };
        let invalid = partial
            .map(|p| p.illegal_tokens.into_iter().map(|t| (t, "illegal_token")).collect())
            .ok_or("partial_unreadable");
        Some(Answer { code, request_id: code_text(&answer.request_id).unwrap_or_default(), invalid })
    }
}

#[derive(Serialize)]
struct SendBody<'a> {
    validate_only: bool,
    message: Message<'a>,
}

#[derive(Serialize)]
struct Message<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    token: Vec<&'a str>,
    /// The deep-link data as a JSON object encoded in a string (Huawei wants a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    android: Android<'a>,
}

#[derive(Serialize)]
struct Android<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    urgency: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_user_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<AndroidNotification<'a>>,
}

#[derive(Serialize)]
struct AndroidNotification<'a> {
    title: &'a str,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_id: Option<&'a str>,
    importance: &'static str,
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
struct Badge<'a> {
    class: &'a str,
    set_num: u32,
}

/// A send answer: `{"code": "80000000", "msg": "...", "requestId": "..."}`.
#[derive(Deserialize)]
struct SendAnswer {
    code: serde_json::Value,
    #[serde(default)]
    msg: serde_json::Value,
    #[serde(rename = "requestId", default)]
    request_id: serde_json::Value,
}

/// The partial-success document inside `msg` (code 80100000).
#[derive(Deserialize)]
struct PartialResult {
    #[serde(default)]
    illegal_tokens: Vec<String>,
}

/// The `[credentials.<name>]` fields of a Huawei credential.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HuaweiCredential {
    /// App ID = OAuth client_id (AppGallery Connect), numeric.
    app_id: String,
    /// OAuth client secret ("App Secret").
    client_secret: String,
    /// Sends through the v2 (project) path when set.
    project_id: Option<String>,
    /// Full URL of the token endpoint; default [`DEFAULT_TOKEN_URL`].
    token_url: Option<String>,
    /// Base URL of the send API; default [`DEFAULT_SEND_URL`].
    send_url: Option<String>,
    /// `android.category` of alerts; default `"IM"`; `""` leaves it out.
    category: Option<String>,
    /// `android.category` of calls; default `"VOIP"`; `""` leaves it out.
    voip_category: Option<String>,
    /// `android.notification.channel_id`.
    channel_id: Option<String>,
    /// Launcher Activity for badges (`badge.class`).
    badge_class: Option<String>,
    /// Send test messages (`target_user_type: 1`).
    #[serde(default)]
    test_messages: bool,
}

/// A category setting: absent → `default`, `""` → none, else one of [`CATEGORIES`].
fn category(field: &str, value: Option<String>, default: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match value {
        None => Some(default.to_owned()),
        Some(v) if v.is_empty() => None,
        Some(v) if CATEGORIES.contains(&v.as_str()) => Some(v),
        Some(v) => {
            problems.push(Problem::new(
                field,
                format!("{v:?} is not a Huawei category (one of {})", CATEGORIES.join(", ")),
            ));
            None
        }
    }
}

/// Builds a Huawei vendor from its credential table.
pub fn from_config(table: &toml::Table, ctx: &CredentialContext<'_>) -> Result<VendorBuild, Vec<Problem>> {
    let c: HuaweiCredential = super::credential::fields(table)?;
    let mut problems = Vec::new();
    if c.app_id.is_empty() || !c.app_id.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(Problem::new("app_id", "must be the numeric App ID from AppGallery Connect"));
    }
    if c.client_secret.trim().is_empty() {
        problems.push(Problem::new("client_secret", "must not be empty"));
    }
    if let Some(p) = &c.project_id {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric()) {
            problems.push(Problem::new("project_id", "must be the project ID from AppGallery Connect"));
        }
    }
    let token_url = ctx.url("token_url", c.token_url.as_deref().unwrap_or(DEFAULT_TOKEN_URL));
    let send_url = ctx.url("send_url", c.send_url.as_deref().unwrap_or(DEFAULT_SEND_URL));
    let category_value = category("category", c.category, DEFAULT_CATEGORY, &mut problems);
    let voip_category = category("voip_category", c.voip_category, DEFAULT_VOIP_CATEGORY, &mut problems);
    let channel_id = hms::optional_text("channel_id", c.channel_id, &mut problems);
    let badge_class = hms::optional_text("badge_class", c.badge_class, &mut problems);
    let (token_url, send_url) = match hms::endpoints(token_url, send_url, &mut problems) {
        Some(urls) if problems.is_empty() => urls,
        _ => return Err(problems),
    };
    let huawei = Huawei::new(HuaweiConfig {
        app_id: c.app_id,
        client_secret: c.client_secret,
        project_id: c.project_id,
        token_url,
        send_url,
        category: category_value,
        voip_category,
        channel_id,
        badge_class,
        test_messages: c.test_messages,
    })
    .map_err(|e| vec![Problem::new("send_url", e.to_string())])?;
    Ok(VendorBuild::https(huawei))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Token;
    use crate::provider::fixtures::{self, at, json_body, push, table};
    use crate::provider::{AuthPlan, AuthToken, Outcome, Vendor, VendorRequest};
    use http::{HeaderMap, HeaderValue, Method};
    use serde_json::{json, Value};

    const TOKEN_A: &str = "ABC123exampleTokenValue_xyz";
    const TOKEN_B: &str = "IQAAAACy0tEXAAD-second_token";

    fn config() -> HuaweiConfig {
        HuaweiConfig {
            app_id: "104123456".into(),
            client_secret: "s3cr3t-app-secret".into(),
            project_id: None,
            token_url: url::Url::parse(DEFAULT_TOKEN_URL).expect("url"),
            send_url: url::Url::parse(DEFAULT_SEND_URL).expect("url"),
            category: Some("IM".into()),
            voip_category: Some("VOIP".into()),
            channel_id: Some("chat".into()),
            badge_class: Some("com.example.im.MainActivity".into()),
            test_messages: false,
        }
    }

    fn huawei_with(edit: impl FnOnce(&mut HuaweiConfig)) -> Huawei {
        let mut cfg = config();
        edit(&mut cfg);
        Huawei::new(cfg).expect("builds")
    }

    fn huawei() -> Huawei {
        huawei_with(|_| {})
    }

    fn token(s: &str) -> Token {
        Token::parse_for(VendorKind::Huawei, s).expect("token")
    }

    fn access() -> AuthToken {
        AuthToken { value: "DQEBAJ+bW8/x=".into(), refresh_at: at(0) }
    }

    fn send(h: &Huawei, p: &VendorPush, tokens: &[&str]) -> VendorRequest {
        let tokens: Vec<Token> = tokens.iter().map(|t| token(t)).collect();
        h.request(p, &tokens, Some(&access()), at(0)).expect("request")
    }

    #[test]
    fn an_alert_is_an_im_notification_message_with_bearer_auth() {
        let req = send(&huawei(), &push(PushType::Alert), &[TOKEN_A]);
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.url.as_str(), "https://push-api.cloud.huawei.com/v1/104123456/messages:send");
        assert_eq!(req.headers["authorization"], "Bearer DQEBAJ+bW8/x=");
        assert!(req.headers["authorization"].is_sensitive());
        assert_eq!(req.headers["content-type"], "application/json; charset=UTF-8");
        assert_eq!(
            json_body(&req),
            json!({
                "validate_only": false,
                "message": {
                    "token": [TOKEN_A],
                    "data": r#"{"conv":"c42","msg":"m9","sender":"alice"}"#,
                    "android": {
                        "category": "IM",
                        "ttl": "86400s",
                        "notification": {
                            "title": "Alice",
                            "body": "See you at 8?",
                            "channel_id": "chat",
                            "importance": "NORMAL",
                            "click_action": { "type": 3 },
                            "group": "c42",
                            "badge": { "class": "com.example.im.MainActivity", "set_num": 3 }
                        }
                    }
                }
            })
        );
    }

    #[test]
    fn a_batch_carries_every_token_in_one_request() {
        let req = send(&huawei(), &push(PushType::Alert), &[TOKEN_A, TOKEN_B]);
        assert_eq!(json_body(&req)["message"]["token"], json!([TOKEN_A, TOKEN_B]));
        assert_eq!(huawei().max_batch(), 1000);
    }

    #[test]
    fn a_silent_push_is_a_normal_urgency_data_message() {
        let mut p = push(PushType::Silent);
        p.title.clear();
        p.body.clear();
        p.ttl = None;
        assert_eq!(
            json_body(&send(&huawei(), &p, &[TOKEN_A]))["message"],
            json!({
                "token": [TOKEN_A],
                "data": r#"{"conv":"c42","msg":"m9","sender":"alice"}"#,
                "android": { "urgency": "NORMAL" }
            })
        );
    }

    #[test]
    fn a_call_is_a_high_urgency_voip_data_message_with_its_text_in_the_data() {
        let mut p = push(PushType::Voip);
        p.ttl = Some(Duration::from_secs(45));
        let message = json_body(&send(&huawei(), &p, &[TOKEN_A]))["message"].clone();
        assert_eq!(message["android"], json!({ "category": "VOIP", "urgency": "HIGH", "ttl": "45s" }));
        let data: Value = serde_json::from_str(message["data"].as_str().expect("data string")).expect("data JSON");
        assert_eq!(
            data,
            json!({ "conv": "c42", "msg": "m9", "sender": "alice", "title": "Alice", "body": "See you at 8?" })
        );
    }

    #[test]
    fn the_collapse_id_becomes_the_replacing_tag_and_the_badge_is_capped_at_99() {
        let mut p = push(PushType::Alert);
        p.collapse_id = Some("call-7".into());
        p.badge = Some(250);
        let n = json_body(&send(&huawei(), &p, &[TOKEN_A]))["message"]["android"]["notification"].clone();
        assert_eq!(n["tag"], "call-7");
        assert_eq!(n["badge"]["set_num"], 99);
    }

    #[test]
    fn optional_fields_follow_the_credential() {
        let h = huawei_with(|c| {
            c.category = None;
            c.channel_id = None;
            c.badge_class = None;
            c.test_messages = true;
            c.project_id = Some("388421841221892636".into());
        });
        let mut p = push(PushType::Alert);
        p.ttl = Some(Duration::from_secs(60 * 86_400));
        let req = send(&h, &p, &[TOKEN_A]);
        assert_eq!(req.url.as_str(), "https://push-api.cloud.huawei.com/v2/388421841221892636/messages:send");
        let android = json_body(&req)["message"]["android"].clone();
        assert_eq!(android.get("category"), None);
        assert_eq!(android["ttl"], "1296000s", "capped at 15 days");
        assert_eq!(android["target_user_type"], 1);
        assert_eq!(android["notification"].get("channel_id"), None);
        assert_eq!(android["notification"].get("badge"), None, "no badge without a badge class");
    }

    #[test]
    fn a_send_needs_an_access_token_and_one_to_a_thousand_tokens() {
        let h = huawei();
        let p = push(PushType::Alert);
        assert!(matches!(h.request(&p, &[token(TOKEN_A)], None, at(0)), Err(BuildError::Signing(_))));
        assert!(matches!(h.request(&p, &[], Some(&access()), at(0)), Err(BuildError::Payload(_))));
        let many: Vec<Token> = (0..1001).map(|i| token(&format!("t{i}"))).collect();
        assert!(matches!(h.request(&p, &many, Some(&access()), at(0)), Err(BuildError::Payload(_))));
        assert!(h.request(&p, &many[..1000], Some(&access()), at(0)).is_ok());
    }

    #[test]
    fn the_send_url_keeps_a_path_prefix() {
        let h = huawei_with(|c| c.send_url = url::Url::parse("https://127.0.0.1:9000/hms/").expect("url"));
        let req = send(&h, &push(PushType::Alert), &[TOKEN_A]);
        assert_eq!(req.url.as_str(), "https://127.0.0.1:9000/hms/v1/104123456/messages:send");
    }

    #[test]
    fn the_token_request_is_a_client_credentials_form() {
        let AuthPlan::Remote(Ok(req)) = huawei().auth_plan(at(0)) else {
            panic!("Huawei fetches its token remotely");
        };
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.url.as_str(), DEFAULT_TOKEN_URL);
        assert_eq!(req.headers["content-type"], "application/x-www-form-urlencoded");
        assert_eq!(
            std::str::from_utf8(&req.body).expect("utf-8"),
            "grant_type=client_credentials&client_id=104123456&client_secret=s3cr3t-app-secret"
        );
    }

    #[test]
    fn the_access_token_is_read_with_a_json_parser_and_refreshed_five_minutes_early() {
        let now = at(1_767_225_600);
        // Huawei escapes `/` as `\/` in the raw JSON.
        let body = br#"{"access_token":"DQEBAJ\/bW8+x=","expires_in":3600,"token_type":"Bearer"}"#;
        let token = huawei().parse_auth(StatusCode::OK, body, now).expect("token");
        assert_eq!(
            token,
            AuthToken { value: "DQEBAJ/bW8+x=".into(), refresh_at: now + chrono::Duration::seconds(3300) }
        );
        let no_life = huawei().parse_auth(StatusCode::OK, br#"{"access_token":"a"}"#, now).expect("token");
        assert_eq!(no_life.refresh_at, now + chrono::Duration::seconds(3300));
        let short = huawei().parse_auth(StatusCode::OK, br#"{"access_token":"a","expires_in":10}"#, now).expect("t");
        assert_eq!(short.refresh_at, now + chrono::Duration::seconds(30));
    }

    #[test]
    fn token_endpoint_errors_are_fatal_or_transient() {
        let h = huawei();
        let cases: &[(u16, &str, Outcome)] = &[
            (
                400,
                r#"{"error":1101,"sub_error":20155,"error_description":"invalid client"}"#,
                Outcome::Fatal { reason: "auth_rejected" },
            ),
            (
                401,
                r#"{"error":"invalid_client","error_description":"bad secret"}"#,
                Outcome::Fatal { reason: "auth_rejected" },
            ),
            (429, "", Outcome::Retry { after: None, reason: "auth_unavailable" }),
            (503, "", Outcome::Retry { after: None, reason: "auth_unavailable" }),
            (200, "<html>", Outcome::Retry { after: None, reason: "auth_bad_answer" }),
            (200, r#"{"access_token":""}"#, Outcome::Retry { after: None, reason: "auth_bad_answer" }),
        ];
        for (status, body, expected) in cases {
            let status = StatusCode::from_u16(*status).expect("status");
            assert_eq!(&h.parse_auth(status, body.as_bytes(), at(0)).expect_err("error"), expected, "{status}");
        }
    }

    #[test]
    fn payload_size_is_the_message_without_its_tokens() {
        let h = huawei();
        let p = push(PushType::Alert);
        let one = json_body(&send(&h, &p, &[TOKEN_A]));
        let mut message = one["message"].clone();
        message.as_object_mut().expect("object").remove("token");
        assert_eq!(h.payload_size(&p), message.to_string().len());
        assert_eq!(h.payload_limit(&p), 4096);
        let mut long = p.clone();
        long.body = "消".repeat(2000);
        assert!(h.payload_size(&long) > 6000, "CJK counts 3 bytes a char");
    }

    #[test]
    fn pushes_differing_only_in_what_is_not_sent_share_a_batch_key() {
        let h = huawei();
        let a = push(PushType::Alert);
        let mut b = a.clone();
        b.created_at = at(0);
        b.sound = None;
        assert_eq!(h.batch_key(&a), h.batch_key(&b));
        let mut other_text = a.clone();
        other_text.body = "Another".into();
        assert_ne!(h.batch_key(&a), h.batch_key(&other_text));
        let mut other_badge = a.clone();
        other_badge.badge = Some(4);
        assert_ne!(h.batch_key(&a), h.batch_key(&other_badge), "the badge is on the wire");
        let no_badges = huawei_with(|c| c.badge_class = None);
        assert_eq!(no_badges.batch_key(&a), no_badges.batch_key(&other_badge), "no badge field, no split");
    }

    fn classify_with(tokens: &[&str], status: u16, headers: &HeaderMap, body: &str) -> Vec<Outcome> {
        let tokens: Vec<Token> = tokens.iter().map(|t| token(t)).collect();
        fixtures::classify(&huawei(), &tokens, status, headers, body)
    }

    fn answer(status: u16, body: &str) -> Outcome {
        fixtures::classify_one(&huawei(), token(TOKEN_A), status, body)
    }

    fn coded(code: &str, msg: &str) -> String {
        json!({ "code": code, "msg": msg, "requestId": "168812345678901234000201" }).to_string()
    }

    #[test]
    fn every_row_of_the_huawei_answer_table_maps_to_its_outcome() {
        use Outcome::*;
        let fatal = |reason| Fatal { reason };
        let rows: Vec<(u16, String, Outcome)> = vec![
            (200, r#"{"code":"80000000","msg":"Success","requestId":"168812345678901234000201"}"#.into(), Delivered),
            (400, coded("80100001", "UnSupported svc"), fatal("80100001")),
            (400, coded("80100002", "sync send needs one token"), fatal("80100002")),
            (400, coded("80100003", "Illegal payload, click_action is mandatory"), fatal("80100003")),
            (400, coded("80100004", "Illegal expire time"), fatal("80100004")),
            (400, coded("80100013", "collapse_key is illegal"), fatal("80100013")),
            (400, coded("80100016", "sensitive content"), fatal("80100016")),
            (
                400,
                coded("80100017", "too many topic tasks"),
                Retry { after: Some(Duration::from_secs(1)), reason: "80100017" },
            ),
            (400, coded("80100018", "signature mismatch"), fatal("80100018")),
            (401, coded("80200001", "Authentication Error"), RefreshAuth { reason: "80200001" }),
            (401, coded("80200003", "Oauth Token expired."), RefreshAuth { reason: "80200003" }),
            (401, coded("80200005", "Jwt token expired."), RefreshAuth { reason: "80200005" }),
            (400, coded("80300002", "No permission to send message to these tokens"), fatal("80300002")),
            (200, coded("80300007", "All the tokens are invalid"), InvalidToken { reason: "80300007", since: None }),
            (400, coded("80300008", "Push message size is too long"), fatal("80300008")),
            (400, coded("80300010", "token count should within 1 and 1000"), fatal("80300010")),
            (400, coded("80300011", "No permission to send high level message"), fatal("80300011")),
            (400, coded("80300013", "receipt url error"), fatal("80300013")),
            (401, coded("80600003", "Request OAuth service failed"), RefreshAuth { reason: "80600003" }),
            (500, coded("81000001", "Inner Error"), Retry { after: None, reason: "81000001" }),
            (
                200,
                coded(DAILY_QUOTA_CODE, "the api request exceed limit"),
                QuotaExhausted { until: None, reason: "80300029" },
            ),
            (503, String::new(), Retry { after: None, reason: "flow_control" }),
            (502, "<html>Bad Gateway</html>".into(), Retry { after: None, reason: "server_error" }),
            (504, String::new(), Retry { after: None, reason: "server_error" }),
            (500, String::new(), Retry { after: None, reason: "server_error" }),
            (401, String::new(), RefreshAuth { reason: "unauthorized" }),
            (404, "Not Found".into(), fatal("not_found")),
            (400, String::new(), fatal("bad_request")),
            (200, "not json".into(), Retry { after: None, reason: "unreadable_answer" }),
            (200, coded("89999999", "something new"), fatal("unknown_code")),
            (503, coded("89999999", "something new"), Retry { after: None, reason: "flow_control" }),
        ];
        for (status, body, expected) in rows {
            assert_eq!(answer(status, &body), expected, "{status} {body}");
        }
    }

    #[test]
    fn a_numeric_code_is_read_like_a_string() {
        assert_eq!(answer(200, r#"{"code":80000000,"msg":"Success"}"#), Outcome::Delivered);
    }

    #[test]
    fn a_partial_success_prunes_exactly_the_illegal_tokens() {
        // huawei.md §5: `msg` is a JSON document encoded as a string.
        let body = r#"{"code":"80100000","msg":"{\"success\":2,\"failure\":1,\"illegal_tokens\":[\"BADTOKEN1\"]}","requestId":"168812345678901234000202"}"#;
        let got = classify_with(&[TOKEN_A, "BADTOKEN1", TOKEN_B], 200, &HeaderMap::new(), body);
        assert_eq!(
            got,
            vec![
                Outcome::Delivered,
                Outcome::InvalidToken { reason: "illegal_token", since: None },
                Outcome::Delivered
            ]
        );
    }

    #[test]
    fn a_partial_success_whose_msg_does_not_parse_is_retried_whole() {
        let body = coded("80100000", "not a document");
        let got = classify_with(&[TOKEN_A, TOKEN_B], 200, &HeaderMap::new(), &body);
        assert_eq!(got, vec![Outcome::Retry { after: None, reason: "partial_unreadable" }; 2]);
    }

    #[test]
    fn all_invalid_names_every_token_of_the_request() {
        let got = classify_with(
            &[TOKEN_A, TOKEN_B],
            200,
            &HeaderMap::new(),
            &coded("80300007", "All the tokens are invalid"),
        );
        assert_eq!(got, vec![Outcome::InvalidToken { reason: "80300007", since: None }; 2]);
    }

    #[test]
    fn retry_after_is_honoured_when_huawei_sends_one() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
        let after = Some(Duration::from_secs(7));
        assert_eq!(
            classify_with(&[TOKEN_A], 503, &headers, ""),
            vec![Outcome::Retry { after, reason: "flow_control" }]
        );
        assert_eq!(
            classify_with(&[TOKEN_A], 500, &headers, &coded("81000001", "Inner Error")),
            vec![Outcome::Retry { after, reason: "81000001" }]
        );
    }

    fn ctx() -> CredentialContext<'static> {
        fixtures::credential_ctx("test-huawei")
    }

    #[test]
    fn a_minimal_credential_builds_with_the_im_category_by_default() {
        let build = from_config(&table("app_id = \"104123456\"\nclient_secret = \"s3cr3t\""), &ctx()).expect("builds");
        let h = &build.vendor;
        assert_eq!(h.kind(), VendorKind::Huawei);
        let req = h.request(&push(PushType::Alert), &[token(TOKEN_A)], Some(&access()), at(0)).expect("request");
        let android = json_body(&req)["message"]["android"].clone();
        assert_eq!(android["category"], "IM");
        assert_eq!(android["notification"]["importance"], "NORMAL");
        assert_eq!(req.url.as_str(), "https://push-api.cloud.huawei.com/v1/104123456/messages:send");
    }

    #[test]
    fn credential_problems_name_their_field_and_never_the_secret() {
        let bad = table(
            "app_id = \"my-app\"\nclient_secret = \"s3cr3t-value\"\ncategory = \"CHAT\"\n\
             send_url = \"ftp://x\"\nchannel_id = \"\"",
        );
        let problems = from_config(&bad, &ctx()).err().expect("problems");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["app_id", "category", "channel_id", "send_url"]);
        assert!(problems.iter().all(|p| !p.what.contains("s3cr3t")));
        let unknown = from_config(&table("app_id = \"1\"\nclient_secret = \"x\"\ntopic = \"t\""), &ctx());
        assert_eq!(unknown.err().expect("problem")[0].field, "topic");
        let missing = from_config(&table("app_id = \"1\""), &ctx());
        assert_eq!(missing.err().expect("problem")[0].field, "client_secret");
        assert!(!format!("{:?}", huawei()).contains("s3cr3t"));
    }

    #[test]
    fn an_empty_category_leaves_the_field_out() {
        let build =
            from_config(&table("app_id = \"1\"\nclient_secret = \"x\"\ncategory = \"\""), &ctx()).expect("builds");
        let req = build.vendor.request(&push(PushType::Alert), &[token(TOKEN_A)], Some(&access()), at(0)).expect("r");
        assert_eq!(json_body(&req)["message"]["android"].get("category"), None);
    }
}
