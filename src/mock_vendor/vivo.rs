//! Mock vivo Push: the signed auth call, the single send and the two-call group fan-out
//! (`saveListPayload` + `pushToList`), validating as `docs/vendors/vivo.md` §7 describes and
//! answering with vivo's `{result, desc, …}` bodies in HTTP 200.
//!
//! Owns: auth (MD5 signature, timestamp window, 10 calls per second, opaque tokens that expire
//! on the mock clock and can be revoked, several live at once), the `authToken` header and the
//! body `appId` check, field checks with the SDK's codes (width units with CJK = 2), the IM
//! class checks, test mode and test devices, `requestId` dedup, the daily quota (10070), the
//! optional 07:00–23:00 window for operation messages, `invalidUser(s)` per target, and the
//! record of deliveries. Does not own: TLS, the request record and rules (`mod.rs`, `tls.rs`).
//! Auth calls are counted ([`MockVivo::auth_requests`]), not recorded as
//! [`Received`](super::Received) entries: the record is the sends (`saveListPayload` included,
//! with token `""`).
//!
//! Scripting ([`MockAnswer`]): `reason` is a vivo `result` as text (`"10070"`, `"10302"`, …),
//! a dead-target word answered as `invalidUser` with result 0 (`"unknown"` 1,
//! `"uninstalled"` 2, `"inactive"` 3, `"not_test"` 4), or `"malformed"` (a body that is not
//! JSON); `status` answers that HTTP status with vivo's "Internet server error!" text;
//! `expire_auth` revokes the token used and answers 10000. The two group calls are scripted by
//! name: a rule for [`SAVE_LIST_SCRIPT`] answers the payload upload, one for
//! [`PUSH_TO_LIST_SCRIPT`] the whole list push (a rule without a token answers whichever comes
//! first); a rule for a regId with a dead-target word lists it in `invalidUsers`. A scripted
//! `"10151"` for a list push expires its task as vivo would: the saved payload is forgotten,
//! so later list pushes naming the task get 10151 too and only a new upload helps. Not
//! scriptable: dropped connections, auth-call failures.
//!
//! Unverified facts the mock picks (vivo.md §8): the auth error codes beyond 10200/10201
//! ([`AUTH_CODES`]), the rate-limit and token-rejection results (shared with the provider),
//! `invalidUser` statuses, the `requestId` dedup window ([`REQUEST_ID_DEDUP_WINDOW`]) and that
//! it covers the payload upload too (a repeated upload answers its first `taskId`), that an
//! absent `classification` means 0, and 11000 for a category error.
//!
//! ```text
//! POST /message/auth ─▶ appId (int), appKey, timestamp (±10 min), sign, ≤ 10/s ─▶ authToken
//! POST /message/send ─▶ authToken header ─▶ appId? ─▶ fields ─▶ class ─▶ dedup(requestId)
//!                    ─▶ scripted rule? ─▶ test device? ─▶ quota ─▶ record ─▶ answer
//! POST /message/saveListPayload ─▶ taskId;  POST /message/pushToList ─▶ taskId + 2..1000 regIds
//! ```

use std::collections::{HashMap, VecDeque};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Timelike;
use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::oauth::AccessTokens;
use super::tls::Protocols;
use super::{
    default_addr, lock, reply, scripted_delay, start_mock, Conn, Core, MockAnswer, MockServer, MockTls, ReadRequest,
    Reply, Vendor, RECORD_CAPACITY,
};
use crate::clock::{SharedClock, SystemClock};
use crate::model::Timestamp;
use crate::provider::vivo::{
    sign, AUTH_INVALID_RESULT, CONTENT_MAX_WIDTH, CUSTOM_MAP_MAX_CHARS, CUSTOM_MAP_MAX_PAIRS, DAILY_QUOTA_RESULT,
    NOT_TEST_DEVICE_STATUS, RATE_LIMITED_RESULT, TASK_UNKNOWN_RESULT, TITLE_MAX_WIDTH, TTL_RANGE_SECS,
};

const AUTH: &str = "/message/auth";
const SEND: &str = "/message/send";
const SAVE_LIST: &str = "/message/saveListPayload";
const PUSH_TO_LIST: &str = "/message/pushToList";

/// The [`MockRule`](super::MockRule) token that scripts the `saveListPayload` call.
pub const SAVE_LIST_SCRIPT: &str = "saveListPayload";
/// The [`MockRule`](super::MockRule) token that scripts a whole `pushToList` call.
pub const PUSH_TO_LIST_SCRIPT: &str = "pushToList";

/// Shortest `timeToLive` of a saved group payload, in seconds.
const LIST_MIN_TTL_SECS: u64 = 900;
/// Targets per `pushToList`.
const LIST_TARGETS: std::ops::RangeInclusive<usize> = 2..=1000;
const ALIAS_MAX_CHARS: usize = 40;
const SKIP_URL_MAX_CHARS: usize = 1000;
const SKIP_CONTENT_MAX_CHARS: usize = 1024;
const CALLBACK_MAX_CHARS: usize = 128;
const CALLBACK_PARAM_MAX_CHARS: usize = 64;
const REQUEST_ID_MAX_CHARS: usize = 64;

/// How long an accepted `requestId` is remembered: a repeat within it is answered like the
/// first and not delivered again. Unverified: vivo documents dedup by `requestId` but no window.
pub const REQUEST_ID_DEDUP_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// Auth-call `result` codes: 10200 appId empty and 10201 appKey empty are in a doc copy; the
/// rest follow their numbering and are unverified (pushd treats every one as fatal).
pub const AUTH_CODES: AuthCodes = AuthCodes {
    app_id_missing: 10200,
    app_key_missing: 10201,
    app_key_invalid: 10202,
    timestamp_missing: 10203,
    sign_missing: 10204,
    app_id_invalid: 10205,
    sign_invalid: 10206,
    timestamp_invalid: 10207,
};

/// The auth call's error codes.
#[derive(Debug, Clone, Copy)]
pub struct AuthCodes {
    /// `appId` absent.
    pub app_id_missing: i64,
    /// `appKey` absent.
    pub app_key_missing: i64,
    /// `appKey` not the app's.
    pub app_key_invalid: i64,
    /// `timestamp` absent.
    pub timestamp_missing: i64,
    /// `sign` absent.
    pub sign_missing: i64,
    /// `appId` unknown or not an integer.
    pub app_id_invalid: i64,
    /// `sign` does not match.
    pub sign_invalid: i64,
    /// `timestamp` too far from the server clock.
    pub timestamp_invalid: i64,
}

/// Categories of system messages (vivo doc 359; the list beyond IM and TODO is unverified).
pub const SYSTEM_CATEGORIES: &[&str] = &["IM", "ACCOUNT", "TODO", "DEVICE_REMINDER", "ORDER", "SUBSCRIPTION"];
/// Categories of operation messages (beyond MARKETING unverified).
pub const OPERATION_CATEGORIES: &[&str] = &["NEWS", "CONTENT", "MARKETING", "SOCIAL"];

