//! OPPO Push (OPUSH / HeyTap, ColorOS, OnePlus, realme): the wire format, the signed auth call
//! and the answer table of `docs/vendors/oppo.md`.
//!
//! Owns: the auth call (`POST /server/v1/auth`, form `app_key`, `timestamp` in ms and `sign` =
//! lower-case hex SHA-256 of `app_key + timestamp + master_secret`) and its answer; the send
//! request, `unicast` for one registration id and `unicast_batch` (up to [`MAX_BATCH`] message
//! objects) for several, both forms carrying the cached token as the form field `auth_token`;
//! the IM class fields; the text limits; and the mapping of every documented answer code, at
//! the top level and per batch entry, to an [`Outcome`].
//!
//! IM class fields (credential keys, oppo.md §3.1):
//! - `category` (default `"IM"`, `""` to omit): the 2024 classification. `IM` puts the push in
//!   the 通讯与服务 class (formerly 私信), which has no daily total or per-device cap; without
//!   it the push counts as 内容与营销 (public, quota-limited).
//! - `notify_level` (default `2` = bar + lock screen, sent only with a category; `16` needs
//!   OPPO's chat/call grant, `1` = bar only).
//! - `channel_id` (optional): the legacy private-message channel approved in the OPPO console,
//!   for apps enabled before the cut-over.
//! - `private_msg_template_id` (optional): an approved private-message template, for consoles
//!   that demand one (code 54 otherwise).
//!
//! Deliberately not here: caching the auth token and the refresh-once rule (the shared auth
//! cache; [`AUTH_REFRESH_AFTER`] tells it when), retries and sleeping, parking on the daily
//! quota (the shared layer acts on [`Outcome::QuotaExhausted`]), broadcast and the feedback
//! endpoint, pictures.
//!
//! ```text
//! app_key + timestamp + master_secret ─sha256─▶ POST /server/v1/auth ─▶ parse_auth ─▶ auth_token
//! VendorPush + ids ─▶ unicast (1 id) | unicast_batch (2..1000 ids) form: auth_token, message(s)
//! {code, message, data} (HTTP 200) ─▶ top-level code, or per-entry errorCode by registrationId ─▶ Outcome
//! ```
//!
//! Regions: OPPO serves China and overseas devices from different hosts. A credential talks to
//! one region (`region`, default China); registration ids of the other region are not sent and
//! are answered `Fatal { reason: "wrong_region" }` without pruning (register such devices on a
//! second credential with `region = "intl"`).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::credential::{fields, CredentialContext, Problem, VendorBuild};
use super::{AuthPlan, AuthToken, BuildError, Outcome, Vendor, VendorPush, VendorRequest};
use crate::model::{PushType, Timestamp, Token, VendorKind};
use crate::render::truncate_chars;

/// Push host for China devices: the classic host every SDK uses. The current online doc names
/// `https://api-push-cn.heytapmobi.com`; whether it replaces this one is unverified, so the
/// classic host stays the default (override with `endpoint`).
pub const CHINA_ENDPOINT: &str = "https://api.push.oppomobile.com";

/// Push host for overseas devices.
pub const OVERSEAS_ENDPOINT: &str = "https://api-intl.push.oppomobile.com";

/// The auth call, relative to the endpoint.
pub const AUTH_PATH: &str = "server/v1/auth";

/// The single-target send, relative to the endpoint.
pub const UNICAST_PATH: &str = "server/v1/message/notification/unicast";

/// The multi-target send (one message object per target), relative to the endpoint.
pub const UNICAST_BATCH_PATH: &str = "server/v1/message/notification/unicast_batch";

/// Most message objects `unicast_batch` takes in one request.
pub const MAX_BATCH: usize = 1000;

/// An auth token lives 24 h; pushd replaces it after 20 h (libraries refresh at 8–23 h).
pub const AUTH_REFRESH_AFTER: chrono::Duration = chrono::Duration::hours(20);

/// Longest `title`, in chars (every char, CJK and emoji included, counts 1).
pub const TITLE_MAX_CHARS: usize = 50;

/// Longest `content` of a standard (style 1) notification, in chars. Unverified: the SDK and
/// the field table say 200, one 2026 integration reads the current doc as 50; pushd sends up to
/// 200 and the render layer truncates the body to it.
pub const CONTENT_MAX_CHARS: usize = 200;

/// Longest `action_parameters` (the deep-link data as JSON text), in chars.
pub const ACTION_PARAMETERS_MAX_CHARS: usize = 4000;

/// Longest `off_line_ttl` the SDK accepts (10 days), in seconds.
pub const MAX_OFFLINE_TTL_SECS: u64 = 864_000;

/// The IM classification pushd sends by default (通讯与服务).
pub const DEFAULT_CATEGORY: &str = "IM";

/// The default `notify_level`: notification bar and lock screen.
pub const DEFAULT_NOTIFY_LEVEL: u8 = 2;

/// The wait before retrying after server flow control (code −2) or the frequency limit (55).
pub const FLOW_CONTROL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The wait before retrying after "app call count exceeded" (code 13).
pub const CALL_LIMIT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Answer codes that name a dead registration id: only 10000 ("invalid registration_id").
/// Unverified: one integration reports 41 ("invalid argument") for bad ids; 41 is also every
/// payload error, so pushd never prunes on it.
pub const INVALID_TOKEN_CODES: &[i64] = &[10000];

/// "private_msg_template_id is null": the console demands a private-message template. Seen in
/// one troubleshooting note, absent from the official table (unverified); Fatal either way.
pub const TEMPLATE_MISSING_CODE: i64 = 54;

/// The daily message quota of the public class is spent.
pub const DAILY_QUOTA_CODE: i64 = 33;

