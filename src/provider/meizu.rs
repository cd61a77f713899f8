//! Meizu Flyme Push (魅族推送, server API): the wire format, the MD5 signature and the error
//! table of `docs/vendors/meizu.md`.
//!
//! Owns: the form-encoded `POST {endpoint}/garcia/api/server/push/varnished/pushByPushId` for a
//! batch of up to [`MAX_BATCH`] pushIds sharing one notification, its `sign` (MD5 over the
//! sorted parameters + appSecret, computed per request: [`AuthPlan::None`]), the message class
//! `noticeMsgType` (1 = 私信 private, so IM is not limited as public messages), pushd's text
//! budget (title ≤ 32, content ≤ 100 chars), and the mapping of every documented answer to an
//! [`Outcome`] per pushId (the `value` object groups failed pushIds by code).
//!
//! Deliberately not here: grouping pushes into batches (the shared layer, by
//! [`Vendor::batch_key`]), the transport, retries, parking on the daily quota, sleeping and
//! metrics. Meizu has no silent push (pass-through is restricted since 2018): a silent push
//! fails to build.
//!
//! ```text
//! VendorPush ─▶ messageJson {noticeBarInfo{noticeMsgType,title,content}, clickTypeInfo,
//!               pushTimeInfo{offLine,validTime}, advanceInfo{notifyKey}}
//!            ─▶ sign = md5("appId=…messageJson=…pushIds=…" + appSecret)
//!            ─▶ POST …/pushByPushId  appId, pushIds=a,b,…, messageJson, sign
//! 200 {"code":"200","value":{"110002":["b"]}} | {"code":"110010","value":""} ─▶ Outcome per pushId
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::form::{self, Texts};
use super::{code_text, AuthPlan, AuthToken, BuildError, Outcome, Vendor, VendorPush, VendorRequest};
use crate::model::{PushType, Timestamp, Token, VendorKind};

/// Push API host, China (meizu.md §1). HTTPS only since 2025-04-22.
pub const DEFAULT_ENDPOINT: &str = "https://server-api-push.meizu.com";

/// The notification (通知栏) send path.
pub const SEND_PATH: &str = "garcia/api/server/push/varnished/pushByPushId";

/// The `Content-Type` of a send.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=UTF-8";

/// Most pushIds one request may carry (100 since 2023-08-21).
pub const MAX_BATCH: usize = 100;

/// Longest `noticeBarInfo.title`, in chars.
pub const TITLE_MAX_CHARS: usize = 32;

/// Longest `noticeBarInfo.content`, in chars. This is the push's size budget: `render::fit`
/// shortens the body to it.
pub const CONTENT_MAX_CHARS: usize = 100;

/// Largest `messageJson` pushd sends, in bytes. **Unverified**: Meizu documents no maximum;
/// 4 KiB is the common limit of the other vendors. Only custom data can push a message past it.
pub const MESSAGE_JSON_MAX_BYTES: usize = 4096;

/// `pushTimeInfo.validTime` bounds and default, in hours.
pub const VALID_HOURS_MIN: u64 = 1;
/// Longest `validTime` Meizu accepts, in hours.
pub const VALID_HOURS_MAX: u64 = 72;
/// `validTime` when the push has no TTL (Meizu's own default).
pub const VALID_HOURS_DEFAULT: u64 = 24;

/// Longest `advanceInfo.notifyKey`, in chars of `[0-9A-Za-z_-]`.
pub const NOTIFY_KEY_MAX_CHARS: usize = 8;

/// `noticeMsgType` = 私信 (private message): IM, not limited like public (公信) messages.
pub const NOTICE_MSG_TYPE_PRIVATE: u8 = 1;

/// Wait before retrying a rate-limited answer (top-level 110010): "retry after ≥ 1 s".
pub const RATE_LIMIT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Wait before retrying a folded pushId (520: more than 5 messages to one device within a minute).
pub const FOLDED_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What top-level code 300 ("re-request the `redirect` URL") means to pushd. **Unverified**:
/// documented but never observed; a pure module cannot follow the URL, so pushd tries again at
/// the configured endpoint.
pub const REDIRECT_OUTCOME: Outcome = Outcome::Retry { after: None, reason: "redirect" };

/// The build errors' texts.
const TEXTS: Texts = Texts {
    bad_endpoint: "Meizu endpoint must be an http(s) base URL",
    batch: "Meizu takes 1 to 100 pushIds per request",
    comma: "a Meizu pushId cannot contain a comma (the list separator)",
    no_text: "Meizu needs a title or a content",
};

