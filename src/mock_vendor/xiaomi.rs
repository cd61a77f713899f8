//! Mock Xiaomi MiPush: the `/v3/message/regid` (and `/v2/message/regid`) send endpoint,
//! validating as `docs/vendors/xiaomi.md` §7 describes and answering with Xiaomi's business
//! codes in HTTP 200 bodies.
//!
//! Owns: the `Authorization: key=<AppSecret>` check (21301), form decoding (a raw `+` in a regId
//! decodes to a space and fails the regId's format, as it would at Xiaomi), package (22022),
//! regId list and format (10017 / `bad_regids` / 20301 "No valid targets!"), title and
//! description limits (10017), numeric fields (10017), the private channel (27001; sends
//! without one are counted, [`MockXiaomi::sends_without_channel`]), the payload cap (65009),
//! per-regId scripted results, unique `trace_id` and `data.id`. Does not own: TLS, recording,
//! rules (`mod.rs`, `tls.rs`). Xiaomi has no token endpoint: its auth is a static secret.
//!
//! Scripting ([`MockAnswer`]): `reason = "bad_regid"` lists the rule's regId in
//! `data.bad_regids` (all of them bad → 20301); a numeric `reason` (`"10027"`, `"200001"`,
//! `"20301"`, …) answers the whole request with that code; `status` alone answers that HTTP
//! status with an empty body; `expire_auth` answers 21301 (the secret refused).
//!
//! ```text
//! POST /v3/message/regid ─▶ key=<secret> ─▶ form ─▶ package ─▶ regIds ─▶ texts ─▶ numbers
//!                        ─▶ channel ─▶ payload size ─▶ scripted rules per regId ─▶ record ─▶ answer
//! ```

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::form::{self, Fields, FormAnswer, FormSend};
use super::tls::Protocols;
use super::{default_addr, start_mock, Conn, Core, MockAnswer, MockServer, MockTls, ReadRequest, Reply, Vendor};
use crate::clock::{SharedClock, SystemClock};

/// The send paths served.
const SEND_PATHS: [&str; 2] = ["/v3/message/regid", "/v2/message/regid"];
/// Most regIds per request.
const MAX_REGIDS: usize = 1000;
/// `title` must be shorter than 50 chars.
const TITLE_MAX_CHARS: usize = 49;
/// `description` must be shorter than 128 chars.
const DESCRIPTION_MAX_CHARS: usize = 127;
/// The reason a script uses to list a regId in `data.bad_regids`.
const BAD_REGID: &str = "bad_regid";

/// Configuration of a [`MockXiaomi`].
#[derive(Clone)]
pub struct MockXiaomiConfig {
    /// Where to listen; default `127.0.0.1:0`.
    pub addr: std::net::SocketAddr,
    /// TLS material to share with other mocks; `None` generates a CA for this mock.
    pub tls: Option<Arc<MockTls>>,
    /// The clock of the test (kept for parity with the other mocks; Xiaomi auth has no expiry).
    pub clock: SharedClock,
    /// The AppSecret expected in `Authorization: key=<secret>`.
    pub app_secret: String,
    /// Packages `restricted_package_name` may name.
    pub package_names: Vec<String>,
    /// Private channels `extra.channel_id` may name (anything else: 27001).
    pub channel_ids: Vec<String>,
    /// Longest regId accepted, in bytes (the format is opaque; unverified).
    pub max_regid_bytes: usize,
    /// Largest `payload` accepted, in bytes (65009 above it).
    pub max_payload_bytes: usize,
}

impl std::fmt::Debug for MockXiaomiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockXiaomiConfig")
            .field("addr", &self.addr)
            .field("package_names", &self.package_names)
            .field("channel_ids", &self.channel_ids)
            .field("max_regid_bytes", &self.max_regid_bytes)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .finish_non_exhaustive()
    }
}