/// Which OPPO cluster a registration id belongs to (oppo.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Mainland China devices.
    China,
    /// Everything else.
    Overseas,
}

impl Region {
    /// The region of a registration id: split on `_`; a single part, or `CN` as the first of
    /// two or the second of three parts, is China (`b6bb…`, `CN_b6bb…`, `OPPO_CN_b6bb…`).
    pub fn of(registration_id: &str) -> Region {
        let parts: Vec<&str> = registration_id.split('_').collect();
        let china = match parts.as_slice() {
            [_] => true,
            [first, _] => *first == "CN",
            [first, second, ..] => *second == "CN" || *first == "CN",
            [] => true,
        };
        if china {
            Region::China
        } else {
            Region::Overseas
        }
    }
}

/// Configuration of one OPPO credential.
#[derive(Clone)]
pub struct OppoConfig {
    /// Base URL of the push host (or the loopback mock).
    pub endpoint: url::Url,
    /// The region this credential's host serves.
    pub region: Region,
    /// The operator's AppKey.
    pub app_key: String,
    /// The operator's MasterSecret. Never logged.
    pub master_secret: String,
    /// `notification.category`; `None` omits it (and `notify_level`).
    pub category: Option<String>,
    /// `notification.notify_level` (1, 2 or 16); sent only with a category.
    pub notify_level: Option<u8>,
    /// `notification.channel_id`: the private-message channel, if any.
    pub channel_id: Option<String>,
    /// `notification.private_msg_template_id`, if the console demands one.
    pub private_msg_template_id: Option<String>,
}

impl fmt::Debug for OppoConfig {
    /// Never prints the master secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OppoConfig")
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .field("app_key", &self.app_key)
            .field("master_secret", &"<redacted>")
            .field("category", &self.category)
            .field("notify_level", &self.notify_level)
            .field("channel_id", &self.channel_id)
            .field("private_msg_template_id", &self.private_msg_template_id)
            .finish()
    }
}

/// The OPPO vendor: builds requests and classifies answers for one credential.
pub struct Oppo {
    auth_url: url::Url,
    unicast_url: url::Url,
    batch_url: url::Url,
    region: Region,
    app_key: String,
    master_secret: String,
    category: Option<String>,
    notify_level: Option<u8>,
    channel_id: Option<String>,
    private_msg_template_id: Option<String>,
}

impl fmt::Debug for Oppo {
    /// Never prints the master secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oppo")
            .field("unicast_url", &self.unicast_url.as_str())
            .field("region", &self.region)
            .field("app_key", &self.app_key)
            .field("category", &self.category)
            .field("notify_level", &self.notify_level)
            .field("channel_id", &self.channel_id)
            .finish_non_exhaustive()
    }
}

/// `notification` of a message object (oppo.md §3.1), snake_case as the official SDK sends it.
#[derive(Serialize)]
struct Notification<'a> {
    app_message_id: String,
    title: String,
    content: String,
    /// 0 = open the app; the app reads the deep link from `action_parameters`.
    click_action_type: u8,
    action_parameters: String,
    off_line: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    off_line_ttl: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notify_level: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private_msg_template_id: Option<&'a str>,
}

/// One message object: a target and its notification.
#[derive(Serialize)]
struct Message<'a> {
    /// 2 = registration id.
    target_type: u8,
    target_value: &'a str,
    notification: &'a Notification<'a>,
}

/// Every OPPO answer: `{code, message, data}`; `code` may come as a number or a string.
struct Answer {
    code: i64,
    data: Value,
}

impl Answer {
    /// `None` for a body that is not JSON or has no `code`.
    fn parse(body: &[u8]) -> Option<Answer> {
        let mut v: Value = serde_json::from_slice(body).ok()?;
        let code = int(v.get("code")?)?;
        Some(Answer { code, data: v.get_mut("data").map(Value::take).unwrap_or_default() })
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Lower-case hex SHA-256 of `input`.
fn sha256_hex(input: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, input.as_bytes()).as_ref())
}

/// The auth `sign` (oppo.md §2): lower-case hex SHA-256 of `app_key + timestamp + master_secret`.
pub fn sign(app_key: &str, timestamp_ms: i64, master_secret: &str) -> String {
    sha256_hex(&format!("{app_key}{timestamp_ms}{master_secret}"))
}

impl Oppo {
    /// Validates the configuration and derives the URLs.
    pub fn new(cfg: OppoConfig) -> Result<Oppo, BuildError> {
        const BAD_ENDPOINT: BuildError = BuildError::Payload("OPPO endpoint must be an http(s) base URL");
        if !matches!(cfg.endpoint.scheme(), "https" | "http") || cfg.endpoint.cannot_be_a_base() {
            return Err(BAD_ENDPOINT);
        }
        let join = |path: &str| -> Result<url::Url, BuildError> {
            let mut url = cfg.endpoint.clone();
            url.path_segments_mut().map_err(|_| BAD_ENDPOINT)?.pop_if_empty().extend(path.split('/'));
            Ok(url)
        };
        if cfg.app_key.trim().is_empty() || cfg.master_secret.trim().is_empty() {
            return Err(BuildError::Signing("OPPO app_key and master_secret must not be empty"));
        }
        Ok(Oppo {
            auth_url: join(AUTH_PATH)?,
            unicast_url: join(UNICAST_PATH)?,
            batch_url: join(UNICAST_BATCH_PATH)?,
            region: cfg.region,
            app_key: cfg.app_key,
            master_secret: cfg.master_secret,
            notify_level: cfg.category.as_ref().and(cfg.notify_level),
            category: cfg.category,
            channel_id: cfg.channel_id,
            private_msg_template_id: cfg.private_msg_template_id,
        })
    }

