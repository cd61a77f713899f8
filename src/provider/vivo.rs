//! vivo Push (vivo / iQOO, FuntouchOS / OriginOS): the wire format, the signed auth call and
//! the answer table of `docs/vendors/vivo.md`.
//!
//! Owns: the auth call (`POST /message/auth`, JSON `appId` (integer), `appKey`, `timestamp` in
//! ms and `sign` = lower-case hex MD5 of `appId + appKey + timestamp + appSecret`) and its
//! answer; the single send (`POST /message/send` with the token in the `authToken` header and a
//! `requestId` stable across retries of one push to one device); the group calls
//! (`saveListPayload`, `pushToList`); the IM class fields; the text limits in width units
//! (CJK = 2); and the mapping of every documented `result` and `invalidUser(s)` status to an
//! [`Outcome`].
//!
//! IM class fields (credential keys, vivo.md §3.1):
//! - `classification` (default `1` = system message, 系统消息): system messages have no
//!   per-device cap and no 07:00–23:00 window; `0` = operation (运营) message, 2 a day per
//!   device. pushd always sends it: the default of an absent value is disputed.
//! - `category` (default `"IM"`, `""` to omit): the 2023 second-level class; `IM` belongs to the
//!   system class.
//! - `push_mode` (default `0` = live; `1` = test devices only).
//!
//! Group fan-out (vivo.md §3.2): a single device goes through `/message/send`; a batch of 2 to
//! [`LIST_MAX_TARGETS`] devices with the same content (same [`Vendor::batch_key`]: the hash of
//! the saved payload, which has no badge) goes through the shared layer's prepare step:
//! [`Vendor::prepare`] uploads the payload (`saveListPayload`, `requestId` derived from the
//! payload so it is stable per message), [`Vendor::parse_prepare`] reads its `taskId`, and
//! [`Vendor::request_prepared`] sends `pushToList` with the regIds, the `taskId` and a
//! `requestId` of its own (stable across the batch's retries). Its answer is read per regId:
//! the ones listed in `invalidUsers` (or `data`) get their status's outcome, every other one is
//! delivered; a non-zero `result` applies to the whole list, except 10302 (an invalid regId,
//! unnamed): only the regIds that do not look like one are pruned, the rest retried
//! (`list_reg_id_rejected`), since pruning up to 1000 good tokens for one bad one is worse;
//! and 10151 (the `taskId` is unknown, e.g. expired): [`Vendor::prepared_expired`] has the
//! shared layer upload the payload again (with a `requestId` derived from the dead task, so
//! vivo's dedup cannot answer it) and resend, once per batch; a second 10151 is Fatal.
//!
//! Deliberately not here: caching the auth token (the shared auth cache; [`AUTH_REFRESH_AFTER`]
//! tells it when), grouping pushes into batches and keeping a batch's `taskId` for its retries
//! (the shared layer), retries, parking on the daily quota, statistics, receipts
//! (`extra.callback`).
//!
//! ```text
//! appId + appKey + timestamp + appSecret ─md5─▶ POST /message/auth ─▶ parse_auth ─▶ authToken
//! VendorPush + regId ─▶ POST /message/send  (header authToken, JSON body, requestId)
//! {result, desc, taskId, invalidUser{status,userid}} (HTTP 200) ─▶ Outcome
//! VendorPush ─▶ POST /message/saveListPayload (no regId, TTL ≥ 900 s) ─▶ parse_prepare ─▶ taskId
//! regIds (2..1000) + taskId ─▶ POST /message/pushToList ─▶ {result, invalidUsers[…]} ─▶ Outcome per regId
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::credential::{fields, CredentialContext, Problem, VendorBuild};
use super::{AuthPlan, AuthToken, BuildError, Outcome, Vendor, VendorPush, VendorRequest};
use crate::model::{PushType, Timestamp, Token, VendorKind};

/// vivo's one API host.
pub const DEFAULT_ENDPOINT: &str = "https://api-push.vivo.com.cn";

/// The auth call, relative to the endpoint.
pub const AUTH_PATH: &str = "message/auth";

/// The single send, relative to the endpoint.
pub const SEND_PATH: &str = "message/send";

/// The group payload upload (answers a `taskId`), relative to the endpoint.
pub const SAVE_LIST_PATH: &str = "message/saveListPayload";

/// The send of a saved payload to a list of regIds, relative to the endpoint.
pub const PUSH_TO_LIST_PATH: &str = "message/pushToList";

/// Most regIds one `pushToList` takes (and so `max_batch`); fewer than
/// [`LIST_MIN_TARGETS`] go through `/message/send`.
pub const LIST_MAX_TARGETS: usize = 1000;

/// Fewest regIds one `pushToList` takes.
pub const LIST_MIN_TARGETS: usize = 2;

/// `timeToLive` bounds of a saved group payload, in seconds.
pub const LIST_TTL_RANGE_SECS: (u64, u64) = (900, 604_800);

/// Length of a regId as the SDK checks it. Unverified whether newer regIds can differ: pushd
/// only uses it to tell which regIds of a list vivo refused as a whole (10302) look malformed.
pub const REG_ID_LEN: usize = 23;

/// `result` for an invalid regId (per single send: prune it).
pub const INVALID_REG_ID_RESULT: i64 = 10302;

/// `result` of a `pushToList` whose `taskId` vivo does not know: documented as "taskId empty";
/// that an expired task answers it too is unverified. pushd uploads the payload again once per
/// batch ([`Vendor::prepared_expired`]); a second one is Fatal.
pub const TASK_UNKNOWN_RESULT: i64 = 10151;

/// The header carrying the auth token on every call but auth.
pub const AUTH_HEADER: &str = "authtoken";

/// A token lives 24 h; vivo asks callers to refresh every 1–2 h (auth is limited to 10 calls/s).
pub const AUTH_REFRESH_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// Longest `title`, in width units (CJK = 2).
pub const TITLE_MAX_WIDTH: usize = 40;

/// Longest `content`, in width units (CJK = 2).
pub const CONTENT_MAX_WIDTH: usize = 100;

/// `timeToLive` bounds of a single send, in seconds.
pub const TTL_RANGE_SECS: (u64, u64) = (60, 604_800);

/// Most `clientCustomMap` pairs vivo accepts.
pub const CUSTOM_MAP_MAX_PAIRS: usize = 10;

/// Longest `clientCustomMap`, keys plus values, in chars.
pub const CUSTOM_MAP_MAX_CHARS: usize = 1024;

/// The IM classification pushd sends by default: 1 = system message.
pub const DEFAULT_CLASSIFICATION: u8 = 1;

/// The IM category pushd sends by default.
pub const DEFAULT_CATEGORY: &str = "IM";

/// `result` for a rejected `authToken` (invalid or expired). Unverified: the SDK's enum has no
/// meaning for 10000; it is the only unassigned code below the documented ones and the usual
/// reading, so pushd refreshes once on it and treats a second one as fatal.
pub const AUTH_INVALID_RESULT: i64 = 10000;

/// `result` for "too many calls per second" (the auth call's 10/s, the send QPS). Unverified:
/// vivo documents the limits but no code; pushd retries this one after
/// [`RATE_LIMIT_RETRY_AFTER`], like an HTTP 429.
pub const RATE_LIMITED_RESULT: i64 = 10071;

/// The wait before retrying a rate-limited call (auth is limited per second).
pub const RATE_LIMIT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Daily send total exceeded (send, pushToList): not again today.
pub const DAILY_QUOTA_RESULT: i64 = 10070;

/// Daily group-payload quota exceeded (saveListPayload): not again today.
pub const LIST_QUOTA_RESULT: i64 = 10252;

/// `invalidUser.status` values that mean the regId is dead: 1 unknown, 2 uninstalled /
/// unsubscribed / notifications off, 3 inactive for more than 90 days. Unverified (the SDK
/// carries the field without documenting values); 3 is pruned too since such a device
/// re-registers with a fresh regId when the app starts again.
pub const DEAD_TARGET_STATUSES: &[i64] = &[1, 2, 3];