/// Configuration of a [`MockVivo`].
#[derive(Clone)]
pub struct MockVivoConfig {
    /// Where to listen; default `127.0.0.1:0`.
    pub addr: std::net::SocketAddr,
    /// TLS material to share with other mocks; `None` generates a CA for this mock.
    pub tls: Option<Arc<MockTls>>,
    /// The clock auth timestamps, token expiry, the quota day and the window are measured with.
    pub clock: SharedClock,
    /// The only appId the auth call accepts.
    pub app_id: u64,
    /// Its appKey.
    pub app_key: String,
    /// Its appSecret, to check signatures with.
    pub app_secret: String,
    /// Lifetime of issued tokens (vivo: 24 h).
    pub token_ttl_secs: u64,
    /// How far an auth `timestamp` may be from the mock clock (vivo: 10 min).
    pub timestamp_skew_secs: i64,
    /// Auth calls per second of the mock clock before [`RATE_LIMITED_RESULT`].
    pub auth_per_sec: u32,
    /// Length of a valid regId (the SDK checks 23).
    pub reg_id_len: usize,
    /// Accepted `category` values.
    pub categories: Vec<String>,
    /// Answer 11000 when a system category comes with `classification` 0 or vice versa.
    pub category_must_match_classification: bool,
    /// Arrivals per China day before 10070; `None` = unlimited.
    pub daily_quota: Option<u64>,
    /// regIds that accept `pushMode` 1 (test) messages.
    pub test_devices: Vec<String>,
    /// Hold operation messages (`classification` 0) outside 07:00–23:00 China time: accepted,
    /// recorded as deferred.
    pub operation_window: bool,
}

impl std::fmt::Debug for MockVivoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockVivoConfig")
            .field("addr", &self.addr)
            .field("app_id", &self.app_id)
            .field("app_key", &self.app_key)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("daily_quota", &self.daily_quota)
            .finish_non_exhaustive()
    }
}

impl MockVivoConfig {
    /// A config for one app with every other setting at its default.
    pub fn new(app_id: u64, app_key: impl Into<String>, app_secret: impl Into<String>) -> Self {
        Self {
            addr: default_addr(),
            tls: None,
            clock: Arc::new(SystemClock),
            app_id,
            app_key: app_key.into(),
            app_secret: app_secret.into(),
            token_ttl_secs: 86_400,
            timestamp_skew_secs: 600,
            auth_per_sec: 10,
            reg_id_len: 23,
            categories: SYSTEM_CATEGORIES.iter().chain(OPERATION_CATEGORIES).map(|c| (*c).to_owned()).collect(),
            category_must_match_classification: false,
            daily_quota: None,
            test_devices: Vec::new(),
            operation_window: false,
        }
    }
}

/// One message the mock accepted for a regId.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VivoDelivery {
    /// The target.
    pub reg_id: String,
    /// The request's `requestId` (the `pushToList` one for group pushes).
    pub request_id: String,
    /// `title`.
    pub title: String,
    /// `content`.
    pub content: String,
    /// `classification` as sent (`None` when absent).
    pub classification: Option<i64>,
    /// `category`, if sent.
    pub category: Option<String>,
    /// `pushMode` (0 when absent).
    pub push_mode: i64,
    /// `clientCustomMap`, if sent.
    pub client_custom_map: Option<Value>,
    /// The task id answered.
    pub task_id: String,
    /// An operation message held for the 07:00–23:00 window.
    pub deferred: bool,
    /// When the mock accepted it (mock clock).
    pub at: Timestamp,
}

/// A running mock vivo Push. Derefs to [`MockServer`] for rules, the record and counters.
/// Cheap to clone; clones share the server.
#[derive(Clone)]
pub struct MockVivo {
    server: MockServer,
    vivo: Arc<Vivo>,
}

impl std::fmt::Debug for MockVivo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockVivo").field("server", &self.server).finish_non_exhaustive()
    }
}

impl Deref for MockVivo {
    type Target = MockServer;

    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl From<MockVivo> for MockServer {
    fn from(mock: MockVivo) -> MockServer {
        mock.server
    }
}

impl MockVivo {
    /// Binds `cfg.addr` and serves HTTPS on the current tokio runtime; returns once listening.
    pub async fn start(cfg: MockVivoConfig) -> std::io::Result<Self> {
        let protocols = Protocols::H2OrHttp1 { max_concurrent_streams: 1000 };
        let (server, vivo) = start_mock("vivo", cfg.addr, cfg.tls.clone(), cfg.clock.clone(), protocols, |core| Vivo {
            core,
            cfg,
            state: Mutex::new(State::default()),
            tokens: AccessTokens::new(),
            auth_requests: AtomicU64::new(0),
            tasks: AtomicU64::new(0),
        })
        .await?;
        Ok(Self { server, vivo })
    }

    /// Calls to the auth endpoint so far, successful or not.
    pub fn auth_requests(&self) -> u64 {
        self.vivo.auth_requests.load(Ordering::Relaxed)
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.vivo.tokens.issued()
    }

    /// Messages accepted, oldest first (at most [`RECORD_CAPACITY`]).
    pub fn delivered(&self) -> Vec<VivoDelivery> {
        lock(&self.vivo.state).delivered.iter().cloned().collect()
    }

    /// Messages accepted for `reg_id`.
    pub fn delivered_to(&self, reg_id: &str) -> Vec<VivoDelivery> {
        lock(&self.vivo.state).delivered.iter().filter(|d| d.reg_id == reg_id).cloned().collect()
    }

    /// Repeats of an accepted `requestId` (answered, not delivered again).
    pub fn duplicates(&self) -> u64 {
        lock(&self.vivo.state).duplicates
    }

    /// How often `result` was answered.
    pub fn answered(&self, result: i64) -> u64 {
        lock(&self.vivo.state).results.get(&result).copied().unwrap_or(0)
    }
}

struct Vivo {
    core: Arc<Core>,
    cfg: MockVivoConfig,
    state: Mutex<State>,
    /// Several stay valid at once: a new one does not end the others.
    tokens: AccessTokens,
    auth_requests: AtomicU64,
    tasks: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Auth calls in the current second of the mock clock.
    auth_second: i64,
    auth_in_second: u32,
    /// Accepted requestIds: when, and the taskId answered.
    request_ids: HashMap<String, (Timestamp, String)>,
    delivered: VecDeque<VivoDelivery>,
    duplicates: u64,
    results: HashMap<i64, u64>,
    quota_day: Option<chrono::NaiveDate>,
    quota_used: u64,
    /// Saved group payloads by taskId.
    payloads: HashMap<String, Map<String, Value>>,
}

/// An answer: HTTP status and body (`Err` = a body that is not JSON).
struct Answer {
    http: u16,
    body: Result<Value, &'static str>,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Self { http: 200, body: Ok(body) }
    }

    fn result(result: i64) -> Self {
        Self::ok(json!({ "result": result, "desc": desc(result) }))
    }
}