    fn auth_request(&self, now: Timestamp) -> VendorRequest {
        let timestamp = now.timestamp_millis();
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("app_key", &self.app_key)
            .append_pair("timestamp", &timestamp.to_string())
            .append_pair("sign", &sign(&self.app_key, timestamp, &self.master_secret))
            .finish();
        VendorRequest {
            method: Method::POST,
            url: self.auth_url.clone(),
            headers: form_headers(),
            body: Bytes::from(form),
        }
    }

    /// The notification every target of `push` gets.
    fn notification(&self, push: &VendorPush) -> Result<Notification<'_>, BuildError> {
        if push.push_type == PushType::Silent {
            return Err(BuildError::Payload("OPPO has no silent (pass-through) pushes"));
        }
        if push.title.is_empty() || push.body.is_empty() {
            return Err(BuildError::Payload("OPPO requires a title and a content"));
        }
        let action_parameters = serde_json::to_string(&push.data)
            .map_err(|_| BuildError::Payload("OPPO action_parameters could not be encoded"))?;
        if action_parameters.chars().count() > ACTION_PARAMETERS_MAX_CHARS {
            return Err(BuildError::Payload("OPPO action_parameters (custom data) exceed 4000 chars"));
        }
        // Stable across retries and re-renders of one message, so OPPO drops a double send.
        let identity = push.data.get(crate::render::DATA_MESSAGE).cloned().unwrap_or_else(|| action_parameters.clone());
        let app_message_id = format!("pushd-{}", &sha256_hex(&identity)[..24]);
        let (off_line, off_line_ttl) = match push.ttl.map(|t| t.as_secs()) {
            // Zero TTL: deliver now or never.
            Some(0) => (false, None),
            Some(secs) => (true, Some(secs.min(MAX_OFFLINE_TTL_SECS))),
            None => (true, None),
        };
        Ok(Notification {
            app_message_id,
            title: truncate_chars(&push.title, TITLE_MAX_CHARS),
            content: truncate_chars(&push.body, CONTENT_MAX_CHARS),
            click_action_type: 0,
            action_parameters,
            off_line,
            off_line_ttl,
            category: self.category.as_deref(),
            notify_level: self.notify_level,
            channel_id: self.channel_id.as_deref(),
            private_msg_template_id: self.private_msg_template_id.as_deref(),
        })
    }

    /// The tokens of this credential's region, in order: the ones a request carries.
    fn sendable<'t>(&self, tokens: &'t [Token]) -> Vec<&'t Token> {
        tokens.iter().filter(|t| Region::of(t.as_str()) == self.region).collect()
    }

    /// Outcomes for the tokens a request carried (`sent`), from the answer.
    fn classify_sent(&self, sent: &[&Token], status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<Outcome> {
        let all = |o: Outcome| vec![o; sent.len()];
        if status != StatusCode::OK {
            let after = retry_after(headers);
            let reason = if status.is_server_error() { "http_5xx" } else { "http_status" };
            return all(Outcome::Retry { after, reason });
        }
        let Some(answer) = Answer::parse(body) else {
            return all(Outcome::Retry { after: None, reason: "bad_answer" });
        };
        let code = answer.code;
        let batch = sent.len() > 1;
        if code != 0 {
            if batch && INVALID_TOKEN_CODES.contains(&code) {
                // A request-level complaint names no id: never prune a whole batch on it.
                return all(Outcome::Fatal { reason: "invalid_target_unnamed" });
            }
            return all(outcome_for_code(code));
        }
        if !batch {
            return all(Outcome::Delivered);
        }
        let entries = batch_entries(&answer.data);
        sent.iter()
            .map(|t| match entries.get(t.as_str()) {
                Some(code) => outcome_for_code(*code),
                // Not mentioned: resend (app_message_id makes a double send harmless).
                None => Outcome::Retry { after: None, reason: "no_result" },
            })
            .collect()
    }
}

fn form_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded;charset=UTF-8"));
    headers
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A number that may come as a JSON number or a decimal string.
fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// `registrationId → errorCode` (0 when absent) of a `unicast_batch` answer's `data` array.
fn batch_entries(data: &Value) -> HashMap<&str, i64> {
    let Some(entries) = data.as_array() else {
        return HashMap::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let id = e.get("registrationId").or_else(|| e.get("registration_id"))?.as_str()?;
            let code = e.get("errorCode").or_else(|| e.get("error_code")).and_then(int).unwrap_or(0);
            Some((id, code))
        })
        .collect()
}

/// The outcome of an answer code (oppo.md §5), at the top level or per batch entry.
pub fn outcome_for_code(code: i64) -> Outcome {
    let fatal = |reason| Outcome::Fatal { reason };
    match code {
        0 => Outcome::Delivered,
        -1 => Outcome::Retry { after: None, reason: "service_unavailable" },
        -2 => Outcome::Retry { after: Some(FLOW_CONTROL_RETRY_AFTER), reason: "flow_control" },
        11 => Outcome::RefreshAuth { reason: "invalid_auth_token" },
        12 => fatal("method_not_allowed"),
        13 => Outcome::Retry { after: Some(CALL_LIMIT_RETRY_AFTER), reason: "call_limit" },
        14 => fatal("invalid_app_key"),
        15 => fatal("missing_app_key"),
        16 => fatal("invalid_signature"),
        17 => fatal("missing_signature"),
        18 => fatal("missing_timestamp"),
        19 => fatal("invalid_timestamp"),
        20..=24 => fatal("method_or_version"),
        25 => fatal("bad_encoding"),
        26 => fatal("ip_blacklisted"),
        27 => fatal("access_denied"),
        28 => fatal("app_disabled"),
        29 => Outcome::RefreshAuth { reason: "missing_auth_token" },
        30 => fatal("no_push_permission"),
        31 => fatal("data_not_exist"),
        // Same app_message_id already sent to this target: it has the notification.
        32 => Outcome::Delivered,
        DAILY_QUOTA_CODE => Outcome::QuotaExhausted { until: None, reason: "daily_quota" },
        34 => fatal("picture_quota"),
        40 => fatal("missing_argument"),
        41 => fatal("invalid_argument"),
        51 => fatal("invalid_picture"),
        TEMPLATE_MISSING_CODE => fatal("template_missing"),
        55 => Outcome::Retry { after: Some(FLOW_CONTROL_RETRY_AFTER), reason: "frequency_limit" },
        59 => fatal("no_action_permission"),
        67 => fatal("invalid_category"),
        c if INVALID_TOKEN_CODES.contains(&c) => {
            Outcome::InvalidToken { reason: "invalid_registration_id", since: None }
        }
        10_000..=20_000 => fatal("business_error"),
        _ => fatal("unknown"),
    }
}

