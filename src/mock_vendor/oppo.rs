//! Mock OPPO Push: the signed auth call and the notification endpoints (`unicast`,
//! `unicast_batch`, `save_message_content`, `broadcast`), validating as `docs/vendors/oppo.md`
//! §7 describes and answering with OPPO's `{code, message, data}` bodies in HTTP 200.
//!
//! Owns: auth (SHA-256 signature, timestamp window, opaque tokens that expire on the mock clock
//! and can be revoked), form and message checks with OPPO's codes, the IM class checks
//! (category allow-list, `notify_level`, optional category / template requirements),
//! registration-id format, per-target dedup by `app_message_id`, the daily quota (code 33),
//! per-entry results of a batch, and the record of deliveries. Does not own: TLS, the request
//! record and rules (`mod.rs`, `tls.rs`). Auth calls are counted ([`MockOppo::auth_requests`]),
//! not recorded as [`Received`](super::Received) entries: the record is the sends.
//!
//! Scripting ([`MockAnswer`]): `reason` is an OPPO code as text (`"10000"`, `"33"`, `"-2"`,
//! `"11"`, …) or `"malformed"` (a body that is not JSON); `status` answers that HTTP status;
//! `expire_auth` revokes the token used and answers 11; `retry_after_secs` and `delay_ms` as
//! usual. In a `unicast_batch`, a rule without a token answers the whole request; a rule for a
//! registration id sets that entry's `errorCode` (its `status`, `expire_auth` or `malformed`
//! answer the whole request). Not scriptable: dropped connections, auth-call failures.
//!
//! ```text
//! POST /server/v1/auth ─▶ app_key, timestamp (±10 min), sign ─▶ auth_token (expires)
//! POST …/unicast | …/unicast_batch ─▶ auth_token ─▶ message(s) ─▶ notification ─▶ ids
//!                                   ─▶ scripted rule? ─▶ quota ─▶ dedup ─▶ record ─▶ answer
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{HeaderName, Method, Request};
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
use crate::provider::oppo::{
    sign, ACTION_PARAMETERS_MAX_CHARS, CONTENT_MAX_CHARS, MAX_OFFLINE_TTL_SECS, TITLE_MAX_CHARS,
};

const AUTH: &str = "/server/v1/auth";
const UNICAST: &str = "/server/v1/message/notification/unicast";
const UNICAST_BATCH: &str = "/server/v1/message/notification/unicast_batch";
const SAVE_MESSAGE: &str = "/server/v1/message/notification/save_message_content";
const BROADCAST: &str = "/server/v1/message/notification/broadcast";

/// Most message objects in a `unicast_batch`, ids in a `broadcast`.
const MAX_TARGETS: usize = 1000;
/// Longest registration id the mock accepts, in bytes.
const MAX_REG_ID_BYTES: usize = 256;
/// `content` limits by `style` (1 standard, 2 long text, 3 big picture).
const STYLE_CONTENT_MAX: [(i64, usize); 3] = [(1, CONTENT_MAX_CHARS), (2, 128), (3, 50)];
const SUB_TITLE_MAX_CHARS: usize = 10;
const ACTIVITY_MAX_CHARS: usize = 500;
const URL_MAX_CHARS: usize = 2000;

/// The categories OPPO knows (oppo.md §3.1; the list beyond IM, ORDER, TODO and MARKETING is
/// unverified).
pub const DEFAULT_CATEGORIES: &[&str] =
    &["IM", "ACCOUNT", "DEVICE_REMINDER", "ORDER", "TODO", "SUBSCRIPTION", "NEWS", "CONTENT", "MARKETING", "SOCIAL"];

/// Configuration of a [`MockOppo`].
#[derive(Clone)]
pub struct MockOppoConfig {
    /// Where to listen; default `127.0.0.1:0`.
    pub addr: std::net::SocketAddr,
    /// TLS material to share with other mocks; `None` generates a CA for this mock.
    pub tls: Option<Arc<MockTls>>,
    /// The clock auth timestamps, token expiry and the quota day are measured with.
    pub clock: SharedClock,
    /// The only AppKey the auth call accepts.
    pub app_key: String,
    /// Its MasterSecret, to check signatures with.
    pub master_secret: String,
    /// The numeric app id in `messageId`s (`<app_id>-1-1-<hex>`).
    pub app_id: String,
    /// Lifetime of issued auth tokens (OPPO: 24 h).
    pub token_ttl_secs: u64,
    /// How far an auth `timestamp` may be from the mock clock (OPPO: about 10 min).
    pub timestamp_skew_secs: i64,
    /// Accepted `category` values.
    pub categories: Vec<String>,
    /// Answer 67 to notifications without a `category` (apps enabled after the 2024 cut-over).
    pub require_category: bool,
    /// Answer 54 to notifications without `private_msg_template_id`.
    pub require_template: bool,
    /// Deliveries per China day before code 33; `None` = unlimited.
    pub daily_quota: Option<u64>,
}

impl std::fmt::Debug for MockOppoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockOppoConfig")
            .field("addr", &self.addr)
            .field("app_key", &self.app_key)
            .field("app_id", &self.app_id)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("daily_quota", &self.daily_quota)
            .finish_non_exhaustive()
    }
}

impl MockOppoConfig {
    /// A config for one app with every other setting at its default.
    pub fn new(app_key: impl Into<String>, master_secret: impl Into<String>) -> Self {
        Self {
            addr: default_addr(),
            tls: None,
            clock: Arc::new(SystemClock),
            app_key: app_key.into(),
            master_secret: master_secret.into(),
            app_id: "30012345".to_owned(),
            token_ttl_secs: 86_400,
            timestamp_skew_secs: 600,
            categories: DEFAULT_CATEGORIES.iter().map(|c| (*c).to_owned()).collect(),
            require_category: false,
            require_template: false,
            daily_quota: None,
        }
    }
}

/// One notification the mock accepted for a target (a deduplicated resend is not listed again).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OppoDelivery {
    /// The target's registration id (or alias).
    pub registration_id: String,
    /// `notification.app_message_id`, if sent.
    pub app_message_id: Option<String>,
    /// `notification.title`.
    pub title: String,
    /// `notification.content`.
    pub content: String,
    /// `notification.category`, if sent.
    pub category: Option<String>,
    /// `notification.notify_level`, if sent.
    pub notify_level: Option<i64>,
    /// `notification.channel_id`, if sent.
    pub channel_id: Option<String>,
    /// `notification.action_parameters`, if sent.
    pub action_parameters: Option<String>,
    /// When the mock accepted it (mock clock).
    pub at: Timestamp,
}