/// vivo's wording for a result (vivo.md §5).
fn desc(result: i64) -> &'static str {
    match result {
        0 => "请求成功",
        AUTH_INVALID_RESULT => "authToken不合法或已过期",
        10050 => "alias和regId不能都为空",
        10054 => "notifyType不合法",
        10055 => "title不能为空",
        10056 => "title长度不合法",
        10057 => "content不能为空",
        10058 => "content长度不合法",
        10059 => "timeToLive不合法",
        10060..=10064 | 10068 | 10069 => "skipType或skipContent不合法",
        10065 => "networkType不合法",
        10066 => "clientCustomMap个数超出限制",
        10067 => "clientCustomMap不合法",
        DAILY_QUOTA_RESULT => "发送总量超出限制",
        RATE_LIMITED_RESULT => "超过调用频率限制",
        10094 => "appId与鉴权信息不一致",
        10150 => "regIds不能为空",
        TASK_UNKNOWN_RESULT => "taskId不合法",
        10153 => "regIds个数不合法",
        10154 => "aliases个数不合法",
        10301 => "alias长度不合法",
        10302 => "regId不合法",
        10305 => "callback长度不合法",
        10306 => "callback.param长度不合法",
        10352 => "requestId不能为空",
        10353 => "requestId长度不合法",
        11000 => "classification不合法",
        10200 => "appId不能为空",
        10201 => "appKey不能为空",
        10202 => "appKey不合法",
        10203 => "timestamp不能为空",
        10204 => "sign不能为空",
        10205 => "appId不合法",
        10206 => "sign不合法",
        10207 => "timestamp不合法",
        _ => "scripted",
    }
}

/// The body of a scripted HTTP error (vivo's own text).
const SERVER_ERROR: &str = "Internet server error!";
/// The body of a `malformed` answer.
const MALFORMED: &str = "<html><body>502 Bad Gateway</body></html>";

fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Width units as vivo counts them: CJK ideographs, kana, hangul and full-width forms 2,
/// everything else 1.
pub fn vivo_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let wide = matches!(c as u32,
                0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
                | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60
                | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD);
            if wide {
                2
            } else {
                1
            }
        })
        .sum()
}

/// The dead-target status a script word asks for.
fn invalid_user_word(reason: &str) -> Option<i64> {
    match reason {
        "unknown" => Some(1),
        "uninstalled" => Some(2),
        "inactive" => Some(3),
        "not_test" => Some(NOT_TEST_DEVICE_STATUS),
        other => other.strip_prefix("invalid_user:").and_then(|n| n.parse().ok()),
    }
}

/// The China day and hour of `t`.
fn china(t: Timestamp) -> (chrono::NaiveDate, u32) {
    let local = t.with_timezone(&chrono_tz::Asia::Shanghai);
    (local.date_naive(), local.hour())
}

impl Vendor for Vivo {
    type ConnState = ();

    async fn handle(&self, req: Request<Incoming>, conn: &Conn<()>) -> Reply {
        let read = ReadRequest::read(req).await;
        let path = read.path.as_str();
        if path == AUTH {
            let answer = self.auth(&read);
            self.count(&answer);
            return self.reply(&answer, None);
        }
        if ![SEND, SAVE_LIST, PUSH_TO_LIST].contains(&path) {
            return reply(404, &[], Some(&json!({ "result": 404, "desc": "Not Found" })));
        }
        let (answer, script) = self.call(&read);
        let token = targets(read.json().as_ref());
        self.count(&answer);
        let recorded = answer.body.clone().unwrap_or_else(|text| Value::String(text.to_owned()));
        self.core.record(read.received("vivo", token, conn.id, answer.http, recorded));
        scripted_delay(script.as_ref()).await;
        self.reply(&answer, script.as_ref())
    }
}

impl Vivo {
    fn reply(&self, answer: &Answer, script: Option<&MockAnswer>) -> Reply {
        let headers: Vec<_> = script
            .and_then(|s| s.retry_after_secs)
            .map(|secs| (http::header::RETRY_AFTER, secs.to_string()))
            .into_iter()
            .collect();
        match &answer.body {
            Ok(body) => reply(answer.http, &headers, Some(body)),
            Err(text) => {
                let mut r = reply(answer.http, &headers, None);
                *r.body_mut() = http_body_util::Full::new(bytes::Bytes::from_static(text.as_bytes()));
                r
            }
        }
    }

    fn count(&self, answer: &Answer) {
        if let Some(result) = answer.body.as_ref().ok().and_then(|b| b.get("result")).and_then(int) {
            *lock(&self.state).results.entry(result).or_default() += 1;
        }
    }

    /// `POST /message/auth` (vivo.md §7 items 2–3).
    fn auth(&self, r: &ReadRequest) -> Answer {
        self.auth_requests.fetch_add(1, Ordering::Relaxed);
        match self.check_auth(r) {
            Ok(token) => Answer::ok(json!({ "result": 0, "desc": desc(0), "authToken": token })),
            Err(result) => Answer::result(result),
        }
    }

    fn check_auth(&self, r: &ReadRequest) -> Result<String, i64> {
        let c = AUTH_CODES;
        if r.method != Method::POST {
            return Err(c.app_id_missing);
        }
        let now = self.core.clock().now();
        {
            let mut state = lock(&self.state);
            let second = now.timestamp();
            if state.auth_second != second {
                state.auth_second = second;
                state.auth_in_second = 0;
            }
            state.auth_in_second += 1;
            if state.auth_in_second > self.cfg.auth_per_sec {
                return Err(RATE_LIMITED_RESULT);
            }
        }
        let body = r.json().and_then(|v| v.as_object().cloned()).unwrap_or_default();
        let app_id = body.get("appId").ok_or(c.app_id_missing)?;
        let app_id = app_id.as_u64().ok_or(c.app_id_invalid)?;
        let app_key = body.get("appKey").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(c.app_key_missing)?;
        let timestamp = body.get("timestamp").ok_or(c.timestamp_missing)?.as_i64().ok_or(c.timestamp_invalid)?;
        let signature = body.get("sign").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(c.sign_missing)?;
        if app_id != self.cfg.app_id {
            return Err(c.app_id_invalid);
        }
        if app_key != self.cfg.app_key {
            return Err(c.app_key_invalid);
        }
        if (timestamp - now.timestamp_millis()).abs() > self.cfg.timestamp_skew_secs.saturating_mul(1000) {
            return Err(c.timestamp_invalid);
        }
        if signature != sign(app_id, app_key, timestamp, &self.cfg.app_secret) {
            return Err(c.sign_invalid);
        }
        Ok(self.tokens.issue(app_key, now, self.cfg.token_ttl_secs, |_| uuid::Uuid::new_v4().to_string()))
    }

    /// A non-auth call: the answer and the script applied.
    fn call(&self, r: &ReadRequest) -> (Answer, Option<MockAnswer>) {
        if r.method != Method::POST {
            return (Answer { http: 405, body: Err(SERVER_ERROR) }, None);
        }
        let token = r.header("authtoken").unwrap_or_default().to_owned();
        if !self.tokens.is_valid(&token, self.core.clock().now()) {
            return (Answer::result(AUTH_INVALID_RESULT), None);
        }
        let Some(Value::Object(body)) = r.json() else {
            return (Answer { http: 500, body: Err(SERVER_ERROR) }, None);
        };
        if body.get("appId").is_some_and(|id| id.as_u64() != Some(self.cfg.app_id)) {
            return (Answer::result(10094), None);
        }
        match r.path.as_str() {
            SEND => self.send(&body, &token),
            SAVE_LIST => self.save_list(&body, &token),
            _ => self.push_to_list(&body, &token),
        }
    }