impl Vendor for Oppo {
    fn kind(&self) -> VendorKind {
        VendorKind::Oppo
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// The notification as sent: OPPO has no badge field, so a group message batches across
    /// users whatever their badge.
    fn batch_key(&self, push: &VendorPush) -> Option<u64> {
        let notification = self.notification(push).ok()?;
        let bytes = serde_json::to_vec(&notification).ok()?;
        Some(super::batch_key_of(&bytes))
    }

    fn auth_plan(&self, now: Timestamp) -> AuthPlan {
        AuthPlan::Remote(Ok(self.auth_request(now)))
    }

    fn parse_auth(&self, status: StatusCode, body: &[u8], now: Timestamp) -> Result<AuthToken, Outcome> {
        if status != StatusCode::OK {
            return Err(Outcome::Retry { after: None, reason: "auth_unavailable" });
        }
        let Some(answer) = Answer::parse(body) else {
            return Err(Outcome::Retry { after: None, reason: "auth_bad_answer" });
        };
        match answer.code {
            0 => {
                let token = answer.data.get("auth_token").and_then(Value::as_str).unwrap_or_default();
                if token.is_empty() {
                    return Err(Outcome::Retry { after: None, reason: "auth_bad_answer" });
                }
                Ok(AuthToken { value: token.to_owned(), refresh_at: now + AUTH_REFRESH_AFTER })
            }
            code => Err(match outcome_for_code(code) {
                retry @ Outcome::Retry { .. } => retry,
                fatal @ Outcome::Fatal { .. } => fatal,
                _ => Outcome::Fatal { reason: "auth_rejected" },
            }),
        }
    }

    /// The content, in chars: what the render layer may shorten. The title is cut to
    /// [`TITLE_MAX_CHARS`] when the request is built.
    fn payload_limit(&self, _push: &VendorPush) -> usize {
        CONTENT_MAX_CHARS
    }

    fn payload_size(&self, push: &VendorPush) -> usize {
        push.body.chars().count()
    }

    fn request(
        &self,
        push: &VendorPush,
        tokens: &[Token],
        auth: Option<&AuthToken>,
        _now: Timestamp,
    ) -> Result<VendorRequest, BuildError> {
        let auth = auth.ok_or(BuildError::Signing("OPPO sends need an auth_token"))?;
        let sent = self.sendable(tokens);
        if sent.is_empty() {
            return Err(BuildError::Payload("registration id belongs to the other OPPO region"));
        }
        if sent.len() > MAX_BATCH {
            return Err(BuildError::Payload("OPPO unicast_batch takes at most 1000 messages"));
        }
        let notification = self.notification(push)?;
        let messages: Vec<Message<'_>> = sent
            .iter()
            .map(|t| Message { target_type: 2, target_value: t.as_str(), notification: &notification })
            .collect();
        let encode =
            |r: serde_json::Result<String>| r.map_err(|_| BuildError::Payload("OPPO message could not be encoded"));
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("auth_token", &auth.value);
        let url = match messages.as_slice() {
            [one] => {
                form.append_pair("message", &encode(serde_json::to_string(one))?);
                self.unicast_url.clone()
            }
            many => {
                form.append_pair("messages", &encode(serde_json::to_string(many))?);
                self.batch_url.clone()
            }
        };
        Ok(VendorRequest { method: Method::POST, url, headers: form_headers(), body: Bytes::from(form.finish()) })
    }

    fn classify(&self, tokens: &[Token], status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<Outcome> {
        let sent = self.sendable(tokens);
        let mut answered = self.classify_sent(&sent, status, headers, body).into_iter();
        tokens
            .iter()
            .map(|t| {
                if Region::of(t.as_str()) == self.region {
                    answered.next().unwrap_or(Outcome::Retry { after: None, reason: "no_result" })
                } else {
                    Outcome::Fatal { reason: "wrong_region" }
                }
            })
            .collect()
    }
}

/// The `[credentials.<name>]` fields of an OPPO credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OppoCredential {
    /// AppKey from the OPPO console.
    app_key: String,
    /// MasterSecret from the OPPO console.
    master_secret: String,
    /// `"cn"` (default) or `"intl"`: which devices this credential serves.
    region: Option<String>,
    /// Base URL; default by region.
    endpoint: Option<String>,
    /// Default `"IM"`; `""` omits it.
    category: Option<String>,
    /// 1, 2 (default) or 16.
    notify_level: Option<u8>,
    /// Private-message channel id.
    channel_id: Option<String>,
    /// Private-message template id.
    private_msg_template_id: Option<String>,
}

/// Builds the OPPO vendor from its credential table.
pub fn from_config(table: &toml::Table, ctx: &CredentialContext<'_>) -> Result<VendorBuild, Vec<Problem>> {
    let c: OppoCredential = fields(table)?;
    let mut problems = Vec::new();
    let region = match c.region.as_deref() {
        None | Some("cn") => Region::China,
        Some("intl") => Region::Overseas,
        Some(other) => {
            problems.push(Problem::new("region", format!("{other:?} is not \"cn\" or \"intl\"")));
            Region::China
        }
    };
    let default_endpoint = match region {
        Region::China => CHINA_ENDPOINT,
        Region::Overseas => OVERSEAS_ENDPOINT,
    };
    let endpoint =
        ctx.url("endpoint", c.endpoint.as_deref().unwrap_or(default_endpoint)).map_err(|p| problems.push(p)).ok();
    if c.app_key.trim().is_empty() {
        problems.push(Problem::new("app_key", "must not be empty"));
    }
    if c.master_secret.trim().is_empty() {
        problems.push(Problem::new("master_secret", "must not be empty"));
    }
    let category = match c.category {
        None => Some(DEFAULT_CATEGORY.to_owned()),
        Some(s) if s.is_empty() => None,
        Some(s) => Some(s),
    };
    let notify_level = match (c.notify_level, &category) {
        (Some(level), _) if ![1, 2, 16].contains(&level) => {
            problems.push(Problem::new("notify_level", format!("{level} is not 1, 2 or 16")));
            None
        }
        (Some(_), None) => {
            problems.push(Problem::new("notify_level", "needs a category"));
            None
        }
        (level, Some(_)) => Some(level.unwrap_or(DEFAULT_NOTIFY_LEVEL)),
        (None, None) => None,
    };
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let (Some(endpoint), true) = (endpoint, problems.is_empty()) else {
        return Err(problems);
    };
    let cfg = OppoConfig {
        endpoint,
        region,
        app_key: c.app_key.trim().to_owned(),
        master_secret: c.master_secret.trim().to_owned(),
        category,
        notify_level,
        channel_id: non_empty(c.channel_id),
        private_msg_template_id: non_empty(c.private_msg_template_id),
    };
    let oppo = Oppo::new(cfg).map_err(|e| vec![Problem::new("endpoint", e.to_string())])?;
    Ok(VendorBuild::https(oppo))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::provider::fixtures::{self, at_ms, form, token, tokens};

    const APP_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
    const MASTER_SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const REG_ID: &str = "CN_0a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn config() -> OppoConfig {
        OppoConfig {
            endpoint: url::Url::parse("https://api.push.oppomobile.com").expect("url"),
            region: Region::China,
            app_key: APP_KEY.into(),
            master_secret: MASTER_SECRET.into(),
            category: Some("IM".into()),
            notify_level: Some(2),
            channel_id: None,
            private_msg_template_id: None,
        }
    }