impl MockXiaomiConfig {
    /// A config for one app (secret, package, private channel) with every other setting at its
    /// default.
    pub fn new(app_secret: impl Into<String>, package_name: impl Into<String>, channel_id: impl Into<String>) -> Self {
        Self {
            addr: default_addr(),
            tls: None,
            clock: Arc::new(SystemClock),
            app_secret: app_secret.into(),
            package_names: vec![package_name.into()],
            channel_ids: vec![channel_id.into()],
            max_regid_bytes: 256,
            max_payload_bytes: 4096,
        }
    }
}

/// A running mock Xiaomi. Derefs to [`MockServer`] for rules, the record and counters; each
/// [`Received`](super::Received) has `token` = the decoded `registration_id` list and `body` =
/// the decoded form fields as a JSON object of strings.
#[derive(Clone)]
pub struct MockXiaomi {
    server: MockServer,
    xiaomi: Arc<Xiaomi>,
}

impl std::fmt::Debug for MockXiaomi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockXiaomi").field("server", &self.server).finish_non_exhaustive()
    }
}

impl Deref for MockXiaomi {
    type Target = MockServer;

    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl From<MockXiaomi> for MockServer {
    fn from(mock: MockXiaomi) -> MockServer {
        mock.server
    }
}

impl MockXiaomi {
    /// Binds `cfg.addr` and serves HTTPS (ALPN `h2`, `http/1.1`) on the current tokio runtime.
    pub async fn start(cfg: MockXiaomiConfig) -> std::io::Result<Self> {
        let protocols = Protocols::H2OrHttp1 { max_concurrent_streams: 1000 };
        let (server, xiaomi) = start_mock("xiaomi", cfg.addr, cfg.tls.clone(), cfg.clock.clone(), protocols, |core| {
            Xiaomi { core, cfg, calls: AtomicU64::new(0), without_channel: AtomicU64::new(0) }
        })
        .await?;
        Ok(Self { server, xiaomi })
    }

    /// Accepted sends that carried no `extra.channel_id` (Xiaomi files them under the default
    /// class: 1 message per device per day).
    pub fn sends_without_channel(&self) -> u64 {
        self.xiaomi.without_channel.load(Ordering::Relaxed)
    }
}

struct Xiaomi {
    core: Arc<Core>,
    cfg: MockXiaomiConfig,
    calls: AtomicU64,
    without_channel: AtomicU64,
}

/// A business error: HTTP 200 with `result: error`.
fn error(code: i64, reason: &str) -> (u16, Value) {
    (200, error_body(code, reason))
}

fn error_body(code: i64, reason: &str) -> Value {
    json!({ "result": "error", "code": code, "reason": reason, "description": description(code) })
}

/// Xiaomi's Chinese `description` for a code (what the console shows).
fn description(code: i64) -> &'static str {
    match code {
        21301 => "认证失败",
        20301 => "发送消息失败",
        10027 => "调用接口过于频繁",
        200_001 | 10034 => "超过当日消息配额",
        27001 => "channel相关信息不匹配",
        22022 => "包名不合法",
        65009 => "payload过长",
        10017 => "参数不合法",
        _ => "错误",
    }
}

/// The `reason` text Xiaomi gives with a scripted code.
fn reason_text(code: i64) -> &'static str {
    match code {
        21301 => "Invalid application secret.",
        20301 => "No valid targets!",
        10027 => "app calls API too often",
        10002 => "system busy",
        200_001 => "exceed quota, quota: 0, have acked: 0",
        27001 => "channel相关信息不匹配",
        65003 => "device not found",
        _ => "scripted error",
    }
}

/// A regId the way Xiaomi's SDK issues them: Base64-ish, opaque, no spaces or commas.
fn regid_ok(id: &str, max_bytes: usize) -> bool {
    !id.is_empty()
        && id.len() <= max_bytes
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-' | b'.' | b':'))
}

/// What a valid send carried.
struct Valid {
    regids: Vec<String>,
    /// regIds that failed the format check: listed in `bad_regids`.
    bad: Vec<String>,
}

impl Vendor for Xiaomi {
    type ConnState = ();

    async fn handle(&self, req: Request<Incoming>, conn: &Conn<()>) -> Reply {
        form::serve(self, req, conn).await
    }
}