/// `invalidUser.status` 4: not a registered test device (with `pushMode` 1). Unverified.
pub const NOT_TEST_DEVICE_STATUS: i64 = 4;

/// Configuration of one vivo credential.
#[derive(Clone)]
pub struct VivoConfig {
    /// Base URL (or the loopback mock).
    pub endpoint: url::Url,
    /// The operator's appId (an integer on the wire).
    pub app_id: u64,
    /// The operator's appKey.
    pub app_key: String,
    /// The operator's appSecret. Never logged.
    pub app_secret: String,
    /// 0 operation, 1 system message.
    pub classification: u8,
    /// The second-level class; `None` omits it.
    pub category: Option<String>,
    /// 0 live, 1 test.
    pub push_mode: u8,
    /// An intent URI to open (`skipType` 4); `None` opens the app's home (`skipType` 1).
    pub skip_content: Option<String>,
}

impl fmt::Debug for VivoConfig {
    /// Never prints the app secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VivoConfig")
            .field("endpoint", &self.endpoint.as_str())
            .field("app_id", &self.app_id)
            .field("app_key", &self.app_key)
            .field("app_secret", &"<redacted>")
            .field("classification", &self.classification)
            .field("category", &self.category)
            .field("push_mode", &self.push_mode)
            .field("skip_content", &self.skip_content)
            .finish()
    }
}

/// The vivo vendor: builds requests and classifies answers for one credential.
pub struct Vivo {
    auth_url: url::Url,
    send_url: url::Url,
    save_list_url: url::Url,
    push_to_list_url: url::Url,
    app_id: u64,
    app_key: String,
    app_secret: String,
    classification: u8,
    category: Option<String>,
    push_mode: u8,
    skip_content: Option<String>,
}

impl fmt::Debug for Vivo {
    /// Never prints the app secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vivo")
            .field("send_url", &self.send_url.as_str())
            .field("app_id", &self.app_id)
            .field("classification", &self.classification)
            .field("category", &self.category)
            .field("push_mode", &self.push_mode)
            .finish_non_exhaustive()
    }
}

/// The auth call's body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthBody<'a> {
    app_id: u64,
    app_key: &'a str,
    timestamp: i64,
    sign: String,
}

fn no_pairs(map: &&BTreeMap<String, String>) -> bool {
    map.is_empty()
}

/// `/message/send` body (vivo.md §3.1); without `regId`, the `saveListPayload` body (§3.2).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SendBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reg_id: Option<&'a str>,
    /// 1 none, 2 sound, 3 vibrate, 4 sound + vibrate.
    notify_type: u8,
    title: String,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_to_live: Option<u64>,
    /// 1 open the app's home, 4 open an app page (intent URI in `skipContent`).
    skip_type: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_content: Option<&'a str>,
    /// -1 any network.
    network_type: i8,
    #[serde(skip_serializing_if = "no_pairs")]
    client_custom_map: &'a BTreeMap<String, String>,
    request_id: String,
    classification: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    push_mode: u8,
}

/// `/message/pushToList` body (vivo.md §3.2).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PushToListBody<'a> {
    reg_ids: Vec<&'a str>,
    task_id: &'a str,
    request_id: String,
}

/// Lower-case hex MD5 of `input`.
fn md5_hex(input: &str) -> String {
    format!("{:x}", Md5::digest(input.as_bytes()))
}

/// The auth `sign` (vivo.md §2): lower-case hex MD5 of `appId + appKey + timestamp + appSecret`.
pub fn sign(app_id: u64, app_key: &str, timestamp_ms: i64, app_secret: &str) -> String {
    md5_hex(&format!("{app_id}{app_key}{timestamp_ms}{app_secret}"))
}

/// Width units of `s` as pushd budgets them: ASCII counts 1, everything else 2. vivo counts CJK
/// as 2; counting every non-ASCII char (emoji, full-width punctuation) as 2 can only err short.
pub fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    if c.is_ascii() {
        1
    } else {
        2
    }
}

/// `s` cut to at most `max` width units, with "…" (2 units) where it was cut.
fn truncate_width(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    let budget = max.saturating_sub(char_width('…'));
    let mut used = 0;
    let mut out = String::new();
    for c in s.chars() {
        used += char_width(c);
        if used > budget {
            break;
        }
        out.push(c);
    }
    if max >= char_width('…') {
        out.push('…');
    }
    out
}

/// The `requestId` of one push to one device: the same for every retry (vivo drops a repeated
/// request), different for every message and device. A UUID-shaped MD5, 36 chars (limit 64).
fn request_id(push: &VendorPush, token: &Token) -> String {
    let identity = match push.data.get(crate::render::DATA_MESSAGE) {
        Some(msg) => msg.clone(),
        None => format!("{}\n{}\n{:?}", push.title, push.body, push.data),
    };
    uuid_shaped(&md5_hex(&format!("{identity}\n{}", token.as_str())))
}