/// A running mock OPPO Push. Derefs to [`MockServer`] for rules, the record and counters.
/// Cheap to clone; clones share the server.
#[derive(Clone)]
pub struct MockOppo {
    server: MockServer,
    oppo: Arc<Oppo>,
}

impl std::fmt::Debug for MockOppo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockOppo").field("server", &self.server).finish_non_exhaustive()
    }
}

impl Deref for MockOppo {
    type Target = MockServer;

    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl From<MockOppo> for MockServer {
    fn from(mock: MockOppo) -> MockServer {
        mock.server
    }
}

impl MockOppo {
    /// Binds `cfg.addr` and serves HTTPS on the current tokio runtime; returns once listening.
    pub async fn start(cfg: MockOppoConfig) -> std::io::Result<Self> {
        let protocols = Protocols::H2OrHttp1 { max_concurrent_streams: 1000 };
        let (server, oppo) = start_mock("oppo", cfg.addr, cfg.tls.clone(), cfg.clock.clone(), protocols, |core| Oppo {
            core,
            cfg,
            state: Mutex::new(State::default()),
            tokens: AccessTokens::new(),
            auth_requests: AtomicU64::new(0),
        })
        .await?;
        Ok(Self { server, oppo })
    }

    /// Calls to the auth endpoint so far, successful or not.
    pub fn auth_requests(&self) -> u64 {
        self.oppo.auth_requests.load(Ordering::Relaxed)
    }

    /// Auth tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.oppo.tokens.issued()
    }

    /// Notifications accepted, oldest first (at most [`RECORD_CAPACITY`]).
    pub fn delivered(&self) -> Vec<OppoDelivery> {
        lock(&self.oppo.state).delivered.iter().cloned().collect()
    }

    /// Notifications accepted for `registration_id`.
    pub fn delivered_to(&self, registration_id: &str) -> Vec<OppoDelivery> {
        let state = lock(&self.oppo.state);
        state.delivered.iter().filter(|d| d.registration_id == registration_id).cloned().collect()
    }

    /// Resends of an `app_message_id` to a target that already had it (accepted, not delivered).
    pub fn duplicates(&self) -> u64 {
        lock(&self.oppo.state).duplicates
    }

    /// How often `code` was answered, at the top level or as a batch entry's `errorCode`.
    pub fn answered(&self, code: i64) -> u64 {
        lock(&self.oppo.state).codes.get(&code).copied().unwrap_or(0)
    }
}

struct Oppo {
    core: Arc<Core>,
    cfg: MockOppoConfig,
    state: Mutex<State>,
    tokens: AccessTokens,
    auth_requests: AtomicU64,
}

#[derive(Default)]
struct State {
    /// `(target, app_message_id)` pairs delivered.
    seen: HashSet<(String, String)>,
    delivered: VecDeque<OppoDelivery>,
    duplicates: u64,
    codes: HashMap<i64, u64>,
    /// The China day the quota counts, and deliveries in it.
    quota_day: Option<chrono::NaiveDate>,
    quota_used: u64,
    /// Saved broadcast contents by message_id.
    saved: HashSet<String>,
}

/// An answer: HTTP status, body (`None` = the non-JSON `malformed` body), extra headers.
struct Answer {
    http: u16,
    body: Option<Value>,
    headers: Vec<(HeaderName, String)>,
}

impl Answer {
    fn json(body: Value) -> Self {
        Self { http: 200, body: Some(body), headers: Vec::new() }
    }
}

fn code_body(code: i64) -> Value {
    json!({ "code": code, "message": code_message(code) })
}

/// OPPO's wording for a code (oppo.md §5).
fn code_message(code: i64) -> &'static str {
    match code {
        0 => "success",
        -1 => "Service Currently Unavailable",
        -2 => "Server Flow Control",
        11 => "Invalid AuthToken",
        12 => "Http Action Not Allowed",
        13 => "App Call Limited",
        14 => "Invalid App Key",
        15 => "Missing App Key",
        16 => "Invalid Signature",
        17 => "Missing Signature",
        18 => "Missing Timestamp",
        19 => "Invalid Timestamp",
        25 => "Invalid Encoding",
        29 => "Missing AuthToken",
        31 => "Data Not Exist",
        33 => "The Number Of Messages Exceeds The Daily Limit",
        40 => "Missing Required Arguments",
        41 => "Invalid Arguments",
        54 => "private_msg_template_id is null",
        55 => "App Call Frequency Limited",
        67 => "Invalid category or notify_level",
        10000 => "registration_id格式不正确",
        _ => "scripted",
    }
}

/// `obj[snake]`, or its camelCase twin (the doc's own example uses camelCase).
fn field<'a>(obj: &'a Map<String, Value>, snake: &str) -> Option<&'a Value> {
    obj.get(snake).or_else(|| {
        let mut camel = String::with_capacity(snake.len());
        let mut upper = false;
        for c in snake.chars() {
            match c {
                '_' => upper = true,
                c if upper => {
                    camel.extend(c.to_uppercase());
                    upper = false;
                }
                c => camel.push(c),
            }
        }
        obj.get(&camel)
    })
}