    /// A script that answers the request as a whole: expired token, HTTP status, malformed
    /// body, or a result code.
    fn scripted(&self, s: &MockAnswer, token: &str) -> Option<Answer> {
        if s.expire_auth {
            self.tokens.revoke(token);
            return Some(Answer::result(AUTH_INVALID_RESULT));
        }
        if let Some(status) = s.status.filter(|s| *s != 200) {
            return Some(Answer { http: status, body: Err(SERVER_ERROR) });
        }
        match s.reason.as_deref() {
            Some("malformed") => Some(Answer { http: 200, body: Err(MALFORMED) }),
            Some(reason) => reason.trim().parse::<i64>().ok().filter(|r| *r != 0).map(Answer::result),
            None => None,
        }
    }

    /// `/message/send` (vivo.md §7 items 4–6, 8–10).
    fn send(&self, body: &Map<String, Value>, token: &str) -> (Answer, Option<MockAnswer>) {
        let reg_id = body.get("regId").and_then(Value::as_str).unwrap_or_default().to_owned();
        let fail = |result| (Answer::result(result), None);
        if let Err(result) = self.check_target(body) {
            return fail(result);
        }
        if let Err(result) = self.check_payload(body, TTL_RANGE_SECS.0) {
            return fail(result);
        }
        let request_id = body.get("requestId").and_then(Value::as_str).unwrap_or_default().to_owned();
        let now = self.core.clock().now();
        if let Some(task_id) = self.repeated(&request_id, now) {
            return (Answer::ok(json!({ "result": 0, "desc": desc(0), "taskId": task_id })), None);
        }
        let script = self.core.take_answer(&reg_id);
        if let Some(answer) = script.as_ref().and_then(|s| self.scripted(s, token)) {
            return (answer, script);
        }
        let task_id = self.task_id();
        let dead = script.as_ref().and_then(|s| s.reason.as_deref()).and_then(invalid_user_word).or_else(|| {
            let test = body.get("pushMode").and_then(int) == Some(1);
            (test && !self.cfg.test_devices.contains(&reg_id)).then_some(NOT_TEST_DEVICE_STATUS)
        });
        if let Some(status) = dead {
            let answer = json!({
                "result": 0, "desc": desc(0), "taskId": task_id,
                "invalidUser": { "status": status, "userid": reg_id },
            });
            return (Answer::ok(answer), script);
        }
        if let Err(result) = self.take_quota(now, 1) {
            return (Answer::result(result), script);
        }
        self.deliver(body, &reg_id, &request_id, &task_id, now);
        self.remember(&request_id, &task_id, now);
        (Answer::ok(json!({ "result": 0, "desc": desc(0), "taskId": task_id })), script)
    }

    /// `/message/saveListPayload`: the send checks minus the target, TTL ≥ 900 s → `taskId`; a
    /// repeated `requestId` answers the task it saved.
    fn save_list(&self, body: &Map<String, Value>, token: &str) -> (Answer, Option<MockAnswer>) {
        if let Err(result) = self.check_payload(body, LIST_MIN_TTL_SECS) {
            return (Answer::result(result), None);
        }
        let request_id = body.get("requestId").and_then(Value::as_str).unwrap_or_default().to_owned();
        let now = self.core.clock().now();
        let repeated = {
            let mut state = lock(&self.state);
            let task = state
                .request_ids
                .get(&request_id)
                .filter(|(at, task)| now - *at < REQUEST_ID_DEDUP_WINDOW && state.payloads.contains_key(task))
                .map(|(_, task)| task.clone());
            state.duplicates += u64::from(task.is_some());
            task
        };
        if let Some(task_id) = repeated {
            return (Answer::ok(json!({ "result": 0, "desc": desc(0), "taskId": task_id })), None);
        }
        let script = self.core.take_answer(SAVE_LIST_SCRIPT);
        if let Some(answer) = script.as_ref().and_then(|s| self.scripted(s, token)) {
            return (answer, script);
        }
        let task_id = self.task_id();
        {
            let mut state = lock(&self.state);
            if state.payloads.len() >= RECORD_CAPACITY {
                state.payloads.clear();
            }
            state.payloads.insert(task_id.clone(), body.clone());
        }
        self.remember(&request_id, &task_id, now);
        (Answer::ok(json!({ "result": 0, "desc": desc(0), "taskId": task_id })), script)
    }