    fn oppo() -> Oppo {
        Oppo::new(config()).expect("valid config")
    }

    fn push() -> VendorPush {
        fixtures::push(PushType::Alert)
    }

    fn auth() -> AuthToken {
        AuthToken { value: "58ad47319e8d725350a5afd5".into(), refresh_at: at_ms(1_700_072_000_000) }
    }

    #[test]
    fn the_signature_matches_the_worked_example_of_the_doc() {
        assert_eq!(
            sign(APP_KEY, 1_700_000_000_000, MASTER_SECRET),
            "0d0f39272ac6048e44e357beb0b02f26334127b7055bb09be72a9b8d61940a12"
        );
    }

    #[test]
    fn the_auth_request_is_a_signed_form_post() {
        let AuthPlan::Remote(Ok(r)) = oppo().auth_plan(at_ms(1_700_000_000_000)) else {
            panic!("OPPO fetches its token");
        };
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.url.as_str(), "https://api.push.oppomobile.com/server/v1/auth");
        assert_eq!(r.headers[CONTENT_TYPE], "application/x-www-form-urlencoded;charset=UTF-8");
        let f = form(&r);
        assert_eq!(f["app_key"], APP_KEY);
        assert_eq!(f["timestamp"], "1700000000000");
        assert_eq!(f["sign"], "0d0f39272ac6048e44e357beb0b02f26334127b7055bb09be72a9b8d61940a12");
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn the_auth_token_is_read_and_refreshed_after_twenty_hours() {
        let now = at_ms(1_700_000_000_000);
        let body = br#"{"code":0,"message":"success","data":{"auth_token":"58ad47319e8d725350a5afd5","create_time":1700000000123}}"#;
        let token = oppo().parse_auth(StatusCode::OK, body, now).expect("token");
        assert_eq!(token.value, "58ad47319e8d725350a5afd5");
        assert_eq!(token.refresh_at, now + chrono::Duration::hours(20));
    }