impl FormSend for Xiaomi {
    const VENDOR: &'static str = "xiaomi";
    const TARGET_FIELDS: &'static [&'static str] = &["registration_id"];
    type Valid = Valid;

    fn core(&self) -> &Core {
        &self.core
    }

    /// Send checks in xiaomi.md §7 order: route, auth, encoding, package, targets, texts,
    /// numbers, channel, size.
    fn validate(&self, r: &ReadRequest, f: &Fields) -> Result<Valid, (u16, Value)> {
        if !SEND_PATHS.contains(&r.path.as_str()) {
            return Err((404, json!({ "result": "error", "code": 404, "reason": "Not Found" })));
        }
        if r.method != Method::POST {
            return Err((405, json!({ "result": "error", "code": 405, "reason": "Method Not Allowed" })));
        }
        if r.header("authorization") != Some(format!("key={}", self.cfg.app_secret).as_str()) {
            return Err(error(21301, "Invalid application secret."));
        }
        if !r.content_type_is("application/x-www-form-urlencoded") {
            return Err(error(10017, "Content-Type must be application/x-www-form-urlencoded"));
        }
        let packages = f.get("restricted_package_name").map(String::as_str).unwrap_or_default();
        let packages_ok = !packages.is_empty()
            && packages.split(',').all(|p| self.cfg.package_names.iter().any(|known| known == p.trim()));
        if !packages_ok {
            return Err(error(22022, "Invalid restricted_package_name."));
        }
        let regids: Vec<String> =
            f.get("registration_id").map(|ids| ids.split(',').map(str::to_owned).collect()).unwrap_or_default();
        if regids.is_empty() || regids.iter().all(String::is_empty) {
            return Err(error(10017, "registration_id is required"));
        }
        if regids.len() > MAX_REGIDS {
            return Err(error(10017, "too many registration_id (at most 1000)"));
        }
        let bad: Vec<String> = regids.iter().filter(|id| !regid_ok(id, self.cfg.max_regid_bytes)).cloned().collect();
        if bad.len() == regids.len() {
            return Err(error(20301, "No valid targets!"));
        }
        let pass_through = f.get("pass_through").map(String::as_str).unwrap_or("0");
        match pass_through {
            "0" => {
                check_text(f, "title", TITLE_MAX_CHARS)?;
                check_text(f, "description", DESCRIPTION_MAX_CHARS)?;
            }
            "1" => {}
            _ => return Err(error(10017, "pass_through must be 0 or 1")),
        }
        for name in ["notify_type", "notify_id", "time_to_live", "time_to_send", "extra.notify_effect"] {
            if f.get(name).is_some_and(|v| v.trim().parse::<i64>().is_err()) {
                return Err(error(10017, &format!("{name} must be a number")));
            }
        }
        match f.get("extra.channel_id") {
            None => {
                self.without_channel.fetch_add(1, Ordering::Relaxed);
            }
            Some(channel) if self.cfg.channel_ids.iter().any(|c| c == channel) => {}
            Some(_) => return Err(error(27001, "channel相关信息不匹配")),
        }
        if f.get("payload").map_or(0, String::len) > self.cfg.max_payload_bytes {
            return Err(error(65009, "payload is too long"));
        }
        Ok(Valid { regids, bad })
    }

    /// The answer to a valid send: scripted rules are looked up per regId, in order; the first
    /// request-level answer ends the lookup (so `times` counts requests, not regIds).
    fn answer(&self, valid: Valid) -> FormAnswer {
        let per_target = |a: &MockAnswer| (a.reason.as_deref() == Some(BAD_REGID) && !a.expire_auth).then_some(());
        let lookup = form::look_up(&self.core, &valid.regids, per_target);
        let mut bad = valid.bad;
        for (id, ()) in lookup.listed {
            if !bad.contains(&id) {
                bad.push(id);
            }
        }
        let delay = lookup.delay;
        if let Some(answer) = lookup.request {
            let (http, body) = self.scripted(&answer, &valid.regids, &bad);
            return FormAnswer { http, body, script: Some(answer) };
        }
        if bad.len() == valid.regids.len() {
            let (http, body) = error(20301, "No valid targets!");
            return FormAnswer { http, body: Some(body), script: delay };
        }
        FormAnswer { http: 200, body: Some(self.success(valid.regids.len(), &bad)), script: delay }
    }
}