    /// `/message/pushToList`: a saved payload to 2..1000 regIds; dead ones in `invalidUsers`.
    fn push_to_list(&self, body: &Map<String, Value>, token: &str) -> (Answer, Option<MockAnswer>) {
        let reg_ids: Vec<String> = body
            .get("regIds")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect())
            .unwrap_or_default();
        let fail = |result| (Answer::result(result), None);
        let task_id =
            body.get("taskId").and_then(|v| v.as_str().map(str::to_owned).or_else(|| int(v).map(|n| n.to_string())));
        let Some(payload) = task_id.as_ref().and_then(|t| lock(&self.state).payloads.get(t).cloned()) else {
            return fail(TASK_UNKNOWN_RESULT);
        };
        let aliases = body.get("aliases").and_then(Value::as_array).map_or(0, Vec::len);
        if reg_ids.is_empty() && aliases == 0 {
            return fail(10150);
        }
        if !reg_ids.is_empty() && !LIST_TARGETS.contains(&reg_ids.len()) {
            return fail(10153);
        }
        if reg_ids.is_empty() && !LIST_TARGETS.contains(&aliases) {
            return fail(10154);
        }
        if let Err(result) = check_request_id(body) {
            return fail(result);
        }
        let request_id = body.get("requestId").and_then(Value::as_str).unwrap_or_default().to_owned();
        let now = self.core.clock().now();
        let task_id = task_id.unwrap_or_default();
        if self.repeated(&request_id, now).is_some() {
            return (Answer::ok(json!({ "result": 0, "desc": desc(0), "taskId": task_id })), None);
        }
        let request_script = self.core.take_answer(PUSH_TO_LIST_SCRIPT);
        if let Some(answer) = request_script.as_ref().and_then(|s| self.scripted(s, token)) {
            if answer.body.as_ref().is_ok_and(|b| b.get("result").and_then(int) == Some(TASK_UNKNOWN_RESULT)) {
                // The task expired: vivo forgets the payload, and its requestId no longer dedups.
                lock(&self.state).payloads.remove(&task_id);
            }
            return (answer, request_script);
        }
        let test = payload.get("pushMode").and_then(int) == Some(1);
        let mut invalid = Vec::new();
        let mut accepted = Vec::new();
        for id in &reg_ids {
            let script = self.core.take_answer(id);
            let status = if id.len() != self.cfg.reg_id_len {
                Some(1)
            } else if let Some(word) = script.as_ref().and_then(|s| s.reason.as_deref()).and_then(invalid_user_word) {
                Some(word)
            } else if test && !self.cfg.test_devices.contains(id) {
                Some(NOT_TEST_DEVICE_STATUS)
            } else {
                None
            };
            match status {
                Some(status) => invalid.push(json!({ "status": status, "userid": id })),
                None => accepted.push(id),
            }
        }
        if let Err(result) = self.take_quota(now, accepted.len() as u64) {
            return (Answer::result(result), request_script);
        }
        for id in accepted {
            self.deliver(&payload, id, &request_id, &task_id, now);
        }
        self.remember(&request_id, &task_id, now);
        let answer = json!({ "result": 0, "desc": desc(0), "taskId": task_id, "invalidUsers": invalid });
        (Answer::ok(answer), request_script)
    }

    /// regId / alias checks of a single send.
    fn check_target(&self, body: &Map<String, Value>) -> Result<(), i64> {
        let reg_id = body.get("regId").and_then(Value::as_str).filter(|s| !s.is_empty());
        let alias = body.get("alias").and_then(Value::as_str).filter(|s| !s.is_empty());
        match (reg_id, alias) {
            (None, None) => Err(10050),
            (Some(id), _) if id.len() != self.cfg.reg_id_len || !id.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                Err(10302)
            }
            (None, Some(alias)) if chars(alias) > ALIAS_MAX_CHARS => Err(10301),
            _ => Ok(()),
        }
    }

    /// Payload checks shared by send and saveListPayload (vivo.md §7 items 5–6).
    fn check_payload(&self, b: &Map<String, Value>, min_ttl: u64) -> Result<(), i64> {
        if !matches!(b.get("notifyType").and_then(int), Some(1..=4)) {
            return Err(10054);
        }
        let title = b.get("title").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(10055)?;
        if vivo_width(title) > TITLE_MAX_WIDTH {
            return Err(10056);
        }
        let content = b.get("content").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(10057)?;
        if vivo_width(content) > CONTENT_MAX_WIDTH {
            return Err(10058);
        }
        if let Some(ttl) = b.get("timeToLive") {
            let ok = ttl.as_u64().is_some_and(|t| (min_ttl..=TTL_RANGE_SECS.1).contains(&t));
            if !ok {
                return Err(10059);
            }
        }
        let skip_content = b.get("skipContent").and_then(Value::as_str).filter(|s| !s.is_empty());
        match b.get("skipType").and_then(int) {
            Some(1) => {}
            Some(2) => match skip_content {
                None => return Err(10061),
                Some(s) if chars(s) > SKIP_URL_MAX_CHARS => return Err(10062),
                Some(_) => {}
            },
            Some(3 | 4) => match skip_content {
                None => return Err(10063),
                Some(s) if chars(s) > SKIP_CONTENT_MAX_CHARS => return Err(10064),
                Some(_) => {}
            },
            _ => return Err(10060),
        }
        if let Some(network) = b.get("networkType") {
            if !matches!(int(network), Some(-1 | 1)) {
                return Err(10065);
            }
        }
        if let Some(map) = b.get("clientCustomMap") {
            let map = map.as_object().ok_or(10067)?;
            if map.len() > CUSTOM_MAP_MAX_PAIRS {
                return Err(10066);
            }
            let mut total = 0;
            for (k, v) in map {
                total += chars(k) + chars(v.as_str().ok_or(10067)?);
            }
            if total > CUSTOM_MAP_MAX_CHARS {
                return Err(10067);
            }
        }
        if let Some(extra) = b.get("extra").and_then(Value::as_object) {
            if extra.get("callback").and_then(Value::as_str).is_some_and(|s| chars(s) > CALLBACK_MAX_CHARS) {
                return Err(10305);
            }
            if extra.get("callback.param").and_then(Value::as_str).is_some_and(|s| chars(s) > CALLBACK_PARAM_MAX_CHARS)
            {
                return Err(10306);
            }
        }
        check_request_id(b)?;
        // Absent means operation (the SDK's default; disputed, unverified).
        let classification = match b.get("classification") {
            None => 0,
            Some(v) => match int(v) {
                Some(c @ 0..=1) => c,
                _ => return Err(11000),
            },
        };
        if let Some(category) = b.get("category") {
            let category = category.as_str().ok_or(11000)?;
            if !self.cfg.categories.iter().any(|c| c == category) {
                return Err(11000);
            }
            let system = SYSTEM_CATEGORIES.contains(&category);
            if self.cfg.category_must_match_classification && system != (classification == 1) {
                return Err(11000);
            }
        }
        if !matches!(b.get("pushMode").map(int), None | Some(Some(0 | 1))) {
            return Err(11000);
        }
        Ok(())
    }

    /// The taskId of an accepted request with this `requestId` within the dedup window.
    fn repeated(&self, request_id: &str, now: Timestamp) -> Option<String> {
        let mut state = lock(&self.state);
        let task = state
            .request_ids
            .get(request_id)
            .filter(|(at, _)| now - *at < REQUEST_ID_DEDUP_WINDOW)
            .map(|(_, task)| task.clone())?;
        state.duplicates += 1;
        Some(task)
    }

    fn remember(&self, request_id: &str, task_id: &str, now: Timestamp) {
        let mut state = lock(&self.state);
        if state.request_ids.len() >= RECORD_CAPACITY {
            state.request_ids.retain(|_, (at, _)| now - *at < REQUEST_ID_DEDUP_WINDOW);
            if state.request_ids.len() >= RECORD_CAPACITY {
                state.request_ids.clear();
            }
        }
        state.request_ids.insert(request_id.to_owned(), (now, task_id.to_owned()));
    }

    /// Counts `n` arrivals against the daily quota, or refuses them all with 10070.
    fn take_quota(&self, now: Timestamp, n: u64) -> Result<(), i64> {
        let Some(quota) = self.cfg.daily_quota else {
            return Ok(());
        };
        let (day, _) = china(now);
        let mut state = lock(&self.state);
        if state.quota_day != Some(day) {
            state.quota_day = Some(day);
            state.quota_used = 0;
        }
        if state.quota_used + n > quota {
            return Err(DAILY_QUOTA_RESULT);
        }
        state.quota_used += n;
        Ok(())
    }

    fn deliver(&self, payload: &Map<String, Value>, reg_id: &str, request_id: &str, task_id: &str, now: Timestamp) {
        let classification = payload.get("classification").and_then(int);
        let (_, hour) = china(now);
        let deferred = self.cfg.operation_window && classification.unwrap_or(0) == 0 && !(7..23).contains(&hour);
        let text = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut state = lock(&self.state);
        if state.delivered.len() >= RECORD_CAPACITY {
            state.delivered.pop_front();
        }
        state.delivered.push_back(VivoDelivery {
            reg_id: reg_id.to_owned(),
            request_id: request_id.to_owned(),
            title: text("title"),
            content: text("content"),
            classification,
            category: payload.get("category").and_then(Value::as_str).map(str::to_owned),
            push_mode: payload.get("pushMode").and_then(int).unwrap_or(0),
            client_custom_map: payload.get("clientCustomMap").cloned(),
            task_id: task_id.to_owned(),
            deferred,
            at: now,
        });
    }

    fn task_id(&self) -> String {
        (self.tasks.fetch_add(1, Ordering::Relaxed) + 576_000_000_000_001).to_string()
    }
}