/// Configuration of one Meizu credential.
#[derive(Clone)]
pub struct MeizuConfig {
    /// Base URL: [`DEFAULT_ENDPOINT`], the overseas host, or the loopback mock.
    pub endpoint: url::Url,
    /// The numeric appId from the Flyme push console.
    pub app_id: u64,
    /// The appSecret: signs, never sent. Never logged.
    pub app_secret: String,
    /// `noticeMsgType`: 1 private (IM, default), 0 public.
    pub notice_msg_type: u8,
    /// An activity to open on click (`clickType` 1); `None` opens the app (`clickType` 0).
    pub activity: Option<String>,
}

impl fmt::Debug for MeizuConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeizuConfig")
            .field("endpoint", &self.endpoint.as_str())
            .field("app_id", &self.app_id)
            .field("app_secret", &"<redacted>")
            .field("notice_msg_type", &self.notice_msg_type)
            .field("activity", &self.activity)
            .finish()
    }
}

/// The Meizu vendor: builds signed requests and classifies answers for one credential.
pub struct Meizu {
    send_url: url::Url,
    app_id: String,
    app_secret: String,
    notice_msg_type: u8,
    activity: Option<String>,
}

impl fmt::Debug for Meizu {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meizu")
            .field("send_url", &self.send_url.as_str())
            .field("app_id", &self.app_id)
            .field("notice_msg_type", &self.notice_msg_type)
            .field("activity", &self.activity)
            .finish_non_exhaustive()
    }
}