fn text<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    field(obj, name).and_then(Value::as_str)
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// A registration id as OPPO issues them: 32 hex chars, optionally prefixed (`CN_`,
/// `OPPO_CN_`, …); ASCII without `;`, `,` or whitespace; at most 256 bytes.
pub fn valid_registration_id(id: &str) -> bool {
    let tail = id.rsplit('_').next().unwrap_or_default();
    id.len() <= MAX_REG_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
        && tail.len() == 32
        && tail.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The China day of `t`: OPPO's quota day.
fn china_day(t: Timestamp) -> chrono::NaiveDate {
    t.with_timezone(&chrono_tz::Asia::Shanghai).date_naive()
}

/// A parsed, valid message object.
struct Target {
    id: String,
    /// Registration id (2) or alias (5).
    by_registration_id: bool,
    notification: Map<String, Value>,
}

impl Vendor for Oppo {
    type ConnState = ();

    async fn handle(&self, req: Request<Incoming>, conn: &Conn<()>) -> Reply {
        let read = ReadRequest::read(req).await;
        let path = read.path.as_str();
        if path == AUTH {
            return self.auth(&read);
        }
        if ![UNICAST, UNICAST_BATCH, SAVE_MESSAGE, BROADCAST].contains(&path) {
            return reply(404, &[], Some(&json!({ "code": 404, "message": "Not Found" })));
        }
        let form = Form::read(&read);
        let token = form.targets();
        let (answer, script) = self.send(&read, &form);
        if let Some(body) = &answer.body {
            self.count(body);
        }
        let recorded = answer.body.clone().unwrap_or_else(|| Value::String(MALFORMED.to_owned()));
        let mut received = read.received("oppo", token, conn.id, answer.http, recorded);
        received.body = form.to_json();
        self.core.record(received);
        scripted_delay(script.as_ref()).await;
        match &answer.body {
            Some(body) => reply(answer.http, &answer.headers, Some(body)),
            None => {
                let mut r = reply(answer.http, &answer.headers, None);
                *r.body_mut() = http_body_util::Full::new(bytes::Bytes::from_static(MALFORMED.as_bytes()));
                r
            }
        }
    }
}

/// The body of a `malformed` answer.
const MALFORMED: &str = "<html><body>502 Bad Gateway</body></html>";

/// The decoded form of a request (empty unless `application/x-www-form-urlencoded`).
struct Form {
    fields: Vec<(String, String)>,
    /// A field did not decode to UTF-8.
    bad_encoding: bool,
}

impl Form {
    fn read(r: &ReadRequest) -> Form {
        if !r.content_type_is("application/x-www-form-urlencoded") {
            return Form { fields: Vec::new(), bad_encoding: false };
        }
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(&r.body).into_owned().collect();
        let bad_encoding = std::str::from_utf8(&r.body).is_err()
            || fields.iter().any(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}'));
        Form { fields, bad_encoding }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The ids a send addresses, `,`-joined, as [`Received::token`](super::Received) records
    /// them: `message.target_value`, each of `messages`, or a broadcast's `target_value`.
    fn targets(&self) -> String {
        let target = |m: &Value| m.as_object().and_then(|o| text(o, "target_value")).unwrap_or_default().to_owned();
        let parsed = |name| self.get(name).and_then(|raw| serde_json::from_str::<Value>(raw).ok());
        if let Some(m) = parsed("message") {
            return target(&m);
        }
        if let Some(Value::Array(ms)) = parsed("messages") {
            return ms.iter().map(target).collect::<Vec<_>>().join(",");
        }
        self.get("target_value").unwrap_or_default().split(';').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(",")
    }

    /// The form as recorded: fields as strings, `message(s)` parsed when JSON, `auth_token`
    /// cut to 8 chars.
    fn to_json(&self) -> Value {
        let mut out = Map::new();
        for (k, v) in &self.fields {
            let value = match k.as_str() {
                "message" | "messages" => serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone())),
                "auth_token" => Value::String(v.chars().take(8).collect()),
                _ => Value::String(v.clone()),
            };
            out.insert(k.clone(), value);
        }
        Value::Object(out)
    }
}

impl Oppo {
    fn count(&self, body: &Value) {
        let mut state = lock(&self.state);
        if let Some(code) = body.get("code").and_then(int) {
            *state.codes.entry(code).or_default() += 1;
        }
        for entry in body.get("data").and_then(Value::as_array).into_iter().flatten() {
            if let Some(code) = entry.get("errorCode").and_then(int) {
                *state.codes.entry(code).or_default() += 1;
            }
        }
    }

    /// `POST /server/v1/auth` (oppo.md §7 item 3).
    fn auth(&self, r: &ReadRequest) -> Reply {
        self.auth_requests.fetch_add(1, Ordering::Relaxed);
        let body = match self.check_auth(r) {
            Ok((token, created)) => json!({
                "code": 0,
                "message": "success",
                "data": { "auth_token": token, "create_time": created },
            }),
            Err(code) => code_body(code),
        };
        self.count(&body);
        reply(200, &[], Some(&body))
    }

    fn check_auth(&self, r: &ReadRequest) -> Result<(String, i64), i64> {
        if r.method != Method::POST {
            return Err(12);
        }
        let form = Form::read(r);
        if form.bad_encoding {
            return Err(25);
        }
        let app_key = form.get("app_key").filter(|s| !s.is_empty()).ok_or(15)?;
        let timestamp = form.get("timestamp").filter(|s| !s.is_empty()).ok_or(18)?;
        let signature = form.get("sign").filter(|s| !s.is_empty()).ok_or(17)?;
        if app_key != self.cfg.app_key {
            return Err(14);
        }
        let now = self.core.clock().now();
        let ts = (timestamp.len() == 13 && timestamp.bytes().all(|b| b.is_ascii_digit()))
            .then(|| timestamp.parse::<i64>().ok())
            .flatten()
            .ok_or(19)?;
        if (ts - now.timestamp_millis()).abs() > self.cfg.timestamp_skew_secs.saturating_mul(1000) {
            return Err(19);
        }
        if signature != sign(app_key, ts, &self.cfg.master_secret) {
            return Err(16);
        }
        let token = self.tokens.issue(app_key, now, self.cfg.token_ttl_secs, |_| {
            format!("{:032x}", rand::random::<u128>())[..24].to_owned()
        });
        Ok((token, now.timestamp_millis()))
    }

    /// The token a send carries, if live (29 missing, 11 unknown / expired / revoked).
    fn authenticate(&self, form: &Form) -> Result<String, i64> {
        let token = form.get("auth_token").filter(|s| !s.is_empty()).ok_or(29)?;
        if !self.tokens.is_valid(token, self.core.clock().now()) {
            return Err(11);
        }
        Ok(token.to_owned())
    }

    /// A send of any kind: the answer and the script applied.
    fn send(&self, r: &ReadRequest, form: &Form) -> (Answer, Option<MockAnswer>) {
        let fail = |code| (Answer::json(code_body(code)), None);
        if r.method != Method::POST {
            return fail(12);
        }
        if form.bad_encoding {
            return fail(25);
        }
        let auth_token = match self.authenticate(form) {
            Ok(t) => t,
            Err(code) => return fail(code),
        };
        match r.path.as_str() {
            UNICAST => self.unicast(form, &auth_token),
            UNICAST_BATCH => self.unicast_batch(form, &auth_token),
            SAVE_MESSAGE => (self.save_message(form), None),
            _ => (self.broadcast(form), None),
        }
    }