/// A 32-char hex digest written as a UUID (36 chars, within the 64 of `requestId`).
fn uuid_shaped(h: &str) -> String {
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The `requestId` of one `pushToList`: the same for every retry of this list with this task,
/// different for every other list (a chunk of the same message) or task.
fn list_request_id(task_id: &str, reg_ids: &[&str]) -> String {
    uuid_shaped(&md5_hex(&format!("pushToList\n{task_id}\n{}", reg_ids.join(","))))
}

/// Whether `reg_id` has the shape the SDK checks (23 ASCII letters or digits).
fn looks_like_reg_id(reg_id: &str) -> bool {
    reg_id.len() == REG_ID_LEN && reg_id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The Retry outcome of a non-200 answer.
fn http_outcome(status: StatusCode, headers: &HeaderMap) -> Outcome {
    let reason = if status.is_server_error() { "http_5xx" } else { "http_status" };
    Outcome::Retry { after: super::retry_after(headers), reason }
}

/// A number that may come as a JSON number or a decimal string.
fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The `invalidUser` status reported for `reg_id`: the `invalidUser` object of a send, or an
/// entry of the `invalidUsers` / `data` list (the SDK reads both). An `invalidUser` without
/// `userid` is about the only target of a single send (`only`), never about a whole list.
fn invalid_user_status(answer: &Value, reg_id: &str, only: bool) -> Option<i64> {
    let names = |e: &Value| e.get("userid").and_then(Value::as_str).map_or(only, |u| u == reg_id);
    if let Some(one) = answer.get("invalidUser").filter(|v| v.is_object()) {
        if names(one) {
            return one.get("status").and_then(int);
        }
    }
    ["invalidUsers", "data"]
        .iter()
        .filter_map(|key| answer.get(*key).and_then(Value::as_array))
        .flatten()
        .find(|e| e.get("userid").and_then(Value::as_str) == Some(reg_id))
        .and_then(|e| e.get("status").and_then(int))
}

/// The outcome of an `invalidUser` status for an accepted request.
pub fn outcome_for_invalid_user(status: i64) -> Outcome {
    match status {
        1 if DEAD_TARGET_STATUSES.contains(&1) => Outcome::InvalidToken { reason: "unknown_reg_id", since: None },
        2 if DEAD_TARGET_STATUSES.contains(&2) => Outcome::InvalidToken { reason: "unsubscribed", since: None },
        3 if DEAD_TARGET_STATUSES.contains(&3) => Outcome::InvalidToken { reason: "inactive", since: None },
        NOT_TEST_DEVICE_STATUS => Outcome::Fatal { reason: "not_test_device" },
        _ => Outcome::Fatal { reason: "invalid_user" },
    }
}

/// The outcome of a `result` code (vivo.md §5).
pub fn outcome_for_result(result: i64) -> Outcome {
    let fatal = |reason| Outcome::Fatal { reason };
    match result {
        0 => Outcome::Delivered,
        AUTH_INVALID_RESULT => Outcome::RefreshAuth { reason: "auth_token_invalid" },
        RATE_LIMITED_RESULT => Outcome::Retry { after: Some(RATE_LIMIT_RETRY_AFTER), reason: "rate_limited" },
        DAILY_QUOTA_RESULT => Outcome::QuotaExhausted { until: None, reason: "daily_quota" },
        LIST_QUOTA_RESULT => Outcome::QuotaExhausted { until: None, reason: "list_payload_quota" },
        INVALID_REG_ID_RESULT => Outcome::InvalidToken { reason: "invalid_reg_id", since: None },
        10050 => fatal("no_target"),
        10054 => fatal("invalid_notify_type"),
        10055 => fatal("title_empty"),
        10056 => fatal("title_too_long"),
        10057 => fatal("content_empty"),
        10058 => fatal("content_too_long"),
        10059 => fatal("invalid_ttl"),
        10060..=10064 | 10068 | 10069 => fatal("invalid_skip"),
        10065 => fatal("invalid_network_type"),
        10066 => fatal("custom_map_too_many"),
        10067 => fatal("custom_map_invalid"),
        10094 => fatal("app_id_mismatch"),
        10150 => fatal("list_empty"),
        TASK_UNKNOWN_RESULT => fatal("task_id_empty"),
        10153 | 10154 => fatal("list_size"),
        10254 => fatal("all_push_limit"),
        10301 => fatal("alias_too_long"),
        10305 | 10306 => fatal("callback_too_long"),
        10352 => fatal("request_id_empty"),
        10353 => fatal("request_id_too_long"),
        10471 | 10473 => fatal("statistics_task_ids"),
        11000 => fatal("invalid_classification"),
        _ => fatal("unknown"),
    }
}

impl Vivo {
    /// Validates the configuration and derives the URLs.
    pub fn new(cfg: VivoConfig) -> Result<Vivo, BuildError> {
        const BAD_ENDPOINT: BuildError = BuildError::Payload("vivo endpoint must be an http(s) base URL");
        if !matches!(cfg.endpoint.scheme(), "https" | "http") || cfg.endpoint.cannot_be_a_base() {
            return Err(BAD_ENDPOINT);
        }
        let join = |path: &str| -> Result<url::Url, BuildError> {
            let mut url = cfg.endpoint.clone();
            url.path_segments_mut().map_err(|_| BAD_ENDPOINT)?.pop_if_empty().extend(path.split('/'));
            Ok(url)
        };
        if cfg.app_key.trim().is_empty() || cfg.app_secret.trim().is_empty() {
            return Err(BuildError::Signing("vivo appKey and appSecret must not be empty"));
        }
        if cfg.classification > 1 || cfg.push_mode > 1 {
            return Err(BuildError::Payload("vivo classification and push_mode are 0 or 1"));
        }
        Ok(Vivo {
            auth_url: join(AUTH_PATH)?,
            send_url: join(SEND_PATH)?,
            save_list_url: join(SAVE_LIST_PATH)?,
            push_to_list_url: join(PUSH_TO_LIST_PATH)?,
            app_id: cfg.app_id,
            // vivo signs the trimmed strings (doc 2.9.2).
            app_key: cfg.app_key.trim().to_owned(),
            app_secret: cfg.app_secret.trim().to_owned(),
            classification: cfg.classification,
            category: cfg.category,
            push_mode: cfg.push_mode,
            skip_content: cfg.skip_content,
        })
    }

    fn auth_request(&self, now: Timestamp) -> Result<VendorRequest, BuildError> {
        let timestamp = now.timestamp_millis();
        let body = AuthBody {
            app_id: self.app_id,
            app_key: &self.app_key,
            timestamp,
            sign: sign(self.app_id, &self.app_key, timestamp, &self.app_secret),
        };
        let body = serde_json::to_vec(&body).map_err(|_| BuildError::Signing("vivo auth body could not be encoded"))?;
        Ok(VendorRequest {
            method: Method::POST,
            url: self.auth_url.clone(),
            headers: json_headers(),
            body: body.into(),
        })
    }

    /// The body of a single send to `token` (TTL 60 s .. 7 days).
    fn send_body<'a>(&'a self, push: &'a VendorPush, token: &'a Token) -> Result<SendBody<'a>, BuildError> {
        let mut body = self.content_body(push, TTL_RANGE_SECS)?;
        body.reg_id = Some(token.as_str());
        body.request_id = request_id(push, token);
        Ok(body)
    }

    /// The `saveListPayload` body (TTL 15 min .. 7 days) and its encoding without `requestId`:
    /// what a group batch shares. Its `requestId` is derived from that encoding, so it is the
    /// same for every upload of this message's content (every chunk, every retry); an upload
    /// replacing the `expired` task derives it from that task too, so it is a new request.
    fn list_payload<'a>(
        &'a self,
        push: &'a VendorPush,
        expired: Option<&str>,
    ) -> Result<(SendBody<'a>, Vec<u8>), BuildError> {
        let mut body = self.content_body(push, LIST_TTL_RANGE_SECS)?;
        let content =
            serde_json::to_vec(&body).map_err(|_| BuildError::Payload("vivo message could not be encoded"))?;
        let replacing = expired.map(|task_id| format!("\nreplacing {task_id}")).unwrap_or_default();
        let identity = format!("saveListPayload\n{}{replacing}", String::from_utf8_lossy(&content));
        body.request_id = uuid_shaped(&md5_hex(&identity));
        Ok((body, content))
    }

    /// Everything of a send but the target and the `requestId` (left empty).
    fn content_body<'a>(&'a self, push: &'a VendorPush, ttl: (u64, u64)) -> Result<SendBody<'a>, BuildError> {
        if push.push_type == PushType::Silent {
            return Err(BuildError::Payload("vivo has no silent (pass-through) pushes"));
        }
        if push.title.is_empty() || push.body.is_empty() {
            return Err(BuildError::Payload("vivo requires a title and a content"));
        }
        let pairs = push.data.len();
        let chars: usize = push.data.iter().map(|(k, v)| k.chars().count() + v.chars().count()).sum();
        if pairs > CUSTOM_MAP_MAX_PAIRS || chars > CUSTOM_MAP_MAX_CHARS {
            return Err(BuildError::Payload("vivo clientCustomMap takes at most 10 pairs and 1024 chars"));
        }
        let ring = push.sound.is_some() || push.push_type == PushType::Voip;
        Ok(SendBody {
            reg_id: None,
            notify_type: if ring { 4 } else { 1 },
            title: truncate_width(&push.title, TITLE_MAX_WIDTH),
            content: truncate_width(&push.body, CONTENT_MAX_WIDTH),
            time_to_live: push.ttl.map(|t| t.as_secs().clamp(ttl.0, ttl.1)),
            skip_type: if self.skip_content.is_some() { 4 } else { 1 },
            skip_content: self.skip_content.as_deref(),
            network_type: -1,
            client_custom_map: &push.data,
            request_id: String::new(),
            classification: self.classification,
            category: self.category.as_deref(),
            push_mode: self.push_mode,
        })
    }

    /// A JSON POST to `url` carrying the `authToken` header.
    fn authed_post(
        &self,
        url: &url::Url,
        auth: Option<&AuthToken>,
        body: &impl Serialize,
    ) -> Result<VendorRequest, BuildError> {
        let auth = auth.ok_or(BuildError::Signing("vivo sends need an authToken"))?;
        let body = serde_json::to_vec(body).map_err(|_| BuildError::Payload("vivo message could not be encoded"))?;
        let mut headers = json_headers();
        let value = HeaderValue::from_str(&auth.value)
            .map_err(|_| BuildError::Signing("vivo authToken is not a valid header value"))?;
        headers.insert(HeaderName::from_static(AUTH_HEADER), value);
        Ok(VendorRequest { method: Method::POST, url: url.clone(), headers, body: Bytes::from(body) })
    }
}