impl Xiaomi {
    fn scripted(&self, answer: &MockAnswer, regids: &[String], bad: &[String]) -> (u16, Option<Value>) {
        if answer.expire_auth {
            let (http, body) = error(21301, "Invalid application secret.");
            return (answer.status.unwrap_or(http), Some(body));
        }
        let code = answer.reason.as_deref().and_then(|r| r.trim().parse::<i64>().ok());
        match (answer.status, code) {
            (None | Some(200), None) => (200, Some(self.success(regids.len(), bad))),
            (Some(status), None) => (status, None),
            (status, Some(0)) => (status.unwrap_or(200), Some(self.success(regids.len(), bad))),
            (status, Some(code)) => (status.unwrap_or(200), Some(error_body(code, reason_text(code)))),
        }
    }

    fn success(&self, targets: usize, bad: &[String]) -> Value {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let mut data = json!({ "id": format!("alm{n:019}") });
        if !bad.is_empty() {
            data["bad_regids"] = json!(bad.join(","));
        }
        json!({
            "result": "ok",
            "trace_id": format!("Xlm{n:019}"),
            "code": 0,
            "data": data,
            "description": "成功",
            "info": format!("Received push messages for {} REGID", targets - bad.len()),
        })
    }
}

/// A required notification text: 1..=`max` chars, not all whitespace.
fn check_text(f: &Fields, name: &str, max: usize) -> Result<(), (u16, Value)> {
    let text = f.get(name).map(String::as_str).unwrap_or_default();
    if text.trim().is_empty() {
        return Err(error(10017, &format!("{name} is required when pass_through=0")));
    }
    if text.chars().count() > max {
        return Err(error(10017, &format!("{name} is too long (at most {max} chars)")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::client;
    use super::super::MockRule;
    use super::*;
    use crate::clock::ManualClock;

    const SECRET: &str = "dGVzdC1zZWNyZXQtMDE=";
    const REG_A: &str = "Qm9ndXNSZWdJZEFBQUFBQUFBQUFBQUFBQUFBQUFBQT0=";
    const REG_B: &str = "Qm9ndXNSZWdJZEJCQkJCQkJCQkJCQkJCQkJCQkJCQj0=";

    async fn start() -> MockXiaomi {
        let mut cfg = MockXiaomiConfig::new(SECRET, "com.example.im", "im_private_01");
        cfg.clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        MockXiaomi::start(cfg).await.expect("mock starts")
    }

    /// A form as name/value pairs.
    type Form = Vec<(&'static str, String)>;

    fn fields(regids: &str) -> Form {
        vec![
            ("registration_id", regids.to_owned()),
            ("restricted_package_name", "com.example.im".into()),
            ("pass_through", "0".into()),
            ("title", "Alice".into()),
            ("description", "Are we still on for 7pm?".into()),
            ("payload", r#"{"conv":"c42"}"#.into()),
            ("notify_type", "-1".into()),
            ("notify_id", "4242".into()),
            ("time_to_live", "86400000".into()),
            ("extra.channel_id", "im_private_01".into()),
            ("extra.notify_effect", "1".into()),
        ]
    }

    /// `f` with `name` replaced by `value` (removed when `None`).
    fn with(mut f: Form, name: &'static str, value: Option<&str>) -> Form {
        f.retain(|(n, _)| *n != name);
        if let Some(v) = value {
            f.push((name, v.to_owned()));
        }
        f
    }

    fn encode(f: &[(&'static str, String)]) -> String {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(f.iter().map(|(k, v)| (*k, v))).finish()
    }

    async fn post_raw(mock: &MockXiaomi, path: &str, auth: &str, body: String) -> (u16, Value) {
        let response = client(mock, false)
            .post(mock.url().join(path).expect("url"))
            .header("authorization", auth)
            .header("content-type", "application/x-www-form-urlencoded;charset=UTF-8")
            .body(body)
            .send()
            .await
            .expect("mock answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(mock: &MockXiaomi, f: &[(&'static str, String)]) -> (u16, Value) {
        post_raw(mock, "v3/message/regid", &format!("key={SECRET}"), encode(f)).await
    }

    #[tokio::test]
    async fn a_valid_batch_is_accepted_and_recorded_with_decoded_fields() {
        let mock = start().await;
        let (status, body) = post(&mock, &fields(&format!("{REG_A},{REG_B}"))).await;
        assert_eq!(status, 200);
        assert_eq!((body["result"].as_str(), body["code"].as_i64()), (Some("ok"), Some(0)));
        assert_eq!(body["info"], "Received push messages for 2 REGID");
        assert!(body["trace_id"].as_str().is_some_and(|t| t.starts_with("Xlm")));
        assert!(body["data"]["id"].is_string());
        let r = &mock.received()[0];
        assert_eq!((r.vendor, r.token.as_str()), ("xiaomi", format!("{REG_A},{REG_B}").as_str()));
        assert_eq!(r.body["extra.channel_id"], "im_private_01");
        assert_eq!(r.body["title"], "Alice");
        assert_eq!(r.headers["authorization"], "key=dGVzdC1z");
        assert_eq!(mock.sends_without_channel(), 0);
    }

    #[tokio::test]
    async fn trace_ids_are_unique_per_call() {
        let mock = start().await;
        let (_, first) = post(&mock, &fields(REG_A)).await;
        let (_, second) = post(&mock, &fields(REG_A)).await;
        assert_ne!(first["trace_id"], second["trace_id"]);
        assert_ne!(first["data"]["id"], second["data"]["id"]);
    }

    #[tokio::test]
    async fn a_wrong_or_missing_secret_is_21301() {
        let mock = start().await;
        for auth in ["key=wrong", SECRET, &format!("Key={SECRET}"), &format!("key= {SECRET}")] {
            let (status, body) = post_raw(&mock, "v3/message/regid", auth, encode(&fields(REG_A))).await;
            assert_eq!((status, body["code"].as_i64()), (200, Some(21301)), "{auth}");
            assert_eq!(body["reason"], "Invalid application secret.");
        }
    }

    #[tokio::test]
    async fn an_unencoded_plus_in_a_regid_fails_that_regid() {
        let mock = start().await;
        let raw = encode(&fields("placeholder")).replace("placeholder", "ab+cd%2CQm9n");
        let (status, body) = post_raw(&mock, "v3/message/regid", &format!("key={SECRET}"), raw).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["bad_regids"], "ab cd");
        let raw = encode(&fields("placeholder")).replace("placeholder", "ab+cd");
        let (_, body) = post_raw(&mock, "v3/message/regid", &format!("key={SECRET}"), raw).await;
        assert_eq!((body["code"].as_i64(), body["reason"].as_str()), (Some(20301), Some("No valid targets!")));
    }

    #[tokio::test]
    async fn field_checks_answer_xiaomis_codes() {
        let mock = start().await;
        let cases: Vec<(&str, Form, i64)> = vec![
            ("other package", with(fields(REG_A), "restricted_package_name", Some("com.other")), 22022),
            ("no package", with(fields(REG_A), "restricted_package_name", None), 22022),
            ("no targets", with(fields(REG_A), "registration_id", Some("")), 10017),
            ("too many", with(fields(REG_A), "registration_id", Some(&vec!["r"; 1001].join(","))), 10017),
            ("no title", with(fields(REG_A), "title", None), 10017),
            ("blank description", with(fields(REG_A), "description", Some("   ")), 10017),
            ("long title", with(fields(REG_A), "title", Some(&"t".repeat(50))), 10017),
            ("long description", with(fields(REG_A), "description", Some(&"字".repeat(128))), 10017),
            ("ttl not a number", with(fields(REG_A), "time_to_live", Some("1d")), 10017),
            ("notify_id not a number", with(fields(REG_A), "notify_id", Some("c42")), 10017),
            ("unknown channel", with(fields(REG_A), "extra.channel_id", Some("marketing")), 27001),
            ("payload too long", with(fields(REG_A), "payload", Some(&"x".repeat(4097))), 65009),
        ];
        let mut failures = Vec::new();
        for (name, f, code) in &cases {
            let (status, body) = post(&mock, f).await;
            if status != 200 || body["code"].as_i64() != Some(*code) || body["result"] != "error" {
                failures.push(format!("{name}: expected {code}, got {status} {body}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        let at_limits =
            with(with(fields(REG_A), "title", Some(&"t".repeat(49))), "description", Some(&"字".repeat(127)));
        assert_eq!(post(&mock, &at_limits).await.1["code"], 0);
        let pass_through =
            with(with(with(fields(REG_A), "pass_through", Some("1")), "title", None), "description", None);
        assert_eq!(post(&mock, &pass_through).await.1["code"], 0);
    }

    #[tokio::test]
    async fn a_send_without_a_channel_is_accepted_but_counted() {
        let mock = start().await;
        let (_, body) = post(&mock, &with(fields(REG_A), "extra.channel_id", None)).await;
        assert_eq!(body["code"], 0);
        assert_eq!(mock.sends_without_channel(), 1);
    }

    #[tokio::test]
    async fn other_paths_are_404_and_v2_is_served() {
        let mock = start().await;
        let (status, _) = post_raw(&mock, "v3/message/alias", &format!("key={SECRET}"), encode(&fields(REG_A))).await;
        assert_eq!(status, 404);
        let (status, body) =
            post_raw(&mock, "v2/message/regid", &format!("key={SECRET}"), encode(&fields(REG_A))).await;
        assert_eq!((status, body["code"].as_i64()), (200, Some(0)));
    }

    #[tokio::test]
    async fn scripted_bad_regids_name_exactly_the_scripted_ids() {
        let mock = start().await;
        mock.script(MockRule::for_token(REG_B, MockAnswer::with_reason("bad_regid")).times(1));
        let (_, body) = post(&mock, &fields(&format!("{REG_A},{REG_B}"))).await;
        assert_eq!(body["code"], 0);
        assert_eq!(body["data"]["bad_regids"], REG_B);
        assert_eq!(body["info"], "Received push messages for 1 REGID");
        mock.script(MockRule::for_token(REG_A, MockAnswer::with_reason("bad_regid")).times(1));
        let (_, body) = post(&mock, &fields(REG_A)).await;
        assert_eq!((body["code"].as_i64(), body["reason"].as_str()), (Some(20301), Some("No valid targets!")));
    }

    #[tokio::test]
    async fn scripted_codes_answer_the_whole_request_once_per_time() {
        let mock = start().await;
        mock.script(MockRule::any(MockAnswer::with_reason("10027")).times(1));
        mock.script(MockRule::any(MockAnswer::with_reason("200001")).times(1));
        mock.script(MockRule::any(MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));
        mock.script(MockRule::any(MockAnswer::with_status(503)).times(1));
        let batch = fields(&format!("{REG_A},{REG_B}"));
        let mut got = Vec::new();
        for _ in 0..5 {
            let (status, body) = post(&mock, &batch).await;
            got.push((status, body["code"].as_i64()));
        }
        assert_eq!(got, [(200, Some(10027)), (200, Some(200_001)), (200, Some(21301)), (503, None), (200, Some(0))]);
        let quota = &mock.received()[1].answer;
        assert!(quota["reason"].as_str().is_some_and(|r| r.starts_with("exceed quota")));
    }

    #[tokio::test]
    async fn retry_after_and_delay_are_scriptable() {
        let mock = start().await;
        let answer = MockAnswer { retry_after_secs: Some(2), delay_ms: Some(20), ..MockAnswer::with_reason("10002") };
        mock.script(MockRule::any(answer).times(1));
        let response = client(&mock, false)
            .post(mock.url().join("v3/message/regid").expect("url"))
            .header("authorization", format!("key={SECRET}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&fields(REG_A)))
            .send()
            .await
            .expect("mock answers");
        assert_eq!(response.headers()["retry-after"], "2");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], 10002);
    }
}