    fn unicast(&self, form: &Form, auth_token: &str) -> (Answer, Option<MockAnswer>) {
        let fail = |code| (Answer::json(code_body(code)), None);
        let Some(raw) = form.get("message") else {
            return fail(40);
        };
        let Some(Value::Object(message)) = serde_json::from_str::<Value>(raw).ok() else {
            return fail(41);
        };
        let target = match self.check_message(&message) {
            Ok(t) => t,
            Err(code) => return fail(code),
        };
        if target.by_registration_id && !valid_registration_id(&target.id) {
            return fail(10000);
        }
        let script = self.core.take_answer(&target.id);
        if let Some(answer) = script.as_ref().and_then(|s| self.scripted_request(s, auth_token)) {
            return (answer, script);
        }
        let code = script.as_ref().and_then(scripted_code);
        let answer = match code.filter(|c| *c != 0) {
            Some(code) => code_body(code),
            None => match self.accept(&target) {
                Ok(message_id) => json!({ "code": 0, "message": "", "data": { "messageId": message_id } }),
                Err(code) => code_body(code),
            },
        };
        let mut answer = Answer::json(answer);
        add_retry_after(&mut answer, script.as_ref());
        (answer, script)
    }

    fn unicast_batch(&self, form: &Form, auth_token: &str) -> (Answer, Option<MockAnswer>) {
        let fail = |code| (Answer::json(code_body(code)), None);
        let Some(raw) = form.get("messages") else {
            return fail(40);
        };
        let messages: Vec<Map<String, Value>> = match serde_json::from_str::<Value>(raw) {
            Ok(Value::Array(items)) if (1..=MAX_TARGETS).contains(&items.len()) => {
                let objects: Option<Vec<_>> =
                    items.into_iter().map(|m| if let Value::Object(o) = m { Some(o) } else { None }).collect();
                match objects {
                    Some(o) => o,
                    None => return fail(41),
                }
            }
            _ => return fail(41),
        };
        let mut targets = Vec::with_capacity(messages.len());
        for m in &messages {
            match self.check_message(m) {
                Ok(t) => targets.push(t),
                Err(code) => return fail(code),
            }
        }
        // A rule without a token answers the whole request.
        let request_script = self.core.take_answer("");
        if let Some(s) = &request_script {
            let answer = self.scripted_request(s, auth_token).unwrap_or_else(|| {
                let mut a = Answer::json(match scripted_code(s).filter(|c| *c != 0) {
                    Some(code) => code_body(code),
                    None => self.batch_entries(&targets, &mut Vec::new()),
                });
                add_retry_after(&mut a, Some(s));
                a
            });
            return (answer, request_script);
        }
        let mut scripts: Vec<Option<MockAnswer>> = targets.iter().map(|t| self.core.take_answer(&t.id)).collect();
        // A per-id rule that concerns the request (status, expire_auth, malformed) answers it.
        for s in scripts.iter().flatten() {
            if let Some(answer) = self.scripted_request(s, auth_token) {
                return (answer, Some(s.clone()));
            }
        }
        let delay = scripts.iter().flatten().find(|s| s.delay_ms.is_some()).cloned();
        let body = self.batch_entries(&targets, &mut scripts);
        (Answer::json(body), delay)
    }

    /// The `data` entries of an accepted batch; `scripts[i]` may set entry i's errorCode.
    fn batch_entries(&self, targets: &[Target], scripts: &mut Vec<Option<MockAnswer>>) -> Value {
        scripts.resize(targets.len(), None);
        let entries: Vec<Value> = targets
            .iter()
            .zip(scripts.iter())
            .map(|(t, script)| {
                let scripted = script.as_ref().and_then(scripted_code).filter(|c| *c != 0);
                let code = if t.by_registration_id && !valid_registration_id(&t.id) { Some(10000) } else { scripted };
                let result = match code {
                    Some(code) => Err(code),
                    None => self.accept(t),
                };
                match result {
                    Ok(message_id) => json!({ "messageId": message_id, "registrationId": t.id }),
                    Err(code) => json!({
                        "registrationId": t.id,
                        "errorCode": code,
                        "errorMessage": code_message(code),
                    }),
                }
            })
            .collect();
        json!({ "code": 0, "message": "success", "data": entries })
    }

    /// A script that answers the request as a whole: an HTTP status, an expired token, a
    /// malformed body.
    fn scripted_request(&self, s: &MockAnswer, auth_token: &str) -> Option<Answer> {
        let mut answer = if s.expire_auth {
            self.tokens.revoke(auth_token);
            Answer::json(code_body(11))
        } else if let Some(status) = s.status.filter(|s| *s != 200) {
            Answer {
                http: status,
                body: Some(json!({ "code": -1, "message": "scripted HTTP status" })),
                headers: vec![],
            }
        } else if s.reason.as_deref() == Some("malformed") {
            Answer { http: 200, body: None, headers: vec![] }
        } else {
            return None;
        };
        add_retry_after(&mut answer, Some(s));
        Some(answer)
    }

    /// Message checks (oppo.md §7 items 5, 7, 8): the first failing code.
    fn check_message(&self, m: &Map<String, Value>) -> Result<Target, i64> {
        let target_type = field(m, "target_type").ok_or(40)?;
        let by_registration_id = match int(target_type) {
            Some(2) => true,
            Some(5) => false,
            _ => return Err(41),
        };
        let id = text(m, "target_value").filter(|s| !s.is_empty()).ok_or(40)?.to_owned();
        let notification = field(m, "notification").and_then(Value::as_object).ok_or(40)?;
        self.check_notification(notification)?;
        Ok(Target { id, by_registration_id, notification: notification.clone() })
    }