/// The outcomes of a list vivo refused as a whole with 10302 (a regId is invalid, which one
/// unsaid): pruning the whole list would drop up to 1000 good tokens. The regIds that do not
/// look like regIds are pruned and the others retried without them (the retry keeps the
/// `taskId`); when none looks malformed, the list is Fatal (pushd cannot tell which one).
fn list_reg_id_rejected(tokens: &[Token]) -> Vec<Outcome> {
    let malformed = tokens.iter().filter(|t| !looks_like_reg_id(t.as_str())).count();
    let others = if malformed == 0 {
        Outcome::Fatal { reason: "list_reg_id_rejected" }
    } else {
        Outcome::Retry { after: None, reason: "list_reg_id_rejected" }
    };
    let outcome = |t: &Token| {
        if looks_like_reg_id(t.as_str()) {
            others.clone()
        } else {
            Outcome::InvalidToken { reason: "invalid_reg_id", since: None }
        }
    };
    tokens.iter().map(outcome).collect()
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json;charset=UTF-8"));
    headers
}

/// `{result, desc, …}`; `result` may come as a number or a string.
fn parse_answer(body: &[u8]) -> Option<(i64, Value)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let result = int(v.get("result")?)?;
    Some((result, v))
}

impl Vendor for Vivo {
    fn kind(&self) -> VendorKind {
        VendorKind::Vivo
    }

    fn auth_plan(&self, now: Timestamp) -> AuthPlan {
        AuthPlan::Remote(self.auth_request(now))
    }

    fn parse_auth(&self, status: StatusCode, body: &[u8], now: Timestamp) -> Result<AuthToken, Outcome> {
        if status != StatusCode::OK {
            return Err(Outcome::Retry { after: None, reason: "auth_unavailable" });
        }
        let Some((result, answer)) = parse_answer(body) else {
            return Err(Outcome::Retry { after: None, reason: "auth_bad_answer" });
        };
        match result {
            0 => {
                let token = answer.get("authToken").and_then(Value::as_str).unwrap_or_default();
                if token.is_empty() {
                    return Err(Outcome::Retry { after: None, reason: "auth_bad_answer" });
                }
                Ok(AuthToken { value: token.to_owned(), refresh_at: now + AUTH_REFRESH_AFTER })
            }
            RATE_LIMITED_RESULT => {
                Err(Outcome::Retry { after: Some(RATE_LIMIT_RETRY_AFTER), reason: "auth_rate_limited" })
            }
            // 102xx: a missing or invalid appId, appKey, timestamp or sign.
            _ => Err(Outcome::Fatal { reason: "auth_rejected" }),
        }
    }

    /// The content in width units: what the render layer may shorten. The title is cut to
    /// [`TITLE_MAX_WIDTH`] when the request is built.
    fn payload_limit(&self, _push: &VendorPush) -> usize {
        CONTENT_MAX_WIDTH
    }

    fn payload_size(&self, push: &VendorPush) -> usize {
        width(&push.body)
    }

    /// A group batch needs no badge: the hash of the saved payload, so a group message to many
    /// users (each with their own badge) goes out as one list push.
    fn batch_key(&self, push: &VendorPush) -> Option<u64> {
        let (_, content) = self.list_payload(push, None).ok()?;
        Some(super::batch_key_of(&content))
    }

    fn max_batch(&self) -> usize {
        LIST_MAX_TARGETS
    }

    fn request(
        &self,
        push: &VendorPush,
        tokens: &[Token],
        auth: Option<&AuthToken>,
        _now: Timestamp,
    ) -> Result<VendorRequest, BuildError> {
        let [token] = tokens else {
            return Err(BuildError::Payload("vivo /message/send takes exactly one regId"));
        };
        self.authed_post(&self.send_url, auth, &self.send_body(push, token)?)
    }

    /// `saveListPayload` for a batch of 2 or more regIds; `None` for one (`/message/send`).
    fn prepare(
        &self,
        push: &VendorPush,
        tokens: &[Token],
        auth: Option<&AuthToken>,
        expired: Option<&str>,
        _now: Timestamp,
    ) -> Option<Result<VendorRequest, BuildError>> {
        if tokens.len() < LIST_MIN_TARGETS {
            return None;
        }
        let upload = self.list_payload(push, expired);
        Some(upload.and_then(|(body, _)| self.authed_post(&self.save_list_url, auth, &body)))
    }

    /// The `taskId` of a `saveListPayload` answer. Errors classify as for a send: the daily
    /// quotas (10070, 10252) park, 10000 refreshes the token, the rate limit retries, a missing
    /// `taskId` or an unreadable answer retries; every other code (10302 included: the upload
    /// names no regId) is Fatal for the batch.
    fn parse_prepare(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<String, Outcome> {
        if status != StatusCode::OK {
            return Err(http_outcome(status, headers));
        }
        let bad_answer = Outcome::Retry { after: None, reason: "bad_answer" };
        let Some((result, answer)) = parse_answer(body) else {
            return Err(bad_answer);
        };
        if result == 0 {
            let task = answer.get("taskId").and_then(super::code_text).filter(|t| !t.is_empty());
            return task.ok_or(bad_answer);
        }
        Err(match outcome_for_result(result) {
            o @ (Outcome::QuotaExhausted { .. } | Outcome::RefreshAuth { .. } | Outcome::Retry { .. }) => o,
            Outcome::Fatal { reason } => Outcome::Fatal { reason },
            Outcome::Delivered | Outcome::InvalidToken { .. } => Outcome::Fatal { reason: "list_payload_rejected" },
        })
    }

    /// `pushToList`: the saved payload `prepared` to 2..=1000 regIds, with a `requestId` of its
    /// own.
    fn request_prepared(
        &self,
        _push: &VendorPush,
        tokens: &[Token],
        auth: Option<&AuthToken>,
        prepared: &str,
        _now: Timestamp,
    ) -> Result<VendorRequest, BuildError> {
        if !(LIST_MIN_TARGETS..=LIST_MAX_TARGETS).contains(&tokens.len()) {
            return Err(BuildError::Payload("vivo pushToList takes 2 to 1000 regIds"));
        }
        if prepared.is_empty() {
            return Err(BuildError::Payload("vivo pushToList needs a taskId"));
        }
        let reg_ids: Vec<&str> = tokens.iter().map(Token::as_str).collect();
        let request_id = list_request_id(prepared, &reg_ids);
        self.authed_post(&self.push_to_list_url, auth, &PushToListBody { reg_ids, task_id: prepared, request_id })
    }

    /// A `pushToList` answered 10151: vivo no longer knows the task (it expired).
    fn prepared_expired(&self, status: StatusCode, _headers: &HeaderMap, body: &[u8]) -> bool {
        status == StatusCode::OK && parse_answer(body).is_some_and(|(result, _)| result == TASK_UNKNOWN_RESULT)
    }

    /// One outcome per regId, for `/message/send` and `pushToList` answers alike: a non-zero
    /// `result` applies to every regId of the request (except 10302 on a list, see
    /// `list_reg_id_rejected`); with `result` 0 the regIds listed in `invalidUser(s)` get their
    /// status's outcome and all others are delivered.
    fn classify(&self, tokens: &[Token], status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<Outcome> {
        let all = |o: Outcome| vec![o; tokens.len()];
        if status != StatusCode::OK {
            return all(http_outcome(status, headers));
        }
        let Some((result, answer)) = parse_answer(body) else {
            return all(Outcome::Retry { after: None, reason: "bad_answer" });
        };
        match result {
            0 => {
                let only = tokens.len() == 1;
                let outcome = |t: &Token| match invalid_user_status(&answer, t.as_str(), only) {
                    Some(status) => outcome_for_invalid_user(status),
                    None => Outcome::Delivered,
                };
                tokens.iter().map(outcome).collect()
            }
            INVALID_REG_ID_RESULT if tokens.len() > 1 => list_reg_id_rejected(tokens),
            _ => all(outcome_for_result(result)),
        }
    }
}

/// The `[credentials.<name>]` fields of a vivo credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VivoCredential {
    /// appId from the vivo console (an integer).
    app_id: u64,
    /// appKey from the vivo console.
    app_key: String,
    /// appSecret from the vivo console.
    app_secret: String,
    /// Base URL; default `https://api-push.vivo.com.cn`.
    endpoint: Option<String>,
    /// 0 operation, 1 system (default).
    classification: Option<u8>,
    /// Default `"IM"`; `""` omits it.
    category: Option<String>,
    /// 0 live (default), 1 test.
    push_mode: Option<u8>,
    /// Intent URI to open instead of the app's home.
    skip_content: Option<String>,
}

/// Builds the vivo vendor from its credential table.
pub fn from_config(table: &toml::Table, ctx: &CredentialContext<'_>) -> Result<VendorBuild, Vec<Problem>> {
    let c: VivoCredential = fields(table)?;
    let mut problems = Vec::new();
    let endpoint =
        ctx.url("endpoint", c.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT)).map_err(|p| problems.push(p)).ok();
    if c.app_key.trim().is_empty() {
        problems.push(Problem::new("app_key", "must not be empty"));
    }
    if c.app_secret.trim().is_empty() {
        problems.push(Problem::new("app_secret", "must not be empty"));
    }
    let classification = c.classification.unwrap_or(DEFAULT_CLASSIFICATION);
    if classification > 1 {
        problems.push(Problem::new("classification", format!("{classification} is not 0 or 1")));
    }
    let push_mode = c.push_mode.unwrap_or(0);
    if push_mode > 1 {
        problems.push(Problem::new("push_mode", format!("{push_mode} is not 0 or 1")));
    }
    if let Some(skip) = &c.skip_content {
        if skip.is_empty() || skip.chars().count() > 1024 {
            problems.push(Problem::new("skip_content", "must be an intent URI of 1 to 1024 chars"));
        }
    }
    let category = match c.category {
        None => Some(DEFAULT_CATEGORY.to_owned()),
        Some(s) if s.is_empty() => None,
        Some(s) => Some(s),
    };
    let (Some(endpoint), true) = (endpoint, problems.is_empty()) else {
        return Err(problems);
    };
    let cfg = VivoConfig {
        endpoint,
        app_id: c.app_id,
        app_key: c.app_key,
        app_secret: c.app_secret,
        classification,
        category,
        push_mode,
        skip_content: c.skip_content,
    };
    let vivo = Vivo::new(cfg).map_err(|e| vec![Problem::new("endpoint", e.to_string())])?;
    Ok(VendorBuild::https(vivo))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::provider::fixtures::{self, at_ms, token};
    use crate::provider::Priority;