    #[test]
    fn auth_errors_are_fatal_for_credentials_and_transient_for_the_service() {
        let o = oppo();
        let now = at_ms(0);
        let cases: &[(u16, &str, Outcome)] = &[
            (200, r#"{"code":16,"message":"Invalid Signature"}"#, Outcome::Fatal { reason: "invalid_signature" }),
            (200, r#"{"code":14,"message":"Invalid AppKey"}"#, Outcome::Fatal { reason: "invalid_app_key" }),
            (200, r#"{"code":19,"message":"Invalid Timestamp"}"#, Outcome::Fatal { reason: "invalid_timestamp" }),
            (200, r#"{"code":11,"message":"Invalid AuthToken"}"#, Outcome::Fatal { reason: "auth_rejected" }),
            (
                200,
                r#"{"code":-2,"message":"Server Flow Control"}"#,
                Outcome::Retry { after: Some(Duration::from_secs(1)), reason: "flow_control" },
            ),
            (200, r#"{"code":0,"data":{}}"#, Outcome::Retry { after: None, reason: "auth_bad_answer" }),
            (200, "<html>", Outcome::Retry { after: None, reason: "auth_bad_answer" }),
            (502, "", Outcome::Retry { after: None, reason: "auth_unavailable" }),
        ];
        for (status, body, expected) in cases {
            let status = StatusCode::from_u16(*status).expect("status");
            assert_eq!(&o.parse_auth(status, body.as_bytes(), now).expect_err("error"), expected, "{body}");
        }
    }

    #[test]
    fn one_target_is_a_unicast_with_the_im_class_and_deep_link_data() {
        let r = oppo().request(&push(), &tokens(&[REG_ID]), Some(&auth()), at_ms(0)).expect("request");
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.url.as_str(), "https://api.push.oppomobile.com/server/v1/message/notification/unicast");
        assert_eq!(r.headers[CONTENT_TYPE], "application/x-www-form-urlencoded;charset=UTF-8");
        let f = form(&r);
        assert_eq!(f["auth_token"], "58ad47319e8d725350a5afd5");
        let message: Value = serde_json::from_str(&f["message"]).expect("message is JSON text");
        let id = message["notification"]["app_message_id"].as_str().expect("id").to_owned();
        assert_eq!(
            message,
            json!({
                "target_type": 2,
                "target_value": REG_ID,
                "notification": {
                    "app_message_id": id,
                    "title": "Alice",
                    "content": "See you at 8?",
                    "click_action_type": 0,
                    "action_parameters": r#"{"conv":"c42","msg":"m9","sender":"alice"}"#,
                    "off_line": true,
                    "off_line_ttl": 86400,
                    "category": "IM",
                    "notify_level": 2
                }
            })
        );
        assert!(id.starts_with("pushd-") && id.len() == 30, "{id}");
    }

    #[test]
    fn the_app_message_id_is_stable_per_message_so_a_resend_is_deduplicated() {
        let o = oppo();
        let a = o.notification(&push()).expect("n").app_message_id;
        let mut again = push();
        again.body = "re-rendered".into();
        assert_eq!(o.notification(&again).expect("n").app_message_id, a);
        let mut other = push();
        other.data.insert("msg".into(), "8a01".into());
        assert_ne!(o.notification(&other).expect("n").app_message_id, a);
    }

    #[test]
    fn several_targets_are_one_unicast_batch_of_message_objects() {
        let ids = ["CN_11111111111111111111111111111111", "22222222222222222222222222222222"];
        let r = oppo().request(&push(), &tokens(&ids), Some(&auth()), at_ms(0)).expect("request");
        assert_eq!(r.url.as_str(), "https://api.push.oppomobile.com/server/v1/message/notification/unicast_batch");
        let f = form(&r);
        let messages: Vec<Value> = serde_json::from_str(&f["messages"]).expect("messages is a JSON array");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["target_value"], ids[0]);
        assert_eq!(messages[1]["target_value"], ids[1]);
        assert_eq!(messages[0]["notification"], messages[1]["notification"]);
        assert!(!f.contains_key("message"));
    }

    #[test]
    fn configured_channel_and_template_are_sent_and_an_empty_category_is_omitted() {
        let mut cfg = config();
        cfg.category = None;
        cfg.channel_id = Some("private_im".into());
        cfg.private_msg_template_id = Some("tpl-1".into());
        let o = Oppo::new(cfg).expect("valid");
        let n = serde_json::to_value(o.notification(&push()).expect("n")).expect("json");
        assert_eq!(n["channel_id"], "private_im");
        assert_eq!(n["private_msg_template_id"], "tpl-1");
        assert!(n.get("category").is_none());
        assert!(n.get("notify_level").is_none(), "notify_level needs a category");
    }

    #[test]
    fn title_is_cut_to_fifty_chars_ttl_capped_and_zero_ttl_is_not_stored() {
        let o = oppo();
        let mut p = push();
        p.title = "群".repeat(80);
        p.ttl = Some(Duration::from_secs(30 * 86_400));
        let n = o.notification(&p).expect("n");
        assert_eq!(n.title.chars().count(), 50);
        assert!(n.title.ends_with('…'));
        assert_eq!((n.off_line, n.off_line_ttl), (true, Some(864_000)));
        p.ttl = Some(Duration::ZERO);
        let n = o.notification(&p).expect("n");
        assert_eq!((n.off_line, n.off_line_ttl), (false, None));
        p.ttl = None;
        assert_eq!(o.notification(&p).expect("n").off_line_ttl, None);
    }

    #[test]
    fn silent_pushes_and_oversized_custom_data_cannot_be_built() {
        let o = oppo();
        let mut silent = push();
        silent.push_type = PushType::Silent;
        silent.title.clear();
        silent.body.clear();
        assert!(matches!(o.request(&silent, &tokens(&[REG_ID]), Some(&auth()), at_ms(0)), Err(BuildError::Payload(_))));
        let mut big = push();
        big.data.insert("blob".into(), "x".repeat(4000));
        assert!(matches!(o.request(&big, &tokens(&[REG_ID]), Some(&auth()), at_ms(0)), Err(BuildError::Payload(_))));
        assert!(matches!(o.request(&push(), &tokens(&[REG_ID]), None, at_ms(0)), Err(BuildError::Signing(_))));
    }

    #[test]
    fn the_batch_key_ignores_the_badge_but_not_the_content() {
        let o = oppo();
        let a = push();
        let mut other_badge = push();
        other_badge.badge = Some(9);
        let mut other_text = push();
        other_text.body = "no".into();
        assert_eq!(o.batch_key(&a), o.batch_key(&other_badge));
        assert_ne!(o.batch_key(&a), o.batch_key(&other_text));
        assert!(o.batch_key(&a).is_some());
        assert_eq!(o.max_batch(), 1000);
    }

    #[test]
    fn registration_ids_are_routed_by_region() {
        assert_eq!(Region::of("b6bbd94b59cdb5df8391642c1509b7fe"), Region::China);
        assert_eq!(Region::of("CN_b6bbd94b59cdb5df8391642c1509b7fe"), Region::China);
        assert_eq!(Region::of("OPPO_CN_b6bbd94b59cdb5df8391642c1509b7fe"), Region::China);
        assert_eq!(Region::of("IN_b6bbd94b59cdb5df8391642c1509b7fe"), Region::Overseas);
        assert_eq!(Region::of("OPPO_EU_b6bbd94b59cdb5df8391642c1509b7fe"), Region::Overseas);
    }

    #[test]
    fn ids_of_the_other_region_are_not_sent_nor_pruned() {
        let o = oppo();
        let ids = tokens(&[REG_ID, "IN_b6bbd94b59cdb5df8391642c1509b7fe"]);
        let r = o.request(&push(), &ids, Some(&auth()), at_ms(0)).expect("request");
        assert!(r.url.path().ends_with("/unicast"), "only the China id is sent");
        let body = br#"{"code":0,"message":"","data":{"messageId":"30012345-1-1-5f0c4d2a1b3e"}}"#;
        let out = o.classify(&ids, StatusCode::OK, &HeaderMap::new(), body);
        assert_eq!(out, vec![Outcome::Delivered, Outcome::Fatal { reason: "wrong_region" }]);
        let overseas_only = tokens(&["IN_b6bbd94b59cdb5df8391642c1509b7fe"]);
        assert!(o.request(&push(), &overseas_only, Some(&auth()), at_ms(0)).is_err());
    }

    #[test]
    fn payload_is_the_content_in_chars() {
        let o = oppo();
        let mut p = push();
        p.body = "你好".into();
        assert_eq!(o.payload_size(&p), 2);
        assert_eq!(o.payload_limit(&p), 200);
    }

    fn unicast(body: &str) -> Outcome {
        fixtures::classify_one(&oppo(), token(REG_ID), 200, body)
    }

    #[test]
    fn every_row_of_the_oppo_answer_table_maps_to_its_outcome() {
        use Outcome::*;
        let retry = |secs: Option<u64>, reason| Retry { after: secs.map(Duration::from_secs), reason };
        let rows: Vec<(i64, Outcome)> = vec![
            (0, Delivered),
            (-1, retry(None, "service_unavailable")),
            (-2, retry(Some(1), "flow_control")),
            (11, RefreshAuth { reason: "invalid_auth_token" }),
            (12, Fatal { reason: "method_not_allowed" }),
            (13, retry(Some(60), "call_limit")),
            (14, Fatal { reason: "invalid_app_key" }),
            (15, Fatal { reason: "missing_app_key" }),
            (16, Fatal { reason: "invalid_signature" }),
            (17, Fatal { reason: "missing_signature" }),
            (18, Fatal { reason: "missing_timestamp" }),
            (19, Fatal { reason: "invalid_timestamp" }),
            (20, Fatal { reason: "method_or_version" }),
            (24, Fatal { reason: "method_or_version" }),
            (25, Fatal { reason: "bad_encoding" }),
            (26, Fatal { reason: "ip_blacklisted" }),
            (27, Fatal { reason: "access_denied" }),
            (28, Fatal { reason: "app_disabled" }),
            (29, RefreshAuth { reason: "missing_auth_token" }),
            (30, Fatal { reason: "no_push_permission" }),
            (31, Fatal { reason: "data_not_exist" }),
            (32, Delivered),
            (33, QuotaExhausted { until: None, reason: "daily_quota" }),
            (34, Fatal { reason: "picture_quota" }),
            (40, Fatal { reason: "missing_argument" }),
            (41, Fatal { reason: "invalid_argument" }),
            (51, Fatal { reason: "invalid_picture" }),
            (54, Fatal { reason: "template_missing" }),
            (55, retry(Some(1), "frequency_limit")),
            (59, Fatal { reason: "no_action_permission" }),
            (67, Fatal { reason: "invalid_category" }),
            (10000, InvalidToken { reason: "invalid_registration_id", since: None }),
            (10001, Fatal { reason: "business_error" }),
            (20000, Fatal { reason: "business_error" }),
            (99, Fatal { reason: "unknown" }),
        ];
        for (code, expected) in rows {
            let body = json!({ "code": code, "message": "recorded" }).to_string();
            assert_eq!(unicast(&body), expected, "code {code}");
        }
    }

    #[test]
    fn recorded_unicast_answers_of_the_doc_are_classified() {
        assert_eq!(
            unicast(r#"{"code":0,"message":"","data":{"messageId":"30012345-1-1-5f0c4d2a1b3e8f7a6c5d4e3f"}}"#),
            Outcome::Delivered
        );
        assert_eq!(
            unicast(r#"{"code":10000,"message":"registration_id格式不正确"}"#),
            Outcome::InvalidToken { reason: "invalid_registration_id", since: None }
        );
        assert_eq!(
            unicast(r#"{"code":"33","message":"quota"}"#),
            Outcome::QuotaExhausted { until: None, reason: "daily_quota" }
        );
    }

    #[test]
    fn transport_like_answers_are_retried() {
        let o = oppo();
        let t = tokens(&[REG_ID]);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            o.classify(&t, StatusCode::INTERNAL_SERVER_ERROR, &headers, b"oops"),
            vec![Outcome::Retry { after: Some(Duration::from_secs(7)), reason: "http_5xx" }]
        );
        assert_eq!(
            o.classify(&t, StatusCode::NOT_FOUND, &HeaderMap::new(), b""),
            vec![Outcome::Retry { after: None, reason: "http_status" }]
        );
        for body in ["", "not json", r#"{"message":"no code"}"#] {
            assert_eq!(
                o.classify(&t, StatusCode::OK, &HeaderMap::new(), body.as_bytes()),
                vec![Outcome::Retry { after: None, reason: "bad_answer" }],
                "{body}"
            );
        }
    }

    #[test]
    fn a_batch_answer_prunes_exactly_the_ids_it_names() {
        let ids = [
            "CN_11111111111111111111111111111111",
            "CN_22222222222222222222222222222222",
            "CN_33333333333333333333333333333333",
            "CN_44444444444444444444444444444444",
        ];
        // Entries out of order, matched by registrationId; the fourth is not mentioned.
        let body = json!({
            "code": 0,
            "message": "success",
            "data": [
                {
                    "messageId": "30012345-1-1-aaa", "registrationId": ids[1],
                    "errorCode": 10000, "errorMessage": "registration_id格式不正确"
                },
                { "messageId": "30012345-1-1-bbb", "registrationId": ids[0] },
                { "messageId": "30012345-1-1-ccc", "registrationId": ids[2], "errorCode": 33, "errorMessage": "quota" }
            ]
        })
        .to_string();
        let out = oppo().classify(&tokens(&ids), StatusCode::OK, &HeaderMap::new(), body.as_bytes());
        assert_eq!(
            out,
            vec![
                Outcome::Delivered,
                Outcome::InvalidToken { reason: "invalid_registration_id", since: None },
                Outcome::QuotaExhausted { until: None, reason: "daily_quota" },
                Outcome::Retry { after: None, reason: "no_result" },
            ]
        );
    }

    #[test]
    fn a_top_level_code_applies_to_the_whole_batch_but_never_prunes_it() {
        let ids = tokens(&["CN_11111111111111111111111111111111", "CN_22222222222222222222222222222222"]);
        let o = oppo();
        let quota = o.classify(&ids, StatusCode::OK, &HeaderMap::new(), br#"{"code":33,"message":"quota"}"#);
        assert_eq!(quota, vec![Outcome::QuotaExhausted { until: None, reason: "daily_quota" }; 2]);
        let expired =
            o.classify(&ids, StatusCode::OK, &HeaderMap::new(), br#"{"code":11,"message":"Invalid AuthToken"}"#);
        assert_eq!(expired, vec![Outcome::RefreshAuth { reason: "invalid_auth_token" }; 2]);
        let unnamed = o.classify(&ids, StatusCode::OK, &HeaderMap::new(), br#"{"code":10000,"message":"bad"}"#);
        assert_eq!(unnamed, vec![Outcome::Fatal { reason: "invalid_target_unnamed" }; 2]);
    }

    #[test]
    fn the_master_secret_never_shows_in_debug() {
        assert!(!format!("{:?}", oppo()).contains(MASTER_SECRET));
        assert!(!format!("{:?}", config()).contains(MASTER_SECRET));
    }

    fn table(extra: &str) -> toml::Table {
        let text = format!("app_key = \"{APP_KEY}\"\nmaster_secret = \"{MASTER_SECRET}\"\n{extra}");
        text.parse().expect("toml")
    }

    fn build(extra: &str) -> Result<VendorBuild, Vec<Problem>> {
        let dir = std::env::temp_dir();
        from_config(&table(extra), &CredentialContext { name: "test-oppo", data_dir: &dir })
    }

    #[test]
    fn config_defaults_to_the_china_host_and_the_im_category() {
        let built = build("").expect("builds");
        let r = built.vendor.request(&push(), &tokens(&[REG_ID]), Some(&auth()), at_ms(0)).expect("request");
        assert!(r.url.as_str().starts_with("https://api.push.oppomobile.com/"));
        let message: Value = serde_json::from_str(&form(&r)["message"]).expect("json");
        assert_eq!(message["notification"]["category"], "IM");
        assert_eq!(message["notification"]["notify_level"], 2);

        let intl = build("region = \"intl\"").expect("builds");
        let r =
            intl.vendor.request(&push(), &tokens(&["IN_b6bbd94b59cdb5df8391642c1509b7fe"]), Some(&auth()), at_ms(0));
        assert!(r.expect("request").url.as_str().starts_with("https://api-intl.push.oppomobile.com/"));
    }

    #[test]
    fn config_problems_name_their_field_and_never_the_secret() {
        let problems =
            |extra: &str| build(extra).err().expect("refused").into_iter().map(|p| p.field).collect::<Vec<_>>();
        assert_eq!(problems("notify_level = 3"), vec!["notify_level"]);
        assert_eq!(problems("category = \"\"\nnotify_level = 2"), vec!["notify_level"]);
        assert_eq!(problems("region = \"eu\""), vec!["region"]);
        assert_eq!(problems("endpoint = \"ftp://x\""), vec!["endpoint"]);
        assert_eq!(problems("badge = 1"), vec!["badge"]);
        let missing: toml::Table = "app_key = \"k\"".parse().expect("toml");
        let dir = std::env::temp_dir();
        let err = from_config(&missing, &CredentialContext { name: "x", data_dir: &dir }).err().expect("refused");
        assert_eq!(err[0].field, "master_secret");
        let all = format!("{:?}", build("notify_level = 3").err());
        assert!(!all.contains(MASTER_SECRET));
    }
}