/// The regIds a call addresses, `,`-joined, as [`Received::token`](super::Received) records
/// them (`""` for `saveListPayload`).
fn targets(body: Option<&Value>) -> String {
    let Some(body) = body else {
        return String::new();
    };
    if let Some(id) = body.get("regId").and_then(Value::as_str) {
        return id.to_owned();
    }
    let ids = body.get("regIds").and_then(Value::as_array).into_iter().flatten();
    ids.map(|v| v.as_str().unwrap_or_default()).collect::<Vec<_>>().join(",")
}

/// `requestId`: required, at most 64 chars.
fn check_request_id(b: &Map<String, Value>) -> Result<(), i64> {
    let id = b.get("requestId").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(10352)?;
    if chars(id) > REQUEST_ID_MAX_CHARS {
        return Err(10353);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::client;
    use super::super::MockRule;
    use super::*;
    use crate::clock::{Clock, ManualClock};

    const APP_ID: u64 = 10004;
    const APP_KEY: &str = "25509283-3767-4b9e-83fe-b6e55ac6b123";
    const SECRET: &str = "scrt-7f3a-4c21-9e0d-demo";
    const REG_A: &str = "15580731370251120044391";
    const REG_B: &str = "15580731370251120044392";
    const REG_C: &str = "15580731370251120044393";

    fn clock() -> ManualClock {
        // 2026-01-01 00:00 UTC = 08:00 in Beijing.
        ManualClock::new(chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("valid timestamp"))
    }

    async fn start_with(clock: &ManualClock, tweak: impl FnOnce(&mut MockVivoConfig)) -> MockVivo {
        let mut cfg = MockVivoConfig::new(APP_ID, APP_KEY, SECRET);
        cfg.clock = Arc::new(clock.clone());
        tweak(&mut cfg);
        MockVivo::start(cfg).await.expect("mock starts")
    }

    async fn start(clock: &ManualClock) -> MockVivo {
        start_with(clock, |_| {}).await
    }

    async fn post(c: &reqwest::Client, mock: &MockVivo, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let url = mock.url().join(path.trim_start_matches('/')).expect("url");
        let mut req = c.post(url).json(body);
        if let Some(t) = token {
            req = req.header("authToken", t);
        }
        let response = req.send().await.expect("mock answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn auth_body(clock: &ManualClock) -> Value {
        let ts = clock.now().timestamp_millis();
        json!({ "appId": APP_ID, "appKey": APP_KEY, "timestamp": ts, "sign": sign(APP_ID, APP_KEY, ts, SECRET) })
    }

    async fn auth_token(c: &reqwest::Client, mock: &MockVivo, clock: &ManualClock) -> String {
        let (status, body) = post(c, mock, AUTH, None, &auth_body(clock)).await;
        assert_eq!((status, body["result"].as_i64()), (200, Some(0)), "{body}");
        body["authToken"].as_str().expect("token").to_owned()
    }

    fn message(reg_id: &str, request_id: &str) -> Value {
        json!({
            "regId": reg_id, "notifyType": 4, "title": "Alice", "content": "See you at 6?",
            "timeToLive": 86400, "skipType": 1, "networkType": -1, "classification": 1, "category": "IM",
            "requestId": request_id, "pushMode": 0, "clientCustomMap": { "conv": "c42" }
        })
    }

    /// A `saveListPayload` body: [`message`] without its regId.
    fn list_payload(request_id: &str) -> Value {
        let mut payload = message(REG_A, request_id);
        if let Some(o) = payload.as_object_mut() {
            o.remove("regId");
        }
        payload
    }

    #[tokio::test]
    async fn a_signed_auth_then_a_send_is_delivered_and_recorded() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;

        let (status, body) = post(&c, &mock, SEND, Some(&token), &message(REG_A, "r-1")).await;

        assert_eq!((status, body["result"].as_i64()), (200, Some(0)), "{body}");
        assert!(body["taskId"].is_string());
        let got = mock.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].token, REG_A);
        assert_eq!(got[0].body["classification"], 1);
        let d = mock.delivered_to(REG_A);
        assert_eq!((d[0].classification, d[0].category.as_deref()), (Some(1), Some("IM")));
        assert_eq!(d[0].request_id, "r-1");
        assert_eq!(mock.auth_requests(), 1);
    }

    #[tokio::test]
    async fn auth_rejects_bad_fields_signatures_and_stale_timestamps() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.auth_per_sec = 100).await;
        let c = client(&mock, false);
        let good = auth_body(&clock);
        let with = |k: &str, v: Value| {
            let mut b = good.clone();
            b[k] = v;
            b
        };
        let without = |k: &str| {
            let mut b = good.clone();
            if let Some(o) = b.as_object_mut() {
                o.remove(k);
            }
            b
        };
        let a = AUTH_CODES;
        let stale_ts = clock.now().timestamp_millis() - 11 * 60 * 1000;
        let cases: Vec<(&str, Value, i64)> = vec![
            ("no appId", without("appId"), a.app_id_missing),
            ("string appId", with("appId", json!("10004")), a.app_id_invalid),
            ("other appId", with("appId", json!(10005)), a.app_id_invalid),
            ("no appKey", without("appKey"), a.app_key_missing),
            ("other appKey", with("appKey", json!("x")), a.app_key_invalid),
            ("no timestamp", without("timestamp"), a.timestamp_missing),
            ("no sign", without("sign"), a.sign_missing),
            ("bad sign", with("sign", json!("0".repeat(32))), a.sign_invalid),
            (
                "stale",
                with("timestamp", json!(stale_ts)).tap(|b| b["sign"] = json!(sign(APP_ID, APP_KEY, stale_ts, SECRET))),
                a.timestamp_invalid,
            ),
        ];
        let mut failures = Vec::new();
        for (name, body, result) in &cases {
            let (status, answer) = post(&c, &mock, AUTH, None, body).await;
            if status != 200 || answer["result"] != *result {
                failures.push(format!("{name}: expected {result}, got {status} {answer}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(mock.tokens_issued(), 0);
    }

    trait Tap: Sized {
        fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
    }

    impl Tap for Value {
        fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }
    }

    #[tokio::test]
    async fn auth_is_limited_to_ten_calls_per_second_and_tokens_stay_valid_together() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let mut tokens = Vec::new();
        for _ in 0..10 {
            tokens.push(auth_token(&c, &mock, &clock).await);
        }
        let (_, eleventh) = post(&c, &mock, AUTH, None, &auth_body(&clock)).await;
        clock.advance(chrono::Duration::seconds(1));
        let next_second = auth_token(&c, &mock, &clock).await;

        assert_eq!(eleventh["result"], RATE_LIMITED_RESULT);
        assert!(!next_second.is_empty());
        for (i, t) in tokens.iter().enumerate() {
            let (_, body) = post(&c, &mock, SEND, Some(t), &message(REG_A, &format!("r-{i}"))).await;
            assert_eq!(body["result"], 0, "token {i}: {body}");
        }
    }

    #[tokio::test]
    async fn tokens_expire_revoke_and_must_match_the_body_app_id() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.token_ttl_secs = 3600).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let mut other_app = message(REG_A, "r-app");
        other_app["appId"] = json!(99);

        let (_, mismatch) = post(&c, &mock, SEND, Some(&token), &other_app).await;
        let (_, missing) = post(&c, &mock, SEND, None, &message(REG_A, "r-0")).await;
        clock.advance(chrono::Duration::seconds(3599));
        let (_, before) = post(&c, &mock, SEND, Some(&token), &message(REG_A, "r-1")).await;
        clock.advance(chrono::Duration::seconds(1));
        let (_, after) = post(&c, &mock, SEND, Some(&token), &message(REG_A, "r-2")).await;
        let fresh = auth_token(&c, &mock, &clock).await;
        mock.script(MockRule::any(MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));
        let (_, revoked) = post(&c, &mock, SEND, Some(&fresh), &message(REG_A, "r-3")).await;
        let (_, still) = post(&c, &mock, SEND, Some(&fresh), &message(REG_A, "r-4")).await;

        assert_eq!(mismatch["result"], 10094);
        assert_eq!(missing["result"], AUTH_INVALID_RESULT);
        assert_eq!((before["result"].as_i64(), after["result"].as_i64()), (Some(0), Some(AUTH_INVALID_RESULT)));
        assert_eq!((revoked["result"].as_i64(), still["result"].as_i64()), (Some(10000), Some(10000)));
        assert!(mock.received().iter().all(|r| r.token == REG_A), "refused sends are recorded under their regId");
    }

    #[tokio::test]
    async fn send_fields_are_checked_with_the_sdk_codes() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.category_must_match_classification = true).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut m = message(REG_A, "r");
            f(&mut m);
            m
        };
        let cases: Vec<(&str, Value, i64)> = vec![
            ("no target", edit(&|m| m["regId"] = json!("")), 10050),
            ("short regId", edit(&|m| m["regId"] = json!("123")), 10302),
            ("notifyType 5", edit(&|m| m["notifyType"] = json!(5)), 10054),
            ("no title", edit(&|m| m["title"] = json!("")), 10055),
            ("title 21 CJK", edit(&|m| m["title"] = json!("群".repeat(21))), 10056),
            ("no content", edit(&|m| m["content"] = json!("")), 10057),
            ("content 51 CJK", edit(&|m| m["content"] = json!("你".repeat(51))), 10058),
            ("ttl 59", edit(&|m| m["timeToLive"] = json!(59)), 10059),
            ("ttl 8 days", edit(&|m| m["timeToLive"] = json!(691_200)), 10059),
            ("skipType 5", edit(&|m| m["skipType"] = json!(5)), 10060),
            ("url missing", edit(&|m| m["skipType"] = json!(2)), 10061),
            ("intent missing", edit(&|m| m["skipType"] = json!(4)), 10063),
            ("networkType 0", edit(&|m| m["networkType"] = json!(0)), 10065),
            (
                "11 pairs",
                edit(&|m| {
                    m["clientCustomMap"] = Value::Object((0..11).map(|i| (format!("k{i}"), json!("v"))).collect())
                }),
                10066,
            ),
            ("number value", edit(&|m| m["clientCustomMap"] = json!({ "n": 1 })), 10067),
            ("map 1025", edit(&|m| m["clientCustomMap"] = json!({ "k": "x".repeat(1024) })), 10067),
            ("callback 129", edit(&|m| m["extra"] = json!({ "callback": "x".repeat(129) })), 10305),
            ("no requestId", edit(&|m| m["requestId"] = json!("")), 10352),
            ("requestId 65", edit(&|m| m["requestId"] = json!("r".repeat(65))), 10353),
            ("classification 2", edit(&|m| m["classification"] = json!(2)), 11000),
            ("unknown category", edit(&|m| m["category"] = json!("GAMES")), 11000),
            ("IM as operation", edit(&|m| m["classification"] = json!(0)), 11000),
        ];
        let mut failures = Vec::new();
        for (name, body, result) in &cases {
            let (status, answer) = post(&c, &mock, SEND, Some(&token), body).await;
            if status != 200 || answer["result"] != *result {
                failures.push(format!("{name}: expected {result}, got {status} {answer}"));
            }
        }
        let ascii_title = edit(&|m| m["title"] = json!("x".repeat(40)));
        let (_, forty_ascii) = post(&c, &mock, SEND, Some(&token), &ascii_title).await;

        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(forty_ascii["result"], 0, "40 ASCII chars fit");
        assert_eq!(mock.delivered().len(), 1);
    }

    #[tokio::test]
    async fn a_repeated_request_id_is_answered_but_delivered_once() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;

        let (_, first) = post(&c, &mock, SEND, Some(&token), &message(REG_A, "r-1")).await;
        let (_, again) = post(&c, &mock, SEND, Some(&token), &message(REG_A, "r-1")).await;
        clock.advance(chrono::Duration::hours(25));
        let fresh = auth_token(&c, &mock, &clock).await;
        let (_, later) = post(&c, &mock, SEND, Some(&fresh), &message(REG_A, "r-1")).await;

        assert_eq!(first["taskId"], again["taskId"]);
        assert_eq!(mock.duplicates(), 1);
        assert_ne!(later["taskId"], first["taskId"], "outside the dedup window");
        assert_eq!(mock.delivered_to(REG_A).len(), 2);
    }

    #[tokio::test]
    async fn scripted_results_dead_targets_statuses_and_malformed_bodies() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let once = |a: MockAnswer| MockRule::for_token(REG_A, a).times(1);
        mock.script(once(MockAnswer::with_reason("10070")));
        mock.script(once(MockAnswer::with_reason("uninstalled")));
        mock.script(once(MockAnswer::with_status(500)));
        mock.script(once(MockAnswer::with_reason("malformed")));
        mock.script(once(MockAnswer { retry_after_secs: Some(2), ..MockAnswer::with_reason("10071") }));

        let mut got = Vec::new();
        for i in 0..6 {
            got.push(post(&c, &mock, SEND, Some(&token), &message(REG_A, &format!("r-{i}"))).await);
        }

        assert_eq!(got[0].1["result"], 10070);
        assert_eq!(got[1].1["result"], 0);
        assert_eq!(got[1].1["invalidUser"], json!({ "status": 2, "userid": REG_A }));
        assert_eq!(got[2], (500, Value::String(SERVER_ERROR.to_owned())));
        assert_eq!(got[3], (200, Value::String(MALFORMED.to_owned())));
        assert_eq!(got[4].1["result"], RATE_LIMITED_RESULT);
        assert_eq!(got[5].1["result"], 0);
        assert_eq!(mock.delivered_to(REG_A).len(), 1);
        assert_eq!(mock.answered(10070), 1);
    }

    #[tokio::test]
    async fn test_mode_reaches_only_registered_test_devices() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.test_devices = vec![REG_A.to_owned()]).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let test = |reg: &str, r: &str| {
            let mut m = message(reg, r);
            m["pushMode"] = json!(1);
            m
        };

        let (_, ok) = post(&c, &mock, SEND, Some(&token), &test(REG_A, "t-1")).await;
        let (_, not_test) = post(&c, &mock, SEND, Some(&token), &test(REG_B, "t-2")).await;

        assert!(ok.get("invalidUser").is_none(), "{ok}");
        assert_eq!(not_test["invalidUser"]["status"], 4);
        assert_eq!(mock.delivered().len(), 1);
    }

    #[tokio::test]
    async fn the_daily_quota_answers_10070_until_the_china_day_turns() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.daily_quota = Some(1)).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;

        let (_, first) = post(&c, &mock, SEND, Some(&token), &message(REG_A, "q-1")).await;
        let (_, over) = post(&c, &mock, SEND, Some(&token), &message(REG_A, "q-2")).await;
        clock.advance(chrono::Duration::hours(16));
        let (_, next_day) = post(&c, &mock, SEND, Some(&token), &message(REG_A, "q-2")).await;

        assert_eq!((first["result"].as_i64(), over["result"].as_i64()), (Some(0), Some(10070)));
        assert_eq!(next_day["result"], 0);
    }

    #[tokio::test]
    async fn operation_messages_outside_the_window_are_held() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.operation_window = true).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let mut operation = message(REG_A, "o-1");
        operation["classification"] = json!(0);
        operation["category"] = json!("MARKETING");
        // 08:00 + 15 h = 23:00 Beijing: outside the window.
        clock.advance(chrono::Duration::hours(15));

        let (_, held) = post(&c, &mock, SEND, Some(&token), &operation).await;
        let (_, system) = post(&c, &mock, SEND, Some(&token), &message(REG_B, "s-1")).await;

        assert_eq!((held["result"].as_i64(), system["result"].as_i64()), (Some(0), Some(0)));
        assert!(mock.delivered_to(REG_A)[0].deferred);
        assert!(!mock.delivered_to(REG_B)[0].deferred);
    }

    #[tokio::test]
    async fn a_group_payload_is_saved_then_pushed_to_a_list_with_dead_targets_listed() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let payload = list_payload("save-1");
        mock.script(MockRule::for_token(REG_B, MockAnswer::with_reason("unknown")));

        let (_, short_ttl) =
            post(&c, &mock, SAVE_LIST, Some(&token), &payload.clone().tap(|p| p["timeToLive"] = json!(600))).await;
        let (_, saved) = post(&c, &mock, SAVE_LIST, Some(&token), &payload).await;
        let task = saved["taskId"].as_str().expect("taskId").to_owned();
        let list = |ids: Vec<&str>, r: &str| json!({ "regIds": ids, "taskId": task, "requestId": r });
        let (_, pushed) = post(&c, &mock, PUSH_TO_LIST, Some(&token), &list(vec![REG_A, REG_B, REG_C], "l-1")).await;
        let (_, one) = post(&c, &mock, PUSH_TO_LIST, Some(&token), &list(vec![REG_A], "l-2")).await;
        let unknown_task = json!({ "regIds": [REG_A, REG_C], "taskId": "nope", "requestId": "l-3" });
        let (_, no_task) = post(&c, &mock, PUSH_TO_LIST, Some(&token), &unknown_task).await;

        assert_eq!(short_ttl["result"], 10059);
        assert_eq!(pushed["result"], 0, "{pushed}");
        assert_eq!(pushed["invalidUsers"], json!([{ "status": 1, "userid": REG_B }]));
        assert_eq!(one["result"], 10153);
        assert_eq!(no_task["result"], 10151);
        let delivered: Vec<String> = mock.delivered().into_iter().map(|d| d.reg_id).collect();
        assert_eq!(delivered, vec![REG_A.to_owned(), REG_C.to_owned()]);
        let lists: Vec<String> =
            mock.received().into_iter().filter(|r| r.headers[":path"] == PUSH_TO_LIST).map(|r| r.token).collect();
        assert_eq!(lists, vec![format!("{REG_A},{REG_B},{REG_C}"), REG_A.to_owned(), format!("{REG_A},{REG_C}")]);
    }

    #[tokio::test]
    async fn the_group_calls_are_scripted_by_name_and_a_repeated_upload_answers_its_first_task() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let payload = list_payload;
        mock.script(MockRule::for_token(PUSH_TO_LIST_SCRIPT, MockAnswer::with_reason("10071")).times(1));
        mock.script(MockRule::for_token(SAVE_LIST_SCRIPT, MockAnswer::with_reason("10252")).times(1));

        let (_, over_quota) = post(&c, &mock, SAVE_LIST, Some(&token), &payload("save-1")).await;
        let (_, saved) = post(&c, &mock, SAVE_LIST, Some(&token), &payload("save-1")).await;
        let (_, again) = post(&c, &mock, SAVE_LIST, Some(&token), &payload("save-1")).await;
        let (_, other) = post(&c, &mock, SAVE_LIST, Some(&token), &payload("save-2")).await;
        let list = json!({ "regIds": [REG_A, REG_B], "taskId": saved["taskId"], "requestId": "l-1" });
        let (_, limited) = post(&c, &mock, PUSH_TO_LIST, Some(&token), &list).await;
        let (_, pushed) = post(&c, &mock, PUSH_TO_LIST, Some(&token), &list).await;

        assert_eq!(over_quota["result"], 10252);
        assert_eq!((saved["result"].as_i64(), again["result"].as_i64()), (Some(0), Some(0)));
        assert_eq!(again["taskId"], saved["taskId"], "a repeated requestId answers the saved task");
        assert_ne!(other["taskId"], saved["taskId"]);
        assert_eq!(mock.duplicates(), 1);
        assert_eq!(limited["result"], RATE_LIMITED_RESULT);
        assert_eq!(pushed["result"], 0, "{pushed}");
        assert_eq!(mock.delivered().len(), 2);
    }

    #[tokio::test]
    async fn a_scripted_10151_expires_the_task_so_only_a_new_upload_helps() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let payload = list_payload("save-1");
        mock.script(MockRule::for_token(PUSH_TO_LIST_SCRIPT, MockAnswer::with_reason("10151")).times(1));

        let (_, saved) = post(&c, &mock, SAVE_LIST, Some(&token), &payload).await;
        let list = |task: &Value, r: &str| json!({ "regIds": [REG_A, REG_B], "taskId": task, "requestId": r });
        let (_, expired) = post(&c, &mock, PUSH_TO_LIST, Some(&token), &list(&saved["taskId"], "l-1")).await;
        let (_, still) = post(&c, &mock, PUSH_TO_LIST, Some(&token), &list(&saved["taskId"], "l-2")).await;
        let (_, again) = post(&c, &mock, SAVE_LIST, Some(&token), &payload).await;
        let (_, pushed) = post(&c, &mock, PUSH_TO_LIST, Some(&token), &list(&again["taskId"], "l-3")).await;

        assert_eq!((expired["result"].as_i64(), still["result"].as_i64()), (Some(10151), Some(10151)));
        assert_eq!(again["result"], 0);
        assert_ne!(again["taskId"], saved["taskId"], "the repeated requestId no longer answers the dead task");
        assert_eq!(pushed["result"], 0, "{pushed}");
        assert_eq!(mock.delivered().len(), 2);
    }

    #[test]
    fn width_counts_cjk_as_two() {
        assert_eq!(vivo_width("abc"), 3);
        assert_eq!(vivo_width("你好"), 4);
        assert_eq!(vivo_width("ｈｉ"), 4);
        assert_eq!(vivo_width("é"), 1);
    }
}