    const APP_ID: u64 = 10004;
    const APP_KEY: &str = "25509283-3767-4b9e-83fe-b6e55ac6b123";
    const APP_SECRET: &str = "scrt-7f3a-4c21-9e0d-demo";
    const REG_ID: &str = "15580731370251120044391";

    fn config() -> VivoConfig {
        VivoConfig {
            endpoint: url::Url::parse(DEFAULT_ENDPOINT).expect("url"),
            app_id: APP_ID,
            app_key: APP_KEY.into(),
            app_secret: APP_SECRET.into(),
            classification: 1,
            category: Some("IM".into()),
            push_mode: 0,
            skip_content: None,
        }
    }

    fn vivo() -> Vivo {
        Vivo::new(config()).expect("valid config")
    }

    fn push() -> VendorPush {
        fixtures::push(PushType::Alert)
    }

    fn auth() -> AuthToken {
        AuthToken { value: "1f0e7f0c-5a1d-4f6b-9c3e-0d2b7a9e4c11".into(), refresh_at: at_ms(1_700_003_600_000) }
    }

    #[test]
    fn the_signature_matches_the_worked_example_of_the_doc() {
        assert_eq!(sign(APP_ID, APP_KEY, 1_700_000_000_000, APP_SECRET), "af3137e433ea475e1150670d51f93e30");
    }