    fn check_notification(&self, n: &Map<String, Value>) -> Result<(), i64> {
        let title = text(n, "title").filter(|s| !s.is_empty()).ok_or(40)?;
        let content = text(n, "content").filter(|s| !s.is_empty()).ok_or(40)?;
        let style = field(n, "style").map(|v| int(v).ok_or(41)).transpose()?.unwrap_or(1);
        let content_max = STYLE_CONTENT_MAX.iter().find(|(s, _)| *s == style).map(|(_, max)| *max).ok_or(41)?;
        if chars(title) > TITLE_MAX_CHARS || chars(content) > content_max {
            return Err(41);
        }
        if text(n, "sub_title").is_some_and(|s| chars(s) > SUB_TITLE_MAX_CHARS) {
            return Err(41);
        }
        let click = field(n, "click_action_type").map(|v| int(v).ok_or(41)).transpose()?.unwrap_or(0);
        let needs = |name: &str, max: usize| match text(n, name) {
            Some(s) if !s.is_empty() && chars(s) <= max => Ok(()),
            Some(s) if !s.is_empty() => Err(41),
            _ => Err(40),
        };
        match click {
            0 => {}
            1 | 4 => needs("click_action_activity", ACTIVITY_MAX_CHARS)?,
            2 | 5 => needs("click_action_url", URL_MAX_CHARS)?,
            _ => return Err(41),
        }
        if let Some(params) = field(n, "action_parameters") {
            let params = params.as_str().ok_or(41)?;
            if chars(params) > ACTION_PARAMETERS_MAX_CHARS || serde_json::from_str::<Value>(params).is_err() {
                return Err(41);
            }
        }
        if let Some(ttl) = field(n, "off_line_ttl") {
            let ttl = int(ttl).ok_or(41)?;
            if !(0..=MAX_OFFLINE_TTL_SECS as i64).contains(&ttl) {
                return Err(41);
            }
        }
        let category = text(n, "category").filter(|s| !s.is_empty());
        if let Some(c) = category {
            if !self.cfg.categories.iter().any(|known| known == c) {
                return Err(67);
            }
        } else if self.cfg.require_category {
            return Err(67);
        }
        if let Some(level) = field(n, "notify_level") {
            if category.is_none() || !matches!(int(level), Some(1 | 2 | 16)) {
                return Err(67);
            }
        }
        if self.cfg.require_template && text(n, "private_msg_template_id").is_none_or(str::is_empty) {
            return Err(54);
        }
        Ok(())
    }

    /// Accepts one valid notification for its target: the quota, then dedup, then delivery.
    /// Returns the `messageId`, or the code refusing it.
    fn accept(&self, t: &Target) -> Result<String, i64> {
        let now = self.core.clock().now();
        let mut state = lock(&self.state);
        let app_message_id = text(&t.notification, "app_message_id").map(str::to_owned);
        if let Some(amid) = &app_message_id {
            if state.seen.contains(&(t.id.clone(), amid.clone())) {
                state.duplicates += 1;
                return Ok(self.message_id());
            }
        }
        if let Some(quota) = self.cfg.daily_quota {
            let day = china_day(now);
            if state.quota_day != Some(day) {
                state.quota_day = Some(day);
                state.quota_used = 0;
            }
            if state.quota_used >= quota {
                return Err(33);
            }
            state.quota_used += 1;
        }
        if let Some(amid) = &app_message_id {
            if state.seen.len() >= RECORD_CAPACITY {
                state.seen.clear();
            }
            state.seen.insert((t.id.clone(), amid.clone()));
        }
        if state.delivered.len() >= RECORD_CAPACITY {
            state.delivered.pop_front();
        }
        let n = &t.notification;
        state.delivered.push_back(OppoDelivery {
            registration_id: t.id.clone(),
            app_message_id,
            title: text(n, "title").unwrap_or_default().to_owned(),
            content: text(n, "content").unwrap_or_default().to_owned(),
            category: text(n, "category").map(str::to_owned),
            notify_level: field(n, "notify_level").and_then(int),
            channel_id: text(n, "channel_id").map(str::to_owned),
            action_parameters: text(n, "action_parameters").map(str::to_owned),
            at: now,
        });
        Ok(self.message_id())
    }

    fn message_id(&self) -> String {
        format!("{}-1-1-{}", self.cfg.app_id, &format!("{:032x}", rand::random::<u128>())[..24])
    }

    /// `save_message_content`: the notification as top-level form fields → `message_id`.
    fn save_message(&self, form: &Form) -> Answer {
        let n: Map<String, Value> = form
            .fields
            .iter()
            .filter(|(k, _)| k != "auth_token")
            .map(|(k, v)| {
                let value = match k.as_str() {
                    "style" | "click_action_type" | "off_line_ttl" | "notify_level" => {
                        v.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(v.clone()))
                    }
                    _ => Value::String(v.clone()),
                };
                (k.clone(), value)
            })
            .collect();
        if let Err(code) = self.check_notification(&n) {
            return Answer::json(code_body(code));
        }
        let message_id = self.message_id();
        lock(&self.state).saved.insert(message_id.clone());
        Answer::json(json!({ "code": 0, "message": "success", "data": { "message_id": message_id } }))
    }

    /// `broadcast` of a saved message to `;`-joined registration ids. Invalid ids are listed
    /// under `data["10000"]` (the per-target error format is unverified).
    fn broadcast(&self, form: &Form) -> Answer {
        let fail = |code| Answer::json(code_body(code));
        let Some(message_id) = form.get("message_id").filter(|s| !s.is_empty()) else {
            return fail(40);
        };
        if !lock(&self.state).saved.contains(message_id) {
            return fail(31);
        }
        if form.get("target_type") != Some("2") {
            return fail(41);
        }
        let ids: Vec<&str> =
            form.get("target_value").unwrap_or_default().split(';').filter(|s| !s.is_empty()).collect();
        if ids.is_empty() || ids.len() > MAX_TARGETS {
            return fail(41);
        }
        let invalid: Vec<&str> = ids.iter().copied().filter(|id| !valid_registration_id(id)).collect();
        let mut data = json!({ "message_id": message_id, "task_id": format!("{:032x}", rand::random::<u128>())[..24] });
        if !invalid.is_empty() {
            data["10000"] = json!(invalid);
        }
        Answer::json(json!({ "code": 0, "message": "success", "data": data }))
    }
}

/// The business code a script asks for (`reason` as a number).
fn scripted_code(s: &MockAnswer) -> Option<i64> {
    s.reason.as_deref().and_then(|r| r.trim().parse().ok())
}