/// The `sign` of a request: MD5 (lower-case hex) over `name=value` of every parameter but
/// `sign`, sorted by name, concatenated without separator, followed by the appSecret
/// (meizu.md §2). Values are the raw, not URL-encoded, strings that are sent.
pub fn sign(params: &[(&str, &str)], app_secret: &str) -> String {
    let mut sorted: Vec<&(&str, &str)> = params.iter().filter(|(name, _)| *name != "sign").collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut hasher = Md5::new();
    for (name, value) in sorted {
        hasher.update(name.as_bytes());
        hasher.update(b"=");
        hasher.update(value.as_bytes());
    }
    hasher.update(app_secret.as_bytes());
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageJson<'a> {
    notice_bar_info: NoticeBarInfo,
    click_type_info: ClickTypeInfo<'a>,
    push_time_info: PushTimeInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    advance_info: Option<AdvanceInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NoticeBarInfo {
    notice_msg_type: u8,
    title: String,
    content: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClickTypeInfo<'a> {
    click_type: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    activity: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    parameters: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PushTimeInfo {
    off_line: u8,
    valid_time: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdvanceInfo {
    notify_key: String,
}

impl Meizu {
    /// Validates the configuration once, so a bad URL or secret fails at startup.
    pub fn new(cfg: MeizuConfig) -> Result<Meizu, BuildError> {
        let send_url = form::send_url(cfg.endpoint, SEND_PATH, &TEXTS)?;
        if cfg.app_secret.is_empty() {
            return Err(BuildError::Signing("Meizu app_secret is empty"));
        }
        if cfg.notice_msg_type > 1 {
            return Err(BuildError::Payload("Meizu notice_msg_type is 0 (public) or 1 (private)"));
        }
        Ok(Meizu {
            send_url,
            app_id: cfg.app_id.to_string(),
            app_secret: cfg.app_secret,
            notice_msg_type: cfg.notice_msg_type,
            activity: cfg.activity.filter(|a| !a.is_empty()),
        })
    }

    /// The `messageJson` string, exactly as signed and sent.
    fn message_json(&self, push: &VendorPush) -> Result<String, BuildError> {
        let json = self.unchecked_message_json(push)?;
        if json.len() > MESSAGE_JSON_MAX_BYTES {
            return Err(BuildError::Payload("Meizu messageJson (custom data) is too long"));
        }
        Ok(json)
    }

    /// `messageJson` without the size check.
    fn unchecked_message_json(&self, push: &VendorPush) -> Result<String, BuildError> {
        if push.push_type == PushType::Silent {
            return Err(BuildError::Payload("Meizu has no silent push (pass-through is restricted)"));
        }
        let (title, content) = form::texts(push, TITLE_MAX_CHARS, CONTENT_MAX_CHARS, &TEXTS)?;
        let message = MessageJson {
            notice_bar_info: NoticeBarInfo { notice_msg_type: self.notice_msg_type, title, content },
            click_type_info: ClickTypeInfo {
                click_type: if self.activity.is_some() { 1 } else { 0 },
                activity: self.activity.as_deref(),
                parameters: &push.data,
            },
            push_time_info: PushTimeInfo { off_line: 1, valid_time: valid_hours(push.ttl) },
            advance_info: push
                .collapse_id
                .as_deref()
                .or(push.thread_id.as_deref())
                .map(|key| AdvanceInfo { notify_key: notify_key(key) }),
        };
        serde_json::to_string(&message).map_err(|_| BuildError::Payload("Meizu messageJson could not be encoded"))
    }
}

/// `validTime` in whole hours: the TTL rounded up, within 1–72; 24 without a TTL.
fn valid_hours(ttl: Option<Duration>) -> u64 {
    match ttl {
        None => VALID_HOURS_DEFAULT,
        Some(ttl) => ttl.as_secs().div_ceil(3600).clamp(VALID_HOURS_MIN, VALID_HOURS_MAX),
    }
}

/// The collapse key: the conversation (or collapse) id itself when it fits `[0-9A-Za-z_-]{1,8}`,
/// else 8 hex chars of its FNV-1a hash. Only the latest push with one key is shown.
fn notify_key(id: &str) -> String {
    let fits = !id.is_empty()
        && id.len() <= NOTIFY_KEY_MAX_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if fits {
        return id.to_owned();
    }
    format!("{:08x}", form::fnv1a(id))
}

/// The JSON answer (meizu.md §5): `code` is a string; `value` an object, `""`, or absent.
#[derive(Deserialize)]
struct Answer {
    code: Option<serde_json::Value>,
    #[serde(default)]
    value: serde_json::Value,
}

/// The request-level table: a top-level `code` other than "200", for every pushId.
fn top_level_outcome(code: &str) -> Outcome {
    match code {
        "500" | "1001" => Outcome::Retry { after: None, reason: "server_error" },
        "1003" => Outcome::Retry { after: None, reason: "server_busy" },
        "110010" => Outcome::Retry { after: Some(RATE_LIMIT_RETRY_AFTER), reason: "rate_limited" },
        "110019" => Outcome::QuotaExhausted { until: None, reason: "daily_quota" },
        "110051" => Outcome::QuotaExhausted { until: None, reason: "app_count_limit" },
        "1005" | "110004" => Outcome::Fatal { reason: "bad_parameter" },
        "1006" => Outcome::Fatal { reason: "bad_signature" },
        "110000" | "110001" | "110031" | "110032" => Outcome::Fatal { reason: "bad_app_config" },
        "110033" => Outcome::Fatal { reason: "bad_app_secret" },
        "110009" => Outcome::Fatal { reason: "app_blacklisted" },
        "110053" => Outcome::Fatal { reason: "pass_through_limit" },
        "110002" => Outcome::InvalidToken { reason: "not_registered", since: None },
        "110003" => Outcome::InvalidToken { reason: "illegal_push_id", since: None },
        "300" => REDIRECT_OUTCOME,
        _ => Outcome::Fatal { reason: "unknown_code" },
    }
}

/// The per-pushId table: a code under which `value` lists a pushId.
fn per_token_outcome(code: &str) -> Outcome {
    match code {
        "110002" => Outcome::InvalidToken { reason: "not_registered", since: None },
        "110003" => Outcome::InvalidToken { reason: "illegal_push_id", since: None },
        "110005" => Outcome::InvalidToken { reason: "alias_not_subscribed", since: None },
        // The user switched notifications off: never retried, and the token is kept.
        "110010" => Outcome::Fatal { reason: "switched_off" },
        // One device's public-message (公信) limit for today. Not QuotaExhausted: that parks
        // the whole credential, and every other device would wait for this one's day to turn.
        // Only public messages count, so a private-class IM credential does not see it.
        "110011" => Outcome::Fatal { reason: "device_daily_limit" },
        "201" => Outcome::Fatal { reason: "no_permission" },
        "501" | "513" => Outcome::Retry { after: None, reason: "push_failed" },
        "518" => Outcome::Retry { after: None, reason: "over_rate" },
        "519" => Outcome::Retry { after: None, reason: "overloaded" },
        "520" => Outcome::Retry { after: Some(FOLDED_RETRY_AFTER), reason: "folded" },
        _ => Outcome::Fatal { reason: "unknown_code" },
    }
}

impl Vendor for Meizu {
    fn kind(&self) -> VendorKind {
        VendorKind::Meizu
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// The hash of `messageJson` (appId is the credential's): Meizu has no badge field, so
    /// pushes differing only in the per-user badge batch together.
    fn batch_key(&self, push: &VendorPush) -> Option<u64> {
        let json = self.message_json(push).ok()?;
        Some(super::batch_key_of(&json))
    }

    /// The signature is computed per request in [`Vendor::request`]: nothing to fetch or cache.
    fn auth_plan(&self, _now: Timestamp) -> AuthPlan {
        AuthPlan::None
    }

    fn payload_limit(&self, _push: &VendorPush) -> usize {
        CONTENT_MAX_CHARS
    }

    /// Chars of the body (the content); the title is cut to its own limit when sent. A
    /// `messageJson` over [`MESSAGE_JSON_MAX_BYTES`] counts as `usize::MAX`, so the body is
    /// shortened until it fits (or, when custom data alone is too long, the push is not sent).
    fn payload_size(&self, push: &VendorPush) -> usize {
        match self.unchecked_message_json(push) {
            Ok(json) if json.len() > MESSAGE_JSON_MAX_BYTES => usize::MAX,
            // A push that cannot be built (silent) fails in `request` with its own reason.
            _ => push.body.chars().count(),
        }
    }

    /// The signature has no timestamp or nonce, so `now` plays no part: an identical retry
    /// carries the identical `sign`.
    fn request(
        &self,
        push: &VendorPush,
        tokens: &[Token],
        _auth: Option<&AuthToken>,
        _now: Timestamp,
    ) -> Result<VendorRequest, BuildError> {
        let push_ids = form::token_list(tokens, MAX_BATCH, &TEXTS)?;
        let message_json = self.message_json(push)?;
        let params = [("appId", self.app_id.as_str()), ("pushIds", &push_ids), ("messageJson", &message_json)];
        let signature = sign(&params, &self.app_secret);
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        body.extend_pairs(params);
        body.append_pair("sign", &signature);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(FORM_CONTENT_TYPE));
        Ok(VendorRequest {
            method: Method::POST,
            url: self.send_url.clone(),
            headers,
            body: Bytes::from(body.finish()),
        })
    }

    /// Top-level `code` "200" delivers every pushId except those listed in `value` (each under
    /// its own code); any other code applies to the whole request (meizu.md §5). A token with a
    /// comma was never sent: invalid.
    fn classify(&self, tokens: &[Token], status: StatusCode, _headers: &HeaderMap, body: &[u8]) -> Vec<Outcome> {
        form::outcomes(tokens, status, body, RATE_LIMIT_RETRY_AFTER, |body| {
            let answer = serde_json::from_slice::<Answer>(body).ok()?;
            let code = code_text(answer.code.as_ref()?)?;
            Some(answer_outcomes(tokens, &code, &answer.value))
        })
    }
}

/// One outcome per token from Meizu's readable answer.
fn answer_outcomes(tokens: &[Token], code: &str, value: &serde_json::Value) -> Vec<Outcome> {
    if code != "200" {
        return vec![top_level_outcome(code); tokens.len()];
    }
    let mut failed: BTreeMap<&str, Outcome> = BTreeMap::new();
    if let serde_json::Value::Object(groups) = value {
        for (code, ids) in groups {
            let outcome = per_token_outcome(code.trim());
            for id in ids.as_array().into_iter().flatten().filter_map(|v| v.as_str()) {
                failed.insert(id, outcome.clone());
            }
        }
    }
    tokens.iter().map(|t| failed.get(t.as_str()).cloned().unwrap_or(Outcome::Delivered)).collect()
}

/// `app_id` as TOML writes it: a number or a string of digits.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AppId {
    Number(u64),
    Text(String),
}

/// The `[credentials.<name>]` fields of a Meizu credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeizuCredential {
    /// Base URL; default [`DEFAULT_ENDPOINT`].
    endpoint: Option<String>,
    /// Numeric appId.
    app_id: AppId,
    /// appSecret (signs requests; never sent).
    app_secret: String,
    /// `noticeMsgType`: 1 private (default, IM), 0 public.
    notice_msg_type: Option<u8>,
    /// Activity to open on click (`clickType` 1); default: open the app (`clickType` 0).
    activity: Option<String>,
}

/// Builds a Meizu vendor from its credential table.
pub fn from_config(
    table: &toml::Table,
    ctx: &super::credential::CredentialContext<'_>,
) -> Result<super::credential::VendorBuild, Vec<super::credential::Problem>> {
    use super::credential::{fields, Problem, VendorBuild};
    let c: MeizuCredential = fields(table)?;
    let mut problems = Vec::new();
    let endpoint = ctx.url("endpoint", c.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT)).map_err(|p| problems.push(p));
    let app_id = match c.app_id {
        AppId::Number(n) => Some(n),
        AppId::Text(s) => s.trim().parse::<u64>().ok(),
    };
    if app_id.is_none() {
        problems.push(Problem::new("app_id", "must be the numeric appId"));
    }
    if c.app_secret.trim().is_empty() {
        problems.push(Problem::new("app_secret", "must not be empty"));
    }
    let notice_msg_type = c.notice_msg_type.unwrap_or(NOTICE_MSG_TYPE_PRIVATE);
    if notice_msg_type > 1 {
        problems.push(Problem::new("notice_msg_type", "must be 1 (private, for IM) or 0 (public)"));
    }
    let (Ok(endpoint), Some(app_id), true) = (endpoint, app_id, problems.is_empty()) else {
        return Err(problems);
    };
    let cfg = MeizuConfig { endpoint, app_id, app_secret: c.app_secret, notice_msg_type, activity: c.activity };
    let meizu = Meizu::new(cfg).map_err(|e| vec![Problem::new("", e.to_string())])?;
    Ok(VendorBuild::https(meizu))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fixtures::{self, at, form, push, table, token, tokens};

    const SECRET: &str = "mzSecret0123456789abcdef";

    /// meizu.md §2, computed with Python `hashlib.md5`.
    const DOC_MESSAGE_JSON: &str = r#"{"noticeBarInfo":{"noticeMsgType":1,"title":"Alice","content":"hi"},"pushTimeInfo":{"offLine":1,"validTime":24},"advanceInfo":{"notifyKey":"c42"}}"#;

    fn meizu_with(activity: Option<&str>, endpoint: &str) -> Meizu {
        Meizu::new(MeizuConfig {
            endpoint: url::Url::parse(endpoint).expect("url"),
            app_id: 100_999,
            app_secret: SECRET.into(),
            notice_msg_type: NOTICE_MSG_TYPE_PRIVATE,
            activity: activity.map(str::to_owned),
        })
        .expect("valid config")
    }

    fn meizu() -> Meizu {
        meizu_with(None, DEFAULT_ENDPOINT)
    }

    fn send(m: &Meizu, p: &VendorPush, ids: &[&str]) -> VendorRequest {
        m.request(p, &tokens(ids), None, at(0)).expect("request")
    }

    fn message(req: &VendorRequest) -> serde_json::Value {
        serde_json::from_str(&form(req)["messageJson"]).expect("messageJson is JSON")
    }

    #[test]
    fn the_signature_matches_the_worked_example_of_the_vendor_doc() {
        let params = [("appId", "100999"), ("pushIds", "pidA1,pidB2"), ("messageJson", DOC_MESSAGE_JSON)];
        assert_eq!(sign(&params, SECRET), "618cbd223521b3e20952e1ee91514d6c");
        // The documented mistake: forgetting the secret.
        assert_eq!(sign(&params, ""), "0e2fb29120318b2304f4789316623f9b");
        // Order of the input and a `sign` parameter play no part.
        let shuffled =
            [("sign", "x"), ("messageJson", DOC_MESSAGE_JSON), ("pushIds", "pidA1,pidB2"), ("appId", "100999")];
        assert_eq!(sign(&shuffled, SECRET), "618cbd223521b3e20952e1ee91514d6c");
    }

    #[test]
    fn a_batch_is_one_signed_form_post_with_the_private_message_class() {
        let req = send(&meizu(), &push(PushType::Alert), &["pidA1", "pidB2"]);
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.url.as_str(), "https://server-api-push.meizu.com/garcia/api/server/push/varnished/pushByPushId");
        assert_eq!(req.headers.get("content-type").expect("ct"), "application/x-www-form-urlencoded;charset=UTF-8");
        assert!(req.headers.get("authorization").is_none());
        assert_eq!(
            std::str::from_utf8(&req.body).expect("utf-8"),
            "appId=100999&pushIds=pidA1%2CpidB2&messageJson=%7B%22noticeBarInfo%22%3A%7B%22noticeMsgType%22%3A1\
             %2C%22title%22%3A%22Alice%22%2C%22content%22%3A%22See+you+at+8%3F%22%7D%2C%22clickTypeInfo%22\
             %3A%7B%22clickType%22%3A0%2C%22parameters%22%3A%7B%22conv%22%3A%22c42%22%2C%22msg%22%3A%22m9\
             %22%2C%22sender%22%3A\
             %22alice%22%7D%7D%2C%22pushTimeInfo%22%3A%7B%22offLine%22%3A1%2C%22validTime%22%3A24%7D%2C\
             %22advanceInfo%22%3A%7B%22notifyKey%22%3A%22c42%22%7D%7D&sign=ae1558fa24768fb5e6141e4bce4ec3ea"
        );
    }

    #[test]
    fn the_sign_covers_the_decoded_values_actually_sent() {
        let mut p = push(PushType::Alert);
        p.title = "Ann & Bob = 你好+1".into();
        let f = form(&send(&meizu(), &p, &["pidA1"]));
        let params = [
            ("appId", f["appId"].as_str()),
            ("pushIds", f["pushIds"].as_str()),
            ("messageJson", f["messageJson"].as_str()),
        ];
        assert_eq!(f["sign"], sign(&params, SECRET));
        assert_eq!(f["sign"].len(), 32);
        assert!(f["sign"].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn an_identical_retry_carries_the_identical_signature() {
        let m = meizu();
        let p = push(PushType::Alert);
        let tokens = [token("pidA1")];
        let first = m.request(&p, &tokens, None, at(0)).expect("request");
        let later = m.request(&p, &tokens, None, at(86_400)).expect("request");
        assert_eq!(first.body, later.body);
    }

    #[test]
    fn a_configured_activity_opens_it_with_the_deep_link_parameters() {
        let m = meizu_with(Some("com.example.im.ChatActivity"), DEFAULT_ENDPOINT);
        let click = &message(&send(&m, &push(PushType::Alert), &["pidA1"]))["clickTypeInfo"];
        assert_eq!(click["clickType"], 1);
        assert_eq!(click["activity"], "com.example.im.ChatActivity");
        assert_eq!(click["parameters"]["msg"], "m9");
    }

    #[test]
    fn valid_time_is_the_ttl_in_whole_hours_within_one_to_seventy_two() {
        let cases = [(None, 24), (Some(0), 1), (Some(1), 1), (Some(3600), 1), (Some(3601), 2), (Some(30 * 86_400), 72)];
        for (ttl, hours) in cases {
            let mut p = push(PushType::Alert);
            p.ttl = ttl.map(Duration::from_secs);
            assert_eq!(message(&send(&meizu(), &p, &["pidA1"]))["pushTimeInfo"]["validTime"], hours, "{ttl:?}");
        }
    }

    #[test]
    fn notify_key_is_the_short_conversation_id_or_a_hash_of_a_long_one() {
        let key = |collapse: Option<&str>, thread: Option<&str>| {
            let mut p = push(PushType::Alert);
            p.collapse_id = collapse.map(str::to_owned);
            p.thread_id = thread.map(str::to_owned);
            message(&send(&meizu(), &p, &["pidA1"]))["advanceInfo"]["notifyKey"].clone()
        };
        assert_eq!(key(None, Some("c42")), "c42");
        assert_eq!(key(Some("call-7"), Some("c42")), "call-7");
        let hashed = key(None, Some("team/engineering"));
        let hashed = hashed.as_str().expect("string");
        assert_eq!(hashed.len(), 8);
        assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key(None, Some("team/engineering")), hashed);
        assert_eq!(key(None, None), serde_json::Value::Null);
    }

    #[test]
    fn title_and_content_are_cut_to_meizus_limits_and_an_empty_one_borrows_the_other() {
        let mut p = push(PushType::Alert);
        p.title = "群".repeat(40);
        p.body = "字".repeat(150);
        let bar = message(&send(&meizu(), &p, &["pidA1"]))["noticeBarInfo"].clone();
        assert_eq!(bar["title"].as_str().expect("title").chars().count(), 32);
        assert_eq!(bar["content"].as_str().expect("content").chars().count(), 100);
        p.body.clear();
        p.title = "Alice".into();
        let bar = message(&send(&meizu(), &p, &["pidA1"]))["noticeBarInfo"].clone();
        assert_eq!((bar["title"].as_str(), bar["content"].as_str()), (Some("Alice"), Some("Alice")));
    }

    #[test]
    fn a_silent_push_cannot_be_built_and_voip_is_a_notification() {
        let m = meizu();
        let err = m.request(&push(PushType::Silent), &[token("pidA1")], None, at(0)).expect_err("silent");
        assert!(matches!(err, BuildError::Payload(_)));
        let voip = message(&send(&m, &push(PushType::Voip), &["pidA1"]));
        assert_eq!(voip["noticeBarInfo"]["noticeMsgType"], 1);
    }

    #[test]
    fn a_request_takes_one_to_a_hundred_pushids() {
        let m = meizu();
        let p = push(PushType::Alert);
        assert_eq!(m.max_batch(), 100);
        let many: Vec<Token> = (0..101).map(|i| token(&format!("pid{i}"))).collect();
        assert!(m.request(&p, &many[..100], None, at(0)).is_ok());
        assert!(m.request(&p, &many, None, at(0)).is_err());
        assert!(m.request(&p, &[], None, at(0)).is_err());
    }

    #[test]
    fn a_pushid_with_a_comma_is_left_out_and_invalid_without_failing_its_batch() {
        let m = meizu();
        let p = push(PushType::Alert);
        let tokens = [token("pidA1"), token("a,b"), token("pidB2")];
        let req = m.request(&p, &tokens, None, at(0)).expect("the others still go");
        assert_eq!(form(&req)["pushIds"], "pidA1,pidB2");
        let ok = r#"{"code":"200","value":{}}"#;
        let got = m.classify(&tokens, StatusCode::OK, &HeaderMap::new(), ok.as_bytes());
        let malformed = Outcome::InvalidToken { reason: "malformed_token", since: None };
        assert_eq!(got, vec![Outcome::Delivered, malformed, Outcome::Delivered]);
        assert!(m.request(&p, &[token("a,b")], None, at(0)).is_err());
    }

    #[test]
    fn pushes_differing_only_in_badge_share_a_batch_key() {
        let m = meizu();
        let a = push(PushType::Alert);
        let mut b = push(PushType::Alert);
        b.badge = Some(40);
        assert_eq!(m.batch_key(&a), m.batch_key(&b));
        assert!(m.batch_key(&a).is_some());
        let mut c = push(PushType::Alert);
        c.title = "Bob".into();
        assert_ne!(m.batch_key(&a), m.batch_key(&c));
        assert_eq!(m.batch_key(&push(PushType::Silent)), None);
    }

    #[test]
    fn the_size_budget_is_the_content_in_chars_and_oversized_custom_data_cannot_fit() {
        let m = meizu();
        let mut p = push(PushType::Alert);
        p.body = "你好".into();
        assert_eq!((m.payload_size(&p), m.payload_limit(&p)), (2, 100));
        p.data.insert("big".into(), "x".repeat(MESSAGE_JSON_MAX_BYTES));
        assert_eq!(m.payload_size(&p), usize::MAX);
        assert!(m.request(&p, &[token("pidA1")], None, at(0)).is_err());
        assert!(matches!(m.auth_plan(at(0)), AuthPlan::None));
    }

    fn classify(ids: &[&str], status: u16, body: &str) -> Vec<Outcome> {
        fixtures::classify(&meizu(), &tokens(ids), status, &HeaderMap::new(), body)
    }

    #[test]
    fn every_top_level_code_of_the_meizu_table_maps_to_its_outcome() {
        use Outcome::*;
        let rows: Vec<(&str, Outcome)> = vec![
            ("500", Retry { after: None, reason: "server_error" }),
            ("1001", Retry { after: None, reason: "server_error" }),
            ("1003", Retry { after: None, reason: "server_busy" }),
            ("1005", Fatal { reason: "bad_parameter" }),
            ("1006", Fatal { reason: "bad_signature" }),
            ("110000", Fatal { reason: "bad_app_config" }),
            ("110001", Fatal { reason: "bad_app_config" }),
            ("110004", Fatal { reason: "bad_parameter" }),
            ("110009", Fatal { reason: "app_blacklisted" }),
            ("110010", Retry { after: Some(Duration::from_secs(1)), reason: "rate_limited" }),
            ("110019", QuotaExhausted { until: None, reason: "daily_quota" }),
            ("110031", Fatal { reason: "bad_app_config" }),
            ("110032", Fatal { reason: "bad_app_config" }),
            ("110033", Fatal { reason: "bad_app_secret" }),
            ("110051", QuotaExhausted { until: None, reason: "app_count_limit" }),
            ("110053", Fatal { reason: "pass_through_limit" }),
            ("110002", InvalidToken { reason: "not_registered", since: None }),
            ("110003", InvalidToken { reason: "illegal_push_id", since: None }),
            ("300", REDIRECT_OUTCOME),
            ("424242", Fatal { reason: "unknown_code" }),
        ];
        for (code, expected) in rows {
            let body = serde_json::json!({ "code": code, "message": "", "value": "", "redirect": "" }).to_string();
            assert_eq!(classify(&["pidA1", "pidB2"], 200, &body), vec![expected.clone(), expected], "{code}");
        }
    }

    #[test]
    fn the_recorded_rate_limit_answer_is_retried_after_a_second() {
        let body = r#"{"code":"110010","message":"应用请求频率超过限制","value":"","redirect":""}"#;
        assert_eq!(
            classify(&["pidA1"], 200, body),
            vec![Outcome::Retry { after: Some(RATE_LIMIT_RETRY_AFTER), reason: "rate_limited" }]
        );
    }

    #[test]
    fn every_per_pushid_code_applies_to_exactly_the_pushids_listed() {
        use Outcome::*;
        let rows: Vec<(&str, Outcome)> = vec![
            ("110002", InvalidToken { reason: "not_registered", since: None }),
            ("110003", InvalidToken { reason: "illegal_push_id", since: None }),
            ("110005", InvalidToken { reason: "alias_not_subscribed", since: None }),
            ("110010", Fatal { reason: "switched_off" }),
            ("110011", Fatal { reason: "device_daily_limit" }),
            ("201", Fatal { reason: "no_permission" }),
            ("501", Retry { after: None, reason: "push_failed" }),
            ("513", Retry { after: None, reason: "push_failed" }),
            ("518", Retry { after: None, reason: "over_rate" }),
            ("519", Retry { after: None, reason: "overloaded" }),
            ("520", Retry { after: Some(Duration::from_secs(60)), reason: "folded" }),
            ("999", Fatal { reason: "unknown_code" }),
        ];
        for (code, expected) in rows {
            let body = serde_json::json!({ "code": "200", "msgId": "m", "value": { code: ["pidB2"] } }).to_string();
            assert_eq!(classify(&["pidA1", "pidB2"], 200, &body), vec![Delivered, expected], "{code}");
        }
    }

    #[test]
    fn the_recorded_success_answers_deliver_all_but_the_listed_pushids() {
        use Outcome::*;
        let listed = r#"{"code":"200","message":"","msgId":"6f1c0d5e9a8b4c3d2e1f00aa11bb22cc",
            "value":{"110002":["pidB2"],"110003":["pidZZ"]},"redirect":""}"#;
        assert_eq!(
            classify(&["pidA1", "pidB2", "pidZZ"], 200, listed),
            vec![
                Delivered,
                InvalidToken { reason: "not_registered", since: None },
                InvalidToken { reason: "illegal_push_id", since: None }
            ]
        );
        for body in [
            r#"{"code":"200","message":"","msgId":"6f1c0d5e9a8b4c3d2e1f00aa11bb22cd","value":{}}"#,
            r#"{"code":"200","value":""}"#,
            r#"{"code":"200"}"#,
            r#"{"code":200,"value":null}"#,
        ] {
            assert_eq!(classify(&["pidA1", "pidB2"], 200, body), vec![Delivered, Delivered], "{body}");
        }
    }

    #[test]
    fn transport_statuses_and_unreadable_answers() {
        let unreadable = Outcome::Retry { after: None, reason: "unreadable_answer" };
        assert_eq!(classify(&["pidA1"], 200, "<html>"), vec![unreadable.clone()]);
        assert_eq!(classify(&["pidA1"], 200, r#"{"message":"x"}"#), vec![unreadable]);
        assert_eq!(classify(&["pidA1"], 502, ""), vec![Outcome::Retry { after: None, reason: "server_error" }]);
        assert_eq!(classify(&["pidA1"], 403, ""), vec![Outcome::Fatal { reason: "http_status" }]);
    }

    fn ctx() -> super::super::credential::CredentialContext<'static> {
        fixtures::credential_ctx("mz")
    }

    #[test]
    fn config_takes_a_numeric_app_id_defaults_to_private_messages_and_never_shows_the_secret() {
        let build = from_config(&table("app_id = 100999\napp_secret = \"s3cret\""), &ctx()).expect("builds");
        assert_eq!(build.vendor.kind(), VendorKind::Meizu);
        assert!(from_config(&table("app_id = \"100999\"\napp_secret = \"s\""), &ctx()).is_ok());

        let problems = from_config(&table("app_id = \"abc\"\napp_secret = \" \""), &ctx()).err().expect("bad");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["app_id", "app_secret"]);
        let problems = from_config(&table("app_id = 1\napp_secret = \"s\"\nnotice_msg_type = 2"), &ctx()).err();
        assert_eq!(problems.expect("bad type")[0].field, "notice_msg_type");
        let problems = from_config(&table("app_id = 1\napp_secret = \"s\"\napp_key = \"k\""), &ctx()).err();
        assert_eq!(problems.expect("unknown")[0].field, "app_key");

        let cfg = MeizuConfig {
            endpoint: url::Url::parse(DEFAULT_ENDPOINT).expect("url"),
            app_id: 1,
            app_secret: "s3cret".into(),
            notice_msg_type: 1,
            activity: None,
        };
        assert!(!format!("{cfg:?}").contains("s3cret"));
        assert!(!format!("{:?}", Meizu::new(cfg).expect("builds")).contains("s3cret"));
    }

    #[test]
    fn the_endpoint_path_prefix_is_kept() {
        let req = send(&meizu_with(None, "https://127.0.0.1:9/mz/"), &push(PushType::Alert), &["pidA1"]);
        assert_eq!(req.url.as_str(), "https://127.0.0.1:9/mz/garcia/api/server/push/varnished/pushByPushId");
    }
}