    #[test]
    fn the_auth_request_is_signed_json_with_an_integer_app_id() {
        let AuthPlan::Remote(Ok(r)) = vivo().auth_plan(at_ms(1_700_000_000_000)) else {
            panic!("vivo fetches its token");
        };
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.url.as_str(), "https://api-push.vivo.com.cn/message/auth");
        assert_eq!(r.headers[CONTENT_TYPE], "application/json;charset=UTF-8");
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(
            body,
            json!({
                "appId": 10004,
                "appKey": APP_KEY,
                "timestamp": 1_700_000_000_000_i64,
                "sign": "af3137e433ea475e1150670d51f93e30"
            })
        );
    }

    #[test]
    fn the_auth_token_is_read_and_refreshed_after_an_hour() {
        let now = at_ms(1_700_000_000_000);
        let body = r#"{"result":0,"desc":"请求成功","authToken":"24ojds98fu3jqrioeu982134jieds9fq43u09uaf"}"#;
        let token = vivo().parse_auth(StatusCode::OK, body.as_bytes(), now).expect("token");
        assert_eq!(token.value, "24ojds98fu3jqrioeu982134jieds9fq43u09uaf");
        assert_eq!(token.refresh_at, now + chrono::Duration::hours(1));
    }

    #[test]
    fn auth_errors_are_fatal_except_rate_limits_and_server_trouble() {
        let v = vivo();
        let cases: &[(u16, &str, Outcome)] = &[
            (200, r#"{"result":10200,"desc":"appId不能为空"}"#, Outcome::Fatal { reason: "auth_rejected" }),
            (200, r#"{"result":10206,"desc":"sign不合法"}"#, Outcome::Fatal { reason: "auth_rejected" }),
            (
                200,
                r#"{"result":10071,"desc":"超过频率限制"}"#,
                Outcome::Retry { after: Some(Duration::from_secs(1)), reason: "auth_rate_limited" },
            ),
            (200, r#"{"result":0,"desc":"ok"}"#, Outcome::Retry { after: None, reason: "auth_bad_answer" }),
            (500, "Internet server error!", Outcome::Retry { after: None, reason: "auth_unavailable" }),
        ];
        for (status, body, expected) in cases {
            let status = StatusCode::from_u16(*status).expect("status");
            assert_eq!(&v.parse_auth(status, body.as_bytes(), at_ms(0)).expect_err("error"), expected, "{body}");
        }
    }

    #[test]
    fn a_send_carries_the_token_header_the_system_im_class_and_the_deep_link_data() {
        let r = vivo().request(&push(), &[token(REG_ID)], Some(&auth()), at_ms(0)).expect("request");
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.url.as_str(), "https://api-push.vivo.com.cn/message/send");
        assert_eq!(r.headers["authToken"], "1f0e7f0c-5a1d-4f6b-9c3e-0d2b7a9e4c11");
        assert_eq!(r.headers[CONTENT_TYPE], "application/json;charset=UTF-8");
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        let request_id = body["requestId"].as_str().expect("requestId").to_owned();
        assert_eq!(
            body,
            json!({
                "regId": REG_ID,
                "notifyType": 4,
                "title": "Alice",
                "content": "See you at 8?",
                "timeToLive": 86400,
                "skipType": 1,
                "networkType": -1,
                "clientCustomMap": { "conv": "c42", "msg": "m9", "sender": "alice" },
                "requestId": request_id,
                "classification": 1,
                "category": "IM",
                "pushMode": 0
            })
        );
        assert_eq!(request_id.len(), 36);
    }

    #[test]
    fn the_request_id_is_stable_per_message_and_device_and_differs_otherwise() {
        let v = vivo();
        let id = |p: &VendorPush, t: &str| v.send_body(p, &token(t)).expect("body").request_id;
        let a = id(&push(), REG_ID);
        assert_eq!(id(&push(), REG_ID), a);
        assert_ne!(id(&push(), "15580731370251120044392"), a);
        let mut other = push();
        other.data.insert("msg".into(), "8a01".into());
        assert_ne!(id(&other, REG_ID), a);
    }

    #[test]
    fn titles_and_contents_are_measured_in_width_units_with_cjk_as_two() {
        assert_eq!(width("ab"), 2);
        assert_eq!(width("你好"), 4);
        assert_eq!(width("a你"), 3);
        let v = vivo();
        let mut p = push();
        p.title = "群".repeat(30);
        p.body = "你好".into();
        let t = token(REG_ID);
        let body = v.send_body(&p, &t).expect("body");
        assert_eq!(width(&body.title), 40);
        assert!(body.title.ends_with('…'));
        assert_eq!(body.title.chars().count(), 20);
        assert_eq!(v.payload_size(&p), 4);
        assert_eq!(v.payload_limit(&p), 100);
        assert_eq!(truncate_width("abcdef", 5), "abc…");
        assert_eq!(truncate_width("abc", 3), "abc");
    }

    #[test]
    fn ttl_is_clamped_to_what_a_single_send_accepts() {
        let v = vivo();
        let ttl = |secs: u64| {
            let mut p = push();
            p.ttl = Some(Duration::from_secs(secs));
            v.send_body(&p, &token(REG_ID)).expect("body").time_to_live
        };
        assert_eq!(ttl(10), Some(60));
        assert_eq!(ttl(3600), Some(3600));
        assert_eq!(ttl(30 * 86_400), Some(604_800));
        let mut p = push();
        p.ttl = None;
        assert_eq!(v.send_body(&p, &token(REG_ID)).expect("body").time_to_live, None);
    }

    #[test]
    fn configured_class_test_mode_and_skip_content_are_sent() {
        let mut cfg = config();
        cfg.classification = 0;
        cfg.category = None;
        cfg.push_mode = 1;
        cfg.skip_content = Some("intent://chat#Intent;scheme=im;end".into());
        let v = Vivo::new(cfg).expect("valid");
        let body = serde_json::to_value(v.send_body(&push(), &token(REG_ID)).expect("body")).expect("json");
        assert_eq!(body["classification"], 0);
        assert!(body.get("category").is_none());
        assert_eq!(body["pushMode"], 1);
        assert_eq!(body["skipType"], 4);
        assert_eq!(body["skipContent"], "intent://chat#Intent;scheme=im;end");
    }

    #[test]
    fn unsendable_pushes_are_build_errors() {
        let v = vivo();
        let t = [token(REG_ID)];
        let mut silent = push();
        silent.push_type = PushType::Silent;
        assert!(matches!(v.request(&silent, &t, Some(&auth()), at_ms(0)), Err(BuildError::Payload(_))));
        let mut many = push();
        for i in 0..8 {
            many.data.insert(format!("k{i}"), "v".into());
        }
        assert!(matches!(v.request(&many, &t, Some(&auth()), at_ms(0)), Err(BuildError::Payload(_))));
        let two = [token(REG_ID), token("15580731370251120044392")];
        assert!(matches!(v.request(&push(), &two, Some(&auth()), at_ms(0)), Err(BuildError::Payload(_))));
        assert!(matches!(v.request(&push(), &t, None, at_ms(0)), Err(BuildError::Signing(_))));
        assert_eq!(v.batch_key(&silent), None, "never batched: no list payload either");
        assert!(matches!(v.prepare(&silent, &two, Some(&auth()), None, at_ms(0)), Some(Err(BuildError::Payload(_)))));
    }

    const REG_B: &str = "15580731370251120044392";
    const REG_C: &str = "15580731370251120044393";

    fn list() -> Vec<Token> {
        [REG_ID, REG_B, REG_C].into_iter().map(token).collect()
    }

    #[test]
    fn a_group_batch_uploads_its_payload_once_without_a_reg_id_with_the_im_class_and_a_list_ttl() {
        let mut p = push();
        p.ttl = Some(Duration::from_secs(60));
        let r = vivo()
            .prepare(&p, &list(), Some(&auth()), None, at_ms(1_700_000_000_000))
            .expect("a batch of three needs the upload")
            .expect("request");
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.url.as_str(), "https://api-push.vivo.com.cn/message/saveListPayload");
        assert_eq!(r.headers["authToken"], "1f0e7f0c-5a1d-4f6b-9c3e-0d2b7a9e4c11");
        assert_eq!(r.headers[CONTENT_TYPE], "application/json;charset=UTF-8");
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        let request_id = body["requestId"].as_str().expect("requestId").to_owned();
        assert_eq!(
            body,
            json!({
                "notifyType": 4,
                "title": "Alice",
                "content": "See you at 8?",
                "timeToLive": 900,
                "skipType": 1,
                "networkType": -1,
                "clientCustomMap": { "conv": "c42", "msg": "m9", "sender": "alice" },
                "requestId": request_id,
                "classification": 1,
                "category": "IM",
                "pushMode": 0
            })
        );
        assert_eq!(request_id.len(), 36);
    }

    #[test]
    fn a_single_device_needs_no_upload_and_a_batch_without_auth_cannot_upload() {
        let v = vivo();
        assert!(v.prepare(&push(), &[token(REG_ID)], Some(&auth()), None, at_ms(0)).is_none());
        assert!(matches!(v.prepare(&push(), &list(), None, None, at_ms(0)), Some(Err(BuildError::Signing(_)))));
        assert_eq!(v.max_batch(), LIST_MAX_TARGETS);
        assert_eq!(LIST_MAX_TARGETS, 1000);
    }

    #[test]
    fn the_upload_request_id_is_stable_per_message_and_differs_from_every_send_request_id() {
        let v = vivo();
        let id = |p: &VendorPush| -> String {
            let r = v.prepare(p, &list(), Some(&auth()), None, at_ms(0)).expect("upload").expect("request");
            serde_json::from_slice::<Value>(&r.body).expect("json")["requestId"].as_str().expect("id").to_owned()
        };
        let a = id(&push());
        let mut later = push();
        later.created_at = at_ms(1_700_000_999_000);
        later.badge = Some(7);
        assert_eq!(id(&later), a, "same message, same upload");
        let mut other = push();
        other.data.insert("msg".into(), "8a01".into());
        assert_ne!(id(&other), a);
        let mut reworded = push();
        reworded.body = "See you at 7?".into();
        assert_ne!(id(&reworded), a, "other content under the same message id is another upload");
        let sends: Vec<String> = list().iter().map(|t| v.send_body(&push(), t).expect("body").request_id).collect();
        assert!(!sends.contains(&a));
    }

    #[test]
    fn an_upload_replacing_an_expired_task_is_a_new_request_with_the_same_payload() {
        let v = vivo();
        let upload = |expired: Option<&str>| -> Value {
            let r = v.prepare(&push(), &list(), Some(&auth()), expired, at_ms(0)).expect("upload").expect("request");
            serde_json::from_slice(&r.body).expect("json")
        };
        let (first, again) = (upload(None), upload(Some("576000000000001")));

        assert_ne!(again["requestId"], first["requestId"], "vivo's dedup must not answer the dead task");
        assert_eq!(again["requestId"], upload(Some("576000000000001"))["requestId"], "stable across its retries");
        assert_ne!(again["requestId"], upload(Some("576000000000002"))["requestId"]);
        let without_id = |mut b: Value| {
            b.as_object_mut().expect("object").remove("requestId");
            b
        };
        assert_eq!(without_id(again), without_id(first));
    }

    #[test]
    fn only_a_10151_answer_to_a_list_push_says_the_task_expired() {
        let v = vivo();
        let expired = |status: u16, body: &str| {
            v.prepared_expired(StatusCode::from_u16(status).expect("status"), &HeaderMap::new(), body.as_bytes())
        };
        assert!(expired(200, r#"{"result":10151,"desc":"taskId不合法"}"#));
        assert!(expired(200, r#"{"result":"10151","desc":"taskId不合法"}"#));
        assert!(!expired(200, r#"{"result":0,"desc":"请求成功","taskId":"576000000000001","invalidUsers":[]}"#));
        assert!(!expired(200, r#"{"result":10150,"desc":"regIds不能为空"}"#));
        assert!(!expired(500, r#"{"result":10151}"#));
        assert!(!expired(200, "<html>502</html>"));
    }

    #[test]
    fn the_list_push_names_the_task_and_every_reg_id_with_a_request_id_of_its_own() {
        let v = vivo();
        let now = at_ms(1_700_000_000_000);
        let r = v.request_prepared(&push(), &list(), Some(&auth()), "576000000000001", now).expect("request");
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.url.as_str(), "https://api-push.vivo.com.cn/message/pushToList");
        assert_eq!(r.headers["authToken"], "1f0e7f0c-5a1d-4f6b-9c3e-0d2b7a9e4c11");
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        let request_id = body["requestId"].as_str().expect("requestId").to_owned();
        assert_eq!(
            body,
            json!({ "regIds": [REG_ID, REG_B, REG_C], "taskId": "576000000000001", "requestId": request_id })
        );
        assert_eq!(request_id.len(), 36);
        let id = |tokens: &[Token], task: &str| {
            let r = v.request_prepared(&push(), tokens, Some(&auth()), task, now).expect("request");
            serde_json::from_slice::<Value>(&r.body).expect("json")["requestId"].clone()
        };
        assert_eq!(id(&list(), "576000000000001"), request_id.as_str(), "a retry reuses it");
        assert_ne!(id(&list()[..2], "576000000000001"), request_id.as_str(), "another chunk");
        assert_ne!(id(&list(), "576000000000002"), request_id.as_str(), "another task");
    }

    #[test]
    fn a_list_push_takes_two_to_a_thousand_reg_ids_a_task_and_a_token() {
        let v = vivo();
        let many: Vec<Token> = (0..1001).map(|i| token(&format!("{i:023}"))).collect();
        let build = |tokens: &[Token], task: &str, auth: Option<&AuthToken>| {
            v.request_prepared(&push(), tokens, auth, task, at_ms(0))
        };
        assert!(build(&many[..1000], "1", Some(&auth())).is_ok());
        assert!(matches!(build(&many, "1", Some(&auth())), Err(BuildError::Payload(_))));
        assert!(matches!(build(&many[..1], "1", Some(&auth())), Err(BuildError::Payload(_))));
        assert!(matches!(build(&list(), "", Some(&auth())), Err(BuildError::Payload(_))));
        assert!(matches!(build(&list(), "1", None), Err(BuildError::Signing(_))));
    }

    #[test]
    fn pushes_differing_only_in_what_vivo_does_not_send_share_a_batch_key() {
        let v = vivo();
        let key = v.batch_key(&push()).expect("batchable");
        let mut other_user = push();
        other_user.badge = Some(41);
        other_user.priority = Priority::Normal;
        other_user.thread_id = None;
        other_user.collapse_id = Some("c".into());
        other_user.created_at = at_ms(1_700_000_001_000);
        assert_eq!(v.batch_key(&other_user), Some(key), "badge, priority, thread, collapse id are not sent");
        let mut minute = push();
        minute.ttl = Some(Duration::from_secs(60));
        let mut ten_minutes = push();
        ten_minutes.ttl = Some(Duration::from_secs(600));
        assert_eq!(v.batch_key(&minute), v.batch_key(&ten_minutes), "both saved with the list minimum of 900 s");
        let changes: [fn(&mut VendorPush); 5] = [
            |p| p.title = "Bob".into(),
            |p| p.body = "later".into(),
            |p| p.sound = None,
            |p| p.ttl = Some(Duration::from_secs(3600)),
            |p| {
                p.data.insert("msg".into(), "8a01".into());
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut p = push();
            change(&mut p);
            assert_ne!(v.batch_key(&p), Some(key), "change {i} is sent");
        }
    }

    #[test]
    fn the_upload_answer_gives_the_task_id_or_classifies_as_a_send_does() {
        use Outcome::*;
        let v = vivo();
        let parse = |status: u16, body: &str| {
            let status = StatusCode::from_u16(status).expect("status");
            v.parse_prepare(status, &HeaderMap::new(), body.as_bytes())
        };
        assert_eq!(
            parse(200, r#"{"result":0,"desc":"请求成功","taskId":"576000000000001"}"#),
            Ok("576000000000001".into())
        );
        assert_eq!(
            parse(200, r#"{"result":"0","desc":"请求成功","taskId":576000000000002}"#),
            Ok("576000000000002".into())
        );
        let errors: Vec<(u16, &str, Outcome)> = vec![
            (
                200,
                r#"{"result":10252,"desc":"超过批量推送限制"}"#,
                QuotaExhausted { until: None, reason: "list_payload_quota" },
            ),
            (
                200,
                r#"{"result":10070,"desc":"发送总量超出限制"}"#,
                QuotaExhausted { until: None, reason: "daily_quota" },
            ),
            (200, r#"{"result":10000,"desc":"authToken不合法或已过期"}"#, RefreshAuth { reason: "auth_token_invalid" }),
            (
                200,
                r#"{"result":10071,"desc":"超过调用频率限制"}"#,
                Retry { after: Some(Duration::from_secs(1)), reason: "rate_limited" },
            ),
            (200, r#"{"result":10055,"desc":"title不能为空"}"#, Fatal { reason: "title_empty" }),
            (200, r#"{"result":10059,"desc":"timeToLive不合法"}"#, Fatal { reason: "invalid_ttl" }),
            (200, r#"{"result":11000,"desc":"classification不合法"}"#, Fatal { reason: "invalid_classification" }),
            (200, r#"{"result":10302,"desc":"regId不合法"}"#, Fatal { reason: "list_payload_rejected" }),
            (200, r#"{"result":0,"desc":"请求成功"}"#, Retry { after: None, reason: "bad_answer" }),
            (200, r#"{"result":0,"taskId":""}"#, Retry { after: None, reason: "bad_answer" }),
            (200, "<html>502</html>", Retry { after: None, reason: "bad_answer" }),
            (500, "Internet server error!", Retry { after: None, reason: "http_5xx" }),
            (404, "", Retry { after: None, reason: "http_status" }),
        ];
        for (status, body, expected) in errors {
            assert_eq!(parse(status, body), Err(expected), "{status} {body}");
        }
    }

    fn list_answer(body: &str) -> Vec<Outcome> {
        vivo().classify(&list(), StatusCode::OK, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn a_list_answer_prunes_exactly_the_listed_reg_ids_and_delivers_the_rest() {
        use Outcome::*;
        let recorded = json!({
            "result": 0, "desc": "请求成功", "taskId": "576000000000001",
            "invalidUsers": [{ "status": 1, "userid": REG_B }, { "status": 4, "userid": REG_C }]
        });
        assert_eq!(
            list_answer(&recorded.to_string()),
            vec![
                Delivered,
                InvalidToken { reason: "unknown_reg_id", since: None },
                Fatal { reason: "not_test_device" }
            ]
        );
        let as_data = json!({ "result": 0, "taskId": "1", "data": [{ "status": "3", "userid": REG_ID }] });
        assert_eq!(
            list_answer(&as_data.to_string()),
            vec![InvalidToken { reason: "inactive", since: None }, Delivered, Delivered]
        );
        let clean = r#"{"result":0,"desc":"请求成功","taskId":"576000000000001","invalidUsers":[]}"#;
        assert_eq!(list_answer(clean), vec![Delivered; 3]);
        // Only a single send's invalidUser may leave out whom it is about.
        let unnamed = r#"{"result":0,"taskId":"1","invalidUser":{"status":1}}"#;
        assert_eq!(list_answer(unnamed), vec![Delivered; 3]);
        assert_eq!(answer(200, unnamed), InvalidToken { reason: "unknown_reg_id", since: None });
    }

    #[test]
    fn a_refused_list_answers_every_reg_id_alike() {
        use Outcome::*;
        let refused = |result: i64| list_answer(&json!({ "result": result, "desc": "recorded" }).to_string());
        assert_eq!(refused(10070), vec![QuotaExhausted { until: None, reason: "daily_quota" }; 3]);
        assert_eq!(refused(10000), vec![RefreshAuth { reason: "auth_token_invalid" }; 3]);
        assert_eq!(refused(10071), vec![Retry { after: Some(Duration::from_secs(1)), reason: "rate_limited" }; 3]);
        assert_eq!(refused(10151), vec![Fatal { reason: "task_id_empty" }; 3]);
        assert_eq!(refused(10153), vec![Fatal { reason: "list_size" }; 3]);
        let http = vivo().classify(&list(), StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"");
        assert_eq!(http, vec![Retry { after: None, reason: "http_5xx" }; 3]);
    }

    #[test]
    fn a_list_refused_for_an_invalid_reg_id_prunes_only_the_malformed_ones() {
        use Outcome::*;
        let v = vivo();
        let body = r#"{"result":10302,"desc":"regId不合法"}"#.as_bytes();
        let tokens = [token(REG_ID), token("not-a-regid"), token(REG_C)];
        let retry = Retry { after: None, reason: "list_reg_id_rejected" };
        assert_eq!(
            v.classify(&tokens, StatusCode::OK, &HeaderMap::new(), body),
            vec![retry.clone(), InvalidToken { reason: "invalid_reg_id", since: None }, retry]
        );
        assert_eq!(list_answer("{\"result\":10302}"), vec![Fatal { reason: "list_reg_id_rejected" }; 3]);
        assert_eq!(answer(200, "{\"result\":10302}"), InvalidToken { reason: "invalid_reg_id", since: None });
    }

    fn answer(status: u16, body: &str) -> Outcome {
        fixtures::classify_one(&vivo(), token(REG_ID), status, body)
    }

    #[test]
    fn every_row_of_the_vivo_answer_table_maps_to_its_outcome() {
        use Outcome::*;
        let rows: Vec<(i64, Outcome)> = vec![
            (0, Delivered),
            (10000, RefreshAuth { reason: "auth_token_invalid" }),
            (10050, Fatal { reason: "no_target" }),
            (10054, Fatal { reason: "invalid_notify_type" }),
            (10055, Fatal { reason: "title_empty" }),
            (10056, Fatal { reason: "title_too_long" }),
            (10057, Fatal { reason: "content_empty" }),
            (10058, Fatal { reason: "content_too_long" }),
            (10059, Fatal { reason: "invalid_ttl" }),
            (10060, Fatal { reason: "invalid_skip" }),
            (10064, Fatal { reason: "invalid_skip" }),
            (10068, Fatal { reason: "invalid_skip" }),
            (10069, Fatal { reason: "invalid_skip" }),
            (10065, Fatal { reason: "invalid_network_type" }),
            (10066, Fatal { reason: "custom_map_too_many" }),
            (10067, Fatal { reason: "custom_map_invalid" }),
            (10070, QuotaExhausted { until: None, reason: "daily_quota" }),
            (10071, Retry { after: Some(Duration::from_secs(1)), reason: "rate_limited" }),
            (10094, Fatal { reason: "app_id_mismatch" }),
            (10150, Fatal { reason: "list_empty" }),
            (10151, Fatal { reason: "task_id_empty" }),
            (10153, Fatal { reason: "list_size" }),
            (10154, Fatal { reason: "list_size" }),
            (10252, QuotaExhausted { until: None, reason: "list_payload_quota" }),
            (10254, Fatal { reason: "all_push_limit" }),
            (10301, Fatal { reason: "alias_too_long" }),
            (10302, InvalidToken { reason: "invalid_reg_id", since: None }),
            (10305, Fatal { reason: "callback_too_long" }),
            (10306, Fatal { reason: "callback_too_long" }),
            (10352, Fatal { reason: "request_id_empty" }),
            (10353, Fatal { reason: "request_id_too_long" }),
            (10471, Fatal { reason: "statistics_task_ids" }),
            (10473, Fatal { reason: "statistics_task_ids" }),
            (11000, Fatal { reason: "invalid_classification" }),
            (10999, Fatal { reason: "unknown" }),
        ];
        for (result, expected) in rows {
            let body = json!({ "result": result, "desc": "recorded" }).to_string();
            assert_eq!(answer(200, &body), expected, "result {result}");
        }
    }

    #[test]
    fn recorded_send_answers_of_the_doc_are_classified() {
        assert_eq!(answer(200, r#"{"result":0,"desc":"请求成功","taskId":"123456"}"#), Outcome::Delivered);
        let dead = |status: i64| {
            json!({ "result": 0, "desc": "请求成功", "taskId": "1", "invalidUser": { "status": status, "userid": REG_ID } })
                .to_string()
        };
        assert_eq!(answer(200, &dead(1)), Outcome::InvalidToken { reason: "unknown_reg_id", since: None });
        assert_eq!(answer(200, &dead(2)), Outcome::InvalidToken { reason: "unsubscribed", since: None });
        assert_eq!(answer(200, &dead(3)), Outcome::InvalidToken { reason: "inactive", since: None });
        assert_eq!(answer(200, &dead(4)), Outcome::Fatal { reason: "not_test_device" });
        assert_eq!(answer(200, &dead(9)), Outcome::Fatal { reason: "invalid_user" });
        // An invalidUser naming another regId is not about this one.
        let other = r#"{"result":0,"desc":"ok","invalidUser":{"status":1,"userid":"99999999999999999999999"}}"#;
        assert_eq!(answer(200, other), Outcome::Delivered);
        // The list form (pushToList) is read too.
        let list = json!({ "result": 0, "invalidUsers": [{ "status": 2, "userid": REG_ID }] }).to_string();
        assert_eq!(answer(200, &list), Outcome::InvalidToken { reason: "unsubscribed", since: None });
        assert_eq!(
            answer(200, r#"{"result":"10070","desc":"发送总量超出限制"}"#),
            Outcome::QuotaExhausted { until: None, reason: "daily_quota" }
        );
    }

    #[test]
    fn server_errors_and_unreadable_answers_are_retried() {
        assert_eq!(answer(500, "Internet server error!"), Outcome::Retry { after: None, reason: "http_5xx" });
        assert_eq!(answer(404, ""), Outcome::Retry { after: None, reason: "http_status" });
        for body in ["", "{", r#"{"desc":"no result"}"#] {
            assert_eq!(answer(200, body), Outcome::Retry { after: None, reason: "bad_answer" }, "{body}");
        }
    }

    #[test]
    fn the_app_secret_never_shows_in_debug() {
        assert!(!format!("{:?}", vivo()).contains(APP_SECRET));
        assert!(!format!("{:?}", config()).contains(APP_SECRET));
    }

    fn build(extra: &str) -> Result<VendorBuild, Vec<Problem>> {
        let text = format!("app_id = {APP_ID}\napp_key = \"{APP_KEY}\"\napp_secret = \"{APP_SECRET}\"\n{extra}");
        let table: toml::Table = text.parse().expect("toml");
        let dir = std::env::temp_dir();
        from_config(&table, &CredentialContext { name: "test-vivo", data_dir: &dir })
    }

    #[test]
    fn config_defaults_to_system_im_messages_on_the_vivo_host() {
        let built = build("").expect("builds");
        let r = built.vendor.request(&push(), &[token(REG_ID)], Some(&auth()), at_ms(0)).expect("request");
        assert!(r.url.as_str().starts_with("https://api-push.vivo.com.cn/"));
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!((body["classification"].as_u64(), body["category"].as_str()), (Some(1), Some("IM")));
        assert_eq!(body["pushMode"], 0);
    }

    #[test]
    fn config_problems_name_their_field_and_never_the_secret() {
        let problems =
            |extra: &str| build(extra).err().expect("refused").into_iter().map(|p| p.field).collect::<Vec<_>>();
        assert_eq!(problems("classification = 2"), vec!["classification"]);
        assert_eq!(problems("push_mode = 3"), vec!["push_mode"]);
        assert_eq!(problems("endpoint = \"nope\""), vec!["endpoint"]);
        assert_eq!(problems("badge = 1"), vec!["badge"]);
        let text: toml::Table = "app_id = \"x\"\napp_key = \"k\"\napp_secret = \"s\"".parse().expect("toml");
        let dir = std::env::temp_dir();
        let err = from_config(&text, &CredentialContext { name: "x", data_dir: &dir }).err().expect("refused");
        assert!(!format!("{err:?}").contains(APP_SECRET));
        assert!(!format!("{:?}", build("classification = 2").err()).contains(APP_SECRET));
    }
}