fn add_retry_after(answer: &mut Answer, script: Option<&MockAnswer>) {
    if let Some(secs) = script.and_then(|s| s.retry_after_secs) {
        answer.headers.push((http::header::RETRY_AFTER, secs.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::client;
    use super::super::MockRule;
    use super::*;
    use crate::clock::{Clock, ManualClock};

    const APP_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
    const SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const ID_A: &str = "CN_0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const ID_B: &str = "CN_1a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const ID_C: &str = "OPPO_CN_2a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn clock() -> ManualClock {
        // 2026-01-01 00:00 UTC = 08:00 in Beijing.
        ManualClock::new(chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("valid timestamp"))
    }

    async fn start_with(clock: &ManualClock, tweak: impl FnOnce(&mut MockOppoConfig)) -> MockOppo {
        let mut cfg = MockOppoConfig::new(APP_KEY, SECRET);
        cfg.clock = Arc::new(clock.clone());
        tweak(&mut cfg);
        MockOppo::start(cfg).await.expect("mock starts")
    }

    async fn start(clock: &ManualClock) -> MockOppo {
        start_with(clock, |_| {}).await
    }

    async fn post(c: &reqwest::Client, mock: &MockOppo, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let url = mock.url().join(path.trim_start_matches('/')).expect("url");
        let response = c.post(url).form(form).send().await.expect("mock answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn auth_token(c: &reqwest::Client, mock: &MockOppo, clock: &ManualClock) -> String {
        let ts = clock.now().timestamp_millis();
        let signature = sign(APP_KEY, ts, SECRET);
        let (status, body) =
            post(c, mock, AUTH, &[("app_key", APP_KEY), ("timestamp", &ts.to_string()), ("sign", &signature)]).await;
        assert_eq!((status, body["code"].as_i64()), (200, Some(0)), "{body}");
        body["data"]["auth_token"].as_str().expect("token").to_owned()
    }

    fn message(id: &str) -> Value {
        json!({
            "target_type": 2,
            "target_value": id,
            "notification": {
                "app_message_id": "pushd-1",
                "title": "Alice",
                "content": "See you at 6?",
                "click_action_type": 0,
                "action_parameters": "{\"conv\":\"c42\"}",
                "off_line": true,
                "off_line_ttl": 86400,
                "category": "IM",
                "notify_level": 2
            }
        })
    }

    async fn unicast(c: &reqwest::Client, mock: &MockOppo, token: &str, m: &Value) -> Value {
        let (status, body) = post(c, mock, UNICAST, &[("auth_token", token), ("message", &m.to_string())]).await;
        assert_eq!(status, 200);
        body
    }

    #[tokio::test]
    async fn a_signed_auth_then_a_unicast_is_delivered_and_recorded() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;

        let body = unicast(&c, &mock, &token, &message(ID_A)).await;

        assert_eq!(body["code"], 0, "{body}");
        let message_id = body["data"]["messageId"].as_str().expect("messageId");
        assert!(message_id.starts_with("30012345-1-1-") && message_id.len() == 13 + 24, "{message_id}");
        let got = mock.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].token, ID_A);
        assert_eq!(got[0].body["message"]["notification"]["category"], "IM");
        assert_eq!(got[0].body["auth_token"], &token[..8]);
        let delivered = mock.delivered_to(ID_A);
        assert_eq!(delivered.len(), 1);
        assert_eq!((delivered[0].category.as_deref(), delivered[0].notify_level), (Some("IM"), Some(2)));
        assert_eq!(mock.auth_requests(), 1);
        assert_eq!(mock.answered(0), 2, "the auth answer and the send");
    }

    #[tokio::test]
    async fn auth_rejects_missing_fields_wrong_keys_bad_signatures_and_stale_timestamps() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let now = clock.now().timestamp_millis();
        let good = sign(APP_KEY, now, SECRET);
        let ts = now.to_string();
        let stale = (now - 11 * 60 * 1000).to_string();
        let stale_sign = sign(APP_KEY, now - 11 * 60 * 1000, SECRET);
        let seconds = (now / 1000).to_string();
        let zeros = "0".repeat(64);
        let upper = good.to_uppercase();
        /// A case: name, form fields, expected code.
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, i64);
        let cases: Vec<Case<'_>> = vec![
            ("no app_key", vec![("timestamp", &ts), ("sign", &good)], 15),
            ("no timestamp", vec![("app_key", APP_KEY), ("sign", &good)], 18),
            ("no sign", vec![("app_key", APP_KEY), ("timestamp", &ts)], 17),
            ("other app", vec![("app_key", "ffff"), ("timestamp", &ts), ("sign", &good)], 14),
            ("bad sign", vec![("app_key", APP_KEY), ("timestamp", &ts), ("sign", &zeros)], 16),
            ("upper-case sign", vec![("app_key", APP_KEY), ("timestamp", &ts), ("sign", &upper)], 16),
            ("stale", vec![("app_key", APP_KEY), ("timestamp", &stale), ("sign", &stale_sign)], 19),
            ("seconds", vec![("app_key", APP_KEY), ("timestamp", &seconds), ("sign", &good)], 19),
        ];
        let mut failures = Vec::new();
        for (name, form, code) in &cases {
            let (status, body) = post(&c, &mock, AUTH, form).await;
            if status != 200 || body["code"] != *code {
                failures.push(format!("{name}: expected {code}, got {status} {body}"));
            }
        }
        let wrong_method = c.get(mock.url().join("server/v1/auth").expect("url")).send().await.expect("answers");
        let wrong_method: Value = wrong_method.json().await.expect("json");

        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(wrong_method["code"], 12);
        assert_eq!(mock.tokens_issued(), 0);
        assert_eq!(mock.auth_requests(), cases.len() as u64 + 1);
    }

    #[tokio::test]
    async fn tokens_expire_after_their_ttl_and_unknown_or_missing_tokens_are_refused() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.token_ttl_secs = 3600).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;

        clock.advance(chrono::Duration::seconds(3599));
        let before = unicast(&c, &mock, &token, &message(ID_A)).await;
        clock.advance(chrono::Duration::seconds(1));
        let after = unicast(&c, &mock, &token, &message(ID_A)).await;
        let unknown = unicast(&c, &mock, "not-a-token", &message(ID_A)).await;
        let (_, missing) = post(&c, &mock, UNICAST, &[("message", &message(ID_A).to_string())]).await;

        assert_eq!((before["code"].as_i64(), after["code"].as_i64()), (Some(0), Some(11)));
        assert_eq!(unknown["code"], 11);
        assert_eq!(missing["code"], 29);
        assert!(mock.received().iter().all(|r| r.token == ID_A), "refused sends are recorded under their id");
    }

    #[tokio::test]
    async fn expire_auth_revokes_the_token_in_use() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        mock.script(MockRule::any(MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));

        let first = unicast(&c, &mock, &token, &message(ID_A)).await;
        let again = unicast(&c, &mock, &token, &message(ID_A)).await;
        let fresh = auth_token(&c, &mock, &clock).await;
        let with_fresh = unicast(&c, &mock, &fresh, &message(ID_A)).await;

        assert_eq!((first["code"].as_i64(), again["code"].as_i64()), (Some(11), Some(11)));
        assert_eq!(with_fresh["code"], 0);
    }

    #[tokio::test]
    async fn message_checks_answer_oppo_codes() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.categories = vec!["IM".into(), "MARKETING".into()]).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut m = message(ID_A);
            f(&mut m);
            m
        };
        let n = |m: &mut Value, k: &str, v: Value| m["notification"][k] = v;
        let cases: Vec<(&str, Value, i64)> = vec![
            ("no title", edit(&|m| n(m, "title", json!(""))), 40),
            ("title 51", edit(&|m| n(m, "title", json!("题".repeat(51)))), 41),
            ("content 201", edit(&|m| n(m, "content", json!("x".repeat(201)))), 41),
            (
                "style 3 content 51",
                edit(&|m| {
                    n(m, "style", json!(3));
                    n(m, "content", json!("x".repeat(51)));
                }),
                41,
            ),
            ("sub_title 11", edit(&|m| n(m, "sub_title", json!("x".repeat(11)))), 41),
            ("activity missing", edit(&|m| n(m, "click_action_type", json!(4))), 40),
            ("url missing", edit(&|m| n(m, "click_action_type", json!(2))), 40),
            ("action type 3", edit(&|m| n(m, "click_action_type", json!(3))), 41),
            ("params not json", edit(&|m| n(m, "action_parameters", json!("{"))), 41),
            ("ttl 11 days", edit(&|m| n(m, "off_line_ttl", json!(950_400))), 41),
            ("unknown category", edit(&|m| n(m, "category", json!("GAMES"))), 67),
            ("notify_level 3", edit(&|m| n(m, "notify_level", json!(3))), 67),
            (
                "level without category",
                edit(&|m| {
                    if let Some(o) = m["notification"].as_object_mut() {
                        o.remove("category");
                    }
                }),
                67,
            ),
            ("target type 3", edit(&|m| m["target_type"] = json!(3)), 41),
            ("no target", edit(&|m| m["target_value"] = json!("")), 40),
            ("bad reg id", edit(&|m| m["target_value"] = json!("CN_xyz")), 10000),
            ("reg id with ;", edit(&|m| m["target_value"] = json!(format!("{ID_A};{ID_B}"))), 10000),
        ];
        let mut failures = Vec::new();
        for (name, m, code) in &cases {
            let body = unicast(&c, &mock, &token, m).await;
            if body["code"] != *code {
                failures.push(format!("{name}: expected {code}, got {body}"));
            }
        }
        let (_, not_json) = post(&c, &mock, UNICAST, &[("auth_token", &token), ("message", "{")]).await;
        let (_, no_message) = post(&c, &mock, UNICAST, &[("auth_token", &token)]).await;

        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(not_json["code"], 41);
        assert_eq!(no_message["code"], 40);
        assert!(mock.delivered().is_empty());
    }

    #[tokio::test]
    async fn camel_case_notification_keys_and_unknown_form_fields_are_accepted() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let m = json!({
            "targetType": 2,
            "targetValue": ID_A,
            "notification": {
                "title": "Alice", "content": "hi", "clickActionType": 4,
                "clickActionActivity": "com.example.im.Chat", "channelId": "private_im"
            }
        });
        let form = [("auth_token", token.as_str()), ("message", &m.to_string()), ("sdk_version", "JAVA_SDK_V1.0.0")];

        let (_, body) = post(&c, &mock, UNICAST, &form).await;

        assert_eq!(body["code"], 0, "{body}");
        assert_eq!(mock.delivered_to(ID_A)[0].channel_id.as_deref(), Some("private_im"));
    }

    #[tokio::test]
    async fn category_and_template_requirements_can_be_switched_on() {
        let clock = clock();
        let mock = start_with(&clock, |c| {
            c.require_category = true;
            c.require_template = true;
        })
        .await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let mut bare = message(ID_A);
        if let Some(o) = bare["notification"].as_object_mut() {
            o.remove("category");
            o.remove("notify_level");
        }
        let mut templated = message(ID_A);
        templated["notification"]["private_msg_template_id"] = json!("tpl-1");

        let no_category = unicast(&c, &mock, &token, &bare).await;
        let no_template = unicast(&c, &mock, &token, &message(ID_A)).await;
        let ok = unicast(&c, &mock, &token, &templated).await;

        assert_eq!(no_category["code"], 67);
        assert_eq!(no_template["code"], 54);
        assert_eq!(no_template["message"], "private_msg_template_id is null");
        assert_eq!(ok["code"], 0);
    }

    #[tokio::test]
    async fn a_resent_app_message_id_is_accepted_but_delivered_once() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;

        let first = unicast(&c, &mock, &token, &message(ID_A)).await;
        let second = unicast(&c, &mock, &token, &message(ID_A)).await;
        let other_target = unicast(&c, &mock, &token, &message(ID_B)).await;

        assert_eq!((first["code"].as_i64(), second["code"].as_i64()), (Some(0), Some(0)));
        assert_eq!(other_target["code"], 0);
        assert_eq!(mock.delivered_to(ID_A).len(), 1);
        assert_eq!(mock.delivered_to(ID_B).len(), 1);
        assert_eq!(mock.duplicates(), 1);
    }

    #[tokio::test]
    async fn a_batch_answers_per_entry_and_only_the_bad_id_fails() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        mock.script(MockRule::for_token(ID_B, MockAnswer::with_reason("10000")));
        let messages = json!([message(ID_A), message(ID_B), message(ID_C), message("CN_bad")]).to_string();

        let (_, body) = post(&c, &mock, UNICAST_BATCH, &[("auth_token", &token), ("messages", &messages)]).await;

        assert_eq!(body["code"], 0, "{body}");
        let data = body["data"].as_array().expect("entries");
        assert_eq!(data.len(), 4);
        assert_eq!(data[0]["registrationId"], ID_A);
        assert!(data[0]["messageId"].is_string() && data[0].get("errorCode").is_none());
        assert_eq!((data[1]["registrationId"].as_str(), data[1]["errorCode"].as_i64()), (Some(ID_B), Some(10000)));
        assert!(data[2].get("errorCode").is_none());
        assert_eq!(data[3]["errorCode"], 10000);
        assert_eq!(mock.delivered().len(), 2);
        let got = mock.received();
        assert_eq!(got.len(), 1, "one request recorded for the batch");
        assert_eq!(got[0].token, format!("{ID_A},{ID_B},{ID_C},CN_bad"));
        assert_eq!(got[0].body["messages"].as_array().map(Vec::len), Some(4));
        assert_eq!(mock.answered(10000), 2);
    }

    #[tokio::test]
    async fn a_rule_without_a_token_answers_the_whole_batch() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        mock.script(MockRule::any(MockAnswer::with_reason("-2")).times(1));
        let messages = json!([message(ID_A), message(ID_B)]).to_string();
        let form = [("auth_token", token.as_str()), ("messages", messages.as_str())];

        let (_, busy) = post(&c, &mock, UNICAST_BATCH, &form).await;
        let (_, ok) = post(&c, &mock, UNICAST_BATCH, &form).await;
        let (_, empty) = post(&c, &mock, UNICAST_BATCH, &[("auth_token", &token), ("messages", "[]")]).await;
        let too_many = json!(vec![message(ID_A); 1001]).to_string();
        let (_, over) = post(&c, &mock, UNICAST_BATCH, &[("auth_token", &token), ("messages", &too_many)]).await;

        assert_eq!(busy, json!({ "code": -2, "message": "Server Flow Control" }));
        assert_eq!(ok["code"], 0);
        assert_eq!((empty["code"].as_i64(), over["code"].as_i64()), (Some(41), Some(41)));
    }

    #[tokio::test]
    async fn scripted_codes_statuses_and_malformed_bodies() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let once = |a: MockAnswer| MockRule::for_token(ID_A, a).times(1);
        mock.script(once(MockAnswer::with_reason("33")));
        mock.script(once(MockAnswer { retry_after_secs: Some(3), ..MockAnswer::with_reason("55") }));
        mock.script(once(MockAnswer::with_status(500)));
        mock.script(once(MockAnswer::with_reason("malformed")));
        let url = mock.url().join(UNICAST.trim_start_matches('/')).expect("url");
        let form = [("auth_token", token.clone()), ("message", message(ID_A).to_string())];

        let mut got = Vec::new();
        for _ in 0..5 {
            let r = c.post(url.clone()).form(&form).send().await.expect("answers");
            let status = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap_or_default().to_owned());
            let text = r.text().await.expect("body");
            let code = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["code"].as_i64());
            got.push((status, code, retry_after));
        }

        assert_eq!(
            got,
            vec![
                (200, Some(33), None),
                (200, Some(55), Some("3".to_owned())),
                (500, Some(-1), None),
                (200, None, None),
                (200, Some(0), None),
            ]
        );
        assert_eq!(mock.delivered().len(), 1);
    }

    #[tokio::test]
    async fn the_daily_quota_answers_33_until_the_china_day_turns() {
        let clock = clock();
        let mock = start_with(&clock, |c| c.daily_quota = Some(1)).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;
        let mut second = message(ID_A);
        second["notification"]["app_message_id"] = json!("pushd-2");

        let first = unicast(&c, &mock, &token, &message(ID_A)).await;
        let over = unicast(&c, &mock, &token, &second).await;
        // 08:00 Beijing + 15 h 59 min = 23:59: still the same day.
        clock.advance(chrono::Duration::minutes(15 * 60 + 59));
        let still = unicast(&c, &mock, &token, &second).await;
        clock.advance(chrono::Duration::minutes(1));
        let next_day = unicast(&c, &mock, &token, &second).await;

        assert_eq!(first["code"], 0);
        assert_eq!((over["code"].as_i64(), still["code"].as_i64()), (Some(33), Some(33)));
        assert_eq!(next_day["code"], 0);
        assert_eq!(mock.answered(33), 2);
    }

    #[tokio::test]
    async fn a_saved_message_is_broadcast_to_semicolon_joined_ids() {
        let clock = clock();
        let mock = start(&clock).await;
        let c = client(&mock, false);
        let token = auth_token(&c, &mock, &clock).await;

        let (_, saved) =
            post(&c, &mock, SAVE_MESSAGE, &[("auth_token", &token), ("title", "Alice"), ("content", "hi")]).await;
        let message_id = saved["data"]["message_id"].as_str().expect("message_id").to_owned();
        let targets = format!("{ID_A};{ID_B};CN_bad");
        let form = [
            ("auth_token", token.as_str()),
            ("message_id", &message_id),
            ("target_type", "2"),
            ("target_value", &targets),
        ];
        let (_, sent) = post(&c, &mock, BROADCAST, &form).await;
        let unknown =
            [("auth_token", token.as_str()), ("message_id", "nope"), ("target_type", "2"), ("target_value", ID_A)];
        let (_, missing) = post(&c, &mock, BROADCAST, &unknown).await;

        assert_eq!(sent["code"], 0, "{sent}");
        assert_eq!(sent["data"]["message_id"], message_id.as_str());
        assert_eq!(sent["data"]["10000"], json!(["CN_bad"]));
        assert_eq!(missing["code"], 31);
    }

    #[test]
    fn registration_ids_are_32_hex_chars_with_an_optional_prefix() {
        for ok in ["0a1b2c3d4e5f60718293a4b5c6d7e8f9", ID_A, ID_C, "IN_0a1b2c3d4e5f60718293a4b5c6d7e8f9"] {
            assert!(valid_registration_id(ok), "{ok}");
        }
        for bad in ["", "CN_", "CN_0a1b", "CN_0a1b2c3d4e5f60718293a4b5c6d7e8fz", "CN 0a1b2c3d4e5f60718293a4b5c6d7e8f9"]
        {
            assert!(!valid_registration_id(bad), "{bad}");
        }
    }
}
