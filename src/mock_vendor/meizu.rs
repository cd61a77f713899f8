//! Mock Meizu Flyme Push: the `pushByPushId` (and `pushByAlias`) notification endpoints,
//! validating as `docs/vendors/meizu.md` §7 describes and answering in Meizu's format (string
//! `code`, failed pushIds grouped by code in `value`).
//!
//! Owns: the appId (110000), the presence (110004) and MD5 check (1006) of `sign` recomputed
//! from the decoded fields, the pushId list (110004 / 1005; bad-format ids under `value
//! ["110003"]`), the `messageJson` checks (1005: JSON, title 1–32 and content 1–100 chars,
//! `validTime` 1–72, `notifyKey` ≤ 8 of `[0-9A-Za-z_-]`; `clickType` 3 is accepted but counted,
//! [`MockMeizu::click_type_3_seen`]), the request size cap (1005), per-pushId scripted results,
//! a fresh 32-hex `msgId` per accepted call. Does not own: TLS, recording, rules (`mod.rs`,
//! `tls.rs`). Meizu has no token endpoint: every request is signed.
//!
//! Scripting ([`MockAnswer`]) by `reason` = a Meizu code: codes of the per-pushId table
//! (110002, 110003, 110005, 110011, 201, 501, 513, 518, 519, 520) list the rule's pushId under
//! that code in `value`; any other code (110010 rate limit, 110019, 1006, 500, 1003, …) answers
//! the whole request. `value:<code>` forces a per-pushId entry (`value:110010` = notifications
//! switched off), `top:<code>` a top-level answer. `status` alone answers that HTTP status with
//! an empty body; `expire_auth` answers 1006 (Meizu's signature failure).
//!
//! ```text
//! POST …/varnished/pushByPushId ─▶ form ─▶ appId ─▶ sign = md5(sorted k=v + secret)
//!        ─▶ pushIds ─▶ messageJson ─▶ size ─▶ scripted rules per pushId ─▶ record ─▶ answer
//! ```

use std::collections::BTreeMap;
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
use crate::provider::meizu::sign;

/// The notification send paths served: by pushId, by alias.
const PUSH_ID_PATH: &str = "/garcia/api/server/push/varnished/pushByPushId";
const ALIAS_PATH: &str = "/garcia/api/server/push/varnished/pushByAlias";
/// Most pushIds (or aliases) per request.
const MAX_TARGETS: usize = 100;
/// Codes that belong in `value`, per pushId, when a script names them without a prefix.
const PER_TARGET_CODES: [&str; 10] = ["110002", "110003", "110005", "110011", "201", "501", "513", "518", "519", "520"];

/// Configuration of a [`MockMeizu`].
#[derive(Clone)]
pub struct MockMeizuConfig {
    /// Where to listen; default `127.0.0.1:0`.
    pub addr: std::net::SocketAddr,
    /// TLS material to share with other mocks; `None` generates a CA for this mock.
    pub tls: Option<Arc<MockTls>>,
    /// The clock of the test (kept for parity with the other mocks; the signature has no time).
    pub clock: SharedClock,
    /// The only appId accepted.
    pub app_id: String,
    /// Its appSecret, to recompute `sign`.
    pub app_secret: String,
    /// Longest pushId accepted, in chars of `[0-9A-Za-z]` (format unverified).
    pub max_push_id_chars: usize,
    /// Largest request body accepted, in bytes (1005 above it).
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for MockMeizuConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockMeizuConfig")
            .field("addr", &self.addr)
            .field("app_id", &self.app_id)
            .field("max_push_id_chars", &self.max_push_id_chars)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl MockMeizuConfig {
    /// A config for one app with every other setting at its default.
    pub fn new(app_id: impl Into<String>, app_secret: impl Into<String>) -> Self {
        Self {
            addr: default_addr(),
            tls: None,
            clock: Arc::new(SystemClock),
            app_id: app_id.into(),
            app_secret: app_secret.into(),
            max_push_id_chars: 64,
            max_body_bytes: 16 * 1024,
        }
    }
}

/// A running mock Meizu. Derefs to [`MockServer`] for rules, the record and counters; each
/// [`Received`](super::Received) has `token` = the decoded `pushIds` (or `alias`) list and
/// `body` = the decoded form fields with `messageJson` parsed when it is JSON.
#[derive(Clone)]
pub struct MockMeizu {
    server: MockServer,
    meizu: Arc<Meizu>,
}

impl std::fmt::Debug for MockMeizu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockMeizu").field("server", &self.server).finish_non_exhaustive()
    }
}

impl Deref for MockMeizu {
    type Target = MockServer;

    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl From<MockMeizu> for MockServer {
    fn from(mock: MockMeizu) -> MockServer {
        mock.server
    }
}

impl MockMeizu {
    /// Binds `cfg.addr` and serves HTTPS (ALPN `h2`, `http/1.1`) on the current tokio runtime.
    pub async fn start(cfg: MockMeizuConfig) -> std::io::Result<Self> {
        let protocols = Protocols::H2OrHttp1 { max_concurrent_streams: 1000 };
        let (server, meizu) = start_mock("meizu", cfg.addr, cfg.tls.clone(), cfg.clock.clone(), protocols, |core| {
            Meizu { core, cfg, click_type_3: AtomicU64::new(0) }
        })
        .await?;
        Ok(Self { server, meizu })
    }

    /// Accepted sends with `clickType` 3 (custom), which Meizu says not to use since Android 12.
    pub fn click_type_3_seen(&self) -> u64 {
        self.meizu.click_type_3.load(Ordering::Relaxed)
    }
}

struct Meizu {
    core: Arc<Core>,
    cfg: MockMeizuConfig,
    click_type_3: AtomicU64,
}

/// A request-level failure: HTTP 200, string `code`, `value` the empty string.
fn failure(code: &str, message: &str) -> (u16, Value) {
    (200, json!({ "code": code, "message": message, "value": "", "redirect": "" }))
}

/// Meizu's message for a top-level code.
fn message_for(code: &str) -> &'static str {
    match code {
        "500" => "其他错误",
        "1001" => "系统错误",
        "1003" => "服务器忙",
        "1005" => "参数错误",
        "1006" => "签名认证失败",
        "110000" => "appId不合法",
        "110004" => "参数不能为空",
        "110010" => "应用请求频率超过限制",
        "110019" => "超过该应用的次数限制",
        "110033" => "appSecret不合法",
        "110051" => "超过该应用的次数限制",
        _ => "scripted error",
    }
}

/// A pushId as the Flyme SDK issues them: letters and digits (format and length unverified).
fn push_id_ok(id: &str, max_chars: usize) -> bool {
    !id.is_empty() && id.len() <= max_chars && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// What a valid send carried.
struct Valid {
    targets: Vec<String>,
    /// Targets that failed the format check: listed under 110003.
    bad: Vec<String>,
}

/// Where a scripted code goes.
enum Scripted {
    PerTarget(String),
    TopLevel(String),
}

fn placement(reason: &str) -> Scripted {
    let reason = reason.trim();
    if let Some(code) = reason.strip_prefix("value:") {
        Scripted::PerTarget(code.trim().to_owned())
    } else if let Some(code) = reason.strip_prefix("top:") {
        Scripted::TopLevel(code.trim().to_owned())
    } else if PER_TARGET_CODES.contains(&reason) {
        Scripted::PerTarget(reason.to_owned())
    } else {
        Scripted::TopLevel(reason.to_owned())
    }
}

impl Vendor for Meizu {
    type ConnState = ();

    async fn handle(&self, req: Request<Incoming>, conn: &Conn<()>) -> Reply {
        form::serve(self, req, conn).await
    }
}

impl FormSend for Meizu {
    const VENDOR: &'static str = "meizu";
    const TARGET_FIELDS: &'static [&'static str] = &["pushIds", "alias"];
    const JSON_FIELDS: &'static [&'static str] = &["messageJson"];
    type Valid = Valid;

    fn core(&self) -> &Core {
        &self.core
    }

    /// Send checks in meizu.md §7 order: route, encoding, appId, sign, targets, message, size.
    fn validate(&self, r: &ReadRequest, f: &Fields) -> Result<Valid, (u16, Value)> {
        let by_alias = match r.path.as_str() {
            PUSH_ID_PATH => false,
            ALIAS_PATH => true,
            _ => return Err((404, json!({ "code": "404", "message": "Not Found", "value": "" }))),
        };
        if r.method != Method::POST {
            return Err((405, json!({ "code": "405", "message": "Method Not Allowed", "value": "" })));
        }
        if r.too_large || r.body.len() > self.cfg.max_body_bytes {
            return Err(failure("1005", "请求过大"));
        }
        if !r.content_type_is("application/x-www-form-urlencoded") {
            return Err(failure("1005", "参数错误: Content-Type must be application/x-www-form-urlencoded"));
        }
        if f.get("appId").map(|a| a.trim()) != Some(self.cfg.app_id.as_str()) {
            return Err(failure("110000", message_for("110000")));
        }
        let Some(received_sign) = f.get("sign").filter(|s| !s.is_empty()) else {
            return Err(failure("110004", "参数不能为空: sign"));
        };
        let params: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if sign(&params, &self.cfg.app_secret) != *received_sign {
            return Err(failure("1006", message_for("1006")));
        }
        let list_field = if by_alias { "alias" } else { "pushIds" };
        let targets: Vec<String> = f
            .get(list_field)
            .map(|ids| ids.split(',').map(str::to_owned).filter(|id| !id.is_empty()).collect())
            .unwrap_or_default();
        if targets.is_empty() {
            return Err(failure("110004", "参数不能为空: pushIds"));
        }
        if targets.len() > MAX_TARGETS {
            return Err(failure("1005", "参数错误: at most 100 targets"));
        }
        let bad: Vec<String> = if by_alias {
            Vec::new()
        } else {
            targets.iter().filter(|id| !push_id_ok(id, self.cfg.max_push_id_chars)).cloned().collect()
        };
        let message = f
            .get("messageJson")
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
            .filter(Value::is_object)
            .ok_or_else(|| failure("1005", "参数错误: messageJson"))?;
        self.check_message(&message).map_err(|what| failure("1005", &format!("参数错误: {what}")))?;
        Ok(Valid { targets, bad })
    }

    /// The answer to a valid send: scripted rules are looked up per pushId, in order; the first
    /// request-level answer ends the lookup (so `times` counts requests, not pushIds).
    fn answer(&self, valid: Valid) -> FormAnswer {
        let mut value: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if !valid.bad.is_empty() {
            value.insert("110003".to_owned(), valid.bad.clone());
        }
        let per_target = |a: &MockAnswer| match (&a.reason, a.expire_auth, a.status) {
            (Some(reason), false, None | Some(200)) => match placement(reason) {
                Scripted::PerTarget(code) => Some(code),
                Scripted::TopLevel(_) => None,
            },
            _ => None,
        };
        let lookup = form::look_up(&self.core, valid.targets.iter().filter(|id| !valid.bad.contains(id)), per_target);
        for (id, code) in lookup.listed {
            value.entry(code).or_default().push(id);
        }
        if let Some(answer) = lookup.request {
            let (http, body) = self.scripted(&answer, &value);
            return FormAnswer { http, body, script: Some(answer) };
        }
        FormAnswer { http: 200, body: Some(success(&value)), script: lookup.delay }
    }
}

impl Meizu {
    /// meizu.md §7 item 6.
    fn check_message(&self, m: &Value) -> Result<(), &'static str> {
        let chars = |v: &Value| v.as_str().map(|s| s.chars().count());
        let bar = &m["noticeBarInfo"];
        if !chars(&bar["title"]).is_some_and(|n| (1..=32).contains(&n)) {
            return Err("noticeBarInfo.title must be 1-32 chars");
        }
        if !chars(&bar["content"]).is_some_and(|n| (1..=100).contains(&n)) {
            return Err("noticeBarInfo.content must be 1-100 chars");
        }
        if !(bar["noticeMsgType"].is_null() || matches!(bar["noticeMsgType"].as_u64(), Some(0 | 1))) {
            return Err("noticeBarInfo.noticeMsgType must be 0 or 1");
        }
        let time = &m["pushTimeInfo"];
        let off_line = time["offLine"].as_u64().unwrap_or(1);
        if off_line == 1
            && !time["validTime"].is_null()
            && !time["validTime"].as_u64().is_some_and(|h| (1..=72).contains(&h))
        {
            return Err("pushTimeInfo.validTime must be 1-72 hours");
        }
        let key = &m["advanceInfo"]["notifyKey"];
        if !key.is_null() {
            let ok = key.as_str().is_some_and(|k| {
                !k.is_empty() && k.len() <= 8 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            if !ok {
                return Err("advanceInfo.notifyKey must be at most 8 of [0-9A-Za-z_-]");
            }
        }
        let click = &m["clickTypeInfo"];
        match click["clickType"].as_u64() {
            None | Some(0) => {}
            Some(1) if click["activity"].as_str().is_some_and(|a| !a.is_empty()) => {}
            Some(1) => return Err("clickTypeInfo.activity is required for clickType 1"),
            Some(2) if click["url"].as_str().is_some_and(|u| !u.is_empty()) => {}
            Some(2) => return Err("clickTypeInfo.url is required for clickType 2"),
            Some(3) => {
                self.click_type_3.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => return Err("clickTypeInfo.clickType must be 0-3"),
        }
        Ok(())
    }

    fn scripted(&self, answer: &MockAnswer, value: &BTreeMap<String, Vec<String>>) -> (u16, Option<Value>) {
        if answer.expire_auth {
            let (http, body) = failure("1006", message_for("1006"));
            return (answer.status.unwrap_or(http), Some(body));
        }
        let code = answer.reason.as_deref().map(|r| match placement(r) {
            Scripted::PerTarget(code) | Scripted::TopLevel(code) => code,
        });
        match (answer.status, code) {
            (None | Some(200), None) => (200, Some(success(value))),
            (Some(status), None) => (status, None),
            (status, Some(code)) if code == "200" => (status.unwrap_or(200), Some(success(value))),
            (status, Some(code)) => {
                let (http, body) = failure(&code, message_for(&code));
                (status.unwrap_or(http), Some(body))
            }
        }
    }
}

/// An accepted call: a fresh 32-hex `msgId`, failed targets grouped by code.
fn success(value: &BTreeMap<String, Vec<String>>) -> Value {
    json!({
        "code": "200",
        "message": "",
        "msgId": uuid::Uuid::new_v4().simple().to_string(),
        "value": value,
        "redirect": "",
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::client;
    use super::super::MockRule;
    use super::*;
    use crate::clock::ManualClock;

    const APP_ID: &str = "100999";
    const SECRET: &str = "mzSecret0123456789abcdef";

    async fn start() -> MockMeizu {
        let mut cfg = MockMeizuConfig::new(APP_ID, SECRET);
        cfg.clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        MockMeizu::start(cfg).await.expect("mock starts")
    }

    fn message() -> Value {
        json!({
            "noticeBarInfo": { "noticeMsgType": 1, "title": "Alice", "content": "hi" },
            "clickTypeInfo": { "clickType": 0, "parameters": { "conv": "c42" } },
            "pushTimeInfo": { "offLine": 1, "validTime": 24 },
            "advanceInfo": { "notifyKey": "c42" }
        })
    }

    /// A form as name/value pairs.
    type Form = Vec<(String, String)>;

    /// A signed form for `push_ids` and `message`.
    fn signed(push_ids: &str, message: &Value) -> Form {
        let message = message.to_string();
        let params = [("appId", APP_ID), ("pushIds", push_ids), ("messageJson", message.as_str())];
        let sign = sign(&params, SECRET);
        let mut f: Form = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        f.push(("sign".into(), sign));
        f
    }

    async fn post_to(mock: &MockMeizu, path: &str, f: &[(String, String)]) -> (u16, Value) {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(f.iter()).finish();
        let response = client(mock, false)
            .post(mock.url().join(path).expect("url"))
            .header("content-type", "application/x-www-form-urlencoded;charset=UTF-8")
            .body(body)
            .send()
            .await
            .expect("mock answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(mock: &MockMeizu, f: &[(String, String)]) -> (u16, Value) {
        post_to(mock, "garcia/api/server/push/varnished/pushByPushId", f).await
    }

    #[tokio::test]
    async fn a_signed_batch_is_accepted_and_recorded_with_its_parsed_message() {
        let mock = start().await;
        let (status, body) = post(&mock, &signed("pidA1,pidB2", &message())).await;
        assert_eq!(status, 200);
        assert_eq!(body["code"], "200");
        assert_eq!(body["value"], json!({}));
        let msg_id = body["msgId"].as_str().expect("msgId");
        assert!(msg_id.len() == 32 && msg_id.bytes().all(|b| b.is_ascii_hexdigit()));
        let r = &mock.received()[0];
        assert_eq!((r.vendor, r.token.as_str()), ("meizu", "pidA1,pidB2"));
        assert_eq!(r.body["messageJson"]["noticeBarInfo"]["noticeMsgType"], 1);
        assert_eq!(r.body["appId"], APP_ID);
    }

    #[tokio::test]
    async fn the_worked_example_of_the_vendor_doc_is_accepted_byte_for_byte() {
        let mock = start().await;
        let body = "appId=100999&pushIds=pidA1%2CpidB2&messageJson=%7B%22noticeBarInfo%22%3A%7B%22noticeMsgType%22%3A1%2C%22title%22%3A%22Alice%22%2C%22content%22%3A%22hi%22%7D%2C%22pushTimeInfo%22%3A%7B%22offLine%22%3A1%2C%22validTime%22%3A24%7D%2C%22advanceInfo%22%3A%7B%22notifyKey%22%3A%22c42%22%7D%7D&sign=618cbd223521b3e20952e1ee91514d6c";
        let response = client(&mock, false)
            .post(mock.url().join("garcia/api/server/push/varnished/pushByPushId").expect("url"))
            .header("content-type", "application/x-www-form-urlencoded;charset=UTF-8")
            .body(body)
            .send()
            .await
            .expect("mock answers");
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["code"], "200", "{answer}");
    }

    #[tokio::test]
    async fn a_wrong_missing_or_upper_case_signature_is_refused() {
        let mock = start().await;
        let good = signed("pidA1", &message());
        let with_sign = |s: &str| {
            let mut f = good.clone();
            f.retain(|(k, _)| k != "sign");
            if !s.is_empty() {
                f.push(("sign".into(), s.to_owned()));
            }
            f
        };
        let upper = good.iter().find(|(k, _)| k == "sign").expect("sign").1.to_uppercase();
        let mut tampered = good.clone();
        tampered[1].1 = "pidA1,pidB2".into();
        let cases = [
            (with_sign(&upper), "1006"),
            (with_sign("0e2fb29120318b2304f4789316623f9b"), "1006"),
            (tampered, "1006"),
            (with_sign(""), "110004"),
        ];
        for (f, code) in cases {
            let (status, body) = post(&mock, &f).await;
            assert_eq!((status, body["code"].as_str()), (200, Some(code)), "{f:?}");
            assert_eq!(body["value"], "");
        }
    }

    #[tokio::test]
    async fn app_id_targets_and_message_fields_are_checked() {
        let mock = start().await;
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut m = message();
            f(&mut m);
            signed("pidA1", &m)
        };
        let mut other_app = signed("pidA1", &message());
        other_app[0].1 = "1".into();
        let cases: Vec<(&str, Form, &str)> = vec![
            ("other app", other_app, "110000"),
            ("no targets", signed("", &message()), "110004"),
            ("too many", signed(&vec!["pid"; 101].join(","), &message()), "1005"),
            ("long title", edit(&|m| m["noticeBarInfo"]["title"] = json!("t".repeat(33))), "1005"),
            ("empty content", edit(&|m| m["noticeBarInfo"]["content"] = json!("")), "1005"),
            ("long content", edit(&|m| m["noticeBarInfo"]["content"] = json!("字".repeat(101))), "1005"),
            ("valid time", edit(&|m| m["pushTimeInfo"]["validTime"] = json!(73)), "1005"),
            ("notify key", edit(&|m| m["advanceInfo"]["notifyKey"] = json!("conversation-1")), "1005"),
            ("activity", edit(&|m| m["clickTypeInfo"]["clickType"] = json!(1)), "1005"),
        ];
        let mut failures = Vec::new();
        for (name, f, code) in &cases {
            let (status, body) = post(&mock, f).await;
            if status != 200 || body["code"] != *code {
                failures.push(format!("{name}: expected {code}, got {status} {body}"));
            }
        }
        let mut not_json = signed("pidA1", &message());
        not_json[2].1 = "{".into();
        let params: Vec<(&str, &str)> = not_json[..3].iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        not_json[3].1 = sign(&params, SECRET);
        assert_eq!(post(&mock, &not_json).await.1["code"], "1005");
        assert!(failures.is_empty(), "{failures:#?}");
        let custom = edit(&|m| m["clickTypeInfo"]["clickType"] = json!(3));
        assert_eq!(post(&mock, &custom).await.1["code"], "200");
        assert_eq!(mock.click_type_3_seen(), 1);
    }

    #[tokio::test]
    async fn bad_format_push_ids_are_listed_as_illegal() {
        let mock = start().await;
        let (_, body) = post(&mock, &signed("pidA1,pid-with_dash", &message())).await;
        assert_eq!(body["code"], "200");
        assert_eq!(body["value"], json!({ "110003": ["pid-with_dash"] }));
    }

    #[tokio::test]
    async fn an_oversized_request_is_a_parameter_error() {
        let mut cfg = MockMeizuConfig::new(APP_ID, SECRET);
        cfg.max_body_bytes = 300;
        let mock = MockMeizu::start(cfg).await.expect("mock starts");
        let mut m = message();
        m["clickTypeInfo"]["parameters"]["pad"] = json!("x".repeat(300));
        assert_eq!(post(&mock, &signed("pidA1", &m)).await.1["code"], "1005");
    }

    #[tokio::test]
    async fn per_push_id_scripts_land_in_value_and_top_level_scripts_answer_the_request() {
        let mock = start().await;
        mock.script(MockRule::for_token("pidB2", MockAnswer::with_reason("110002")).times(1));
        mock.script(MockRule::for_token("pidC3", MockAnswer::with_reason("value:110010")).times(1));
        mock.script(MockRule::for_token("pidD4", MockAnswer::with_reason("520")).times(1));
        let (_, body) = post(&mock, &signed("pidA1,pidB2,pidC3,pidD4", &message())).await;
        assert_eq!(body["code"], "200");
        assert_eq!(body["value"], json!({ "110002": ["pidB2"], "110010": ["pidC3"], "520": ["pidD4"] }));

        mock.script(MockRule::any(MockAnswer::with_reason("110010")).times(1));
        mock.script(MockRule::any(MockAnswer::with_reason("110019")).times(1));
        mock.script(MockRule::any(MockAnswer::with_reason("top:110002")).times(1));
        mock.script(MockRule::any(MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));
        mock.script(MockRule::any(MockAnswer::with_status(503)).times(1));
        let mut got = Vec::new();
        for _ in 0..6 {
            let (status, body) = post(&mock, &signed("pidA1,pidB2", &message())).await;
            got.push((status, body["code"].as_str().map(str::to_owned), body["value"].clone()));
        }
        let codes: Vec<(u16, Option<&str>)> = got.iter().map(|(s, c, _)| (*s, c.as_deref())).collect();
        assert_eq!(
            codes,
            [
                (200, Some("110010")),
                (200, Some("110019")),
                (200, Some("110002")),
                (200, Some("1006")),
                (503, None),
                (200, Some("200"))
            ]
        );
        assert_eq!(got[0].2, "", "a request-level failure has an empty value");
    }

    #[tokio::test]
    async fn other_paths_are_404_and_alias_pushes_are_served() {
        let mock = start().await;
        let (status, _) = post_to(&mock, "garcia/api/server/push/unvarnished/pushByPushId", &[]).await;
        assert_eq!(status, 404);
        let m = message().to_string();
        let params = [("alias", "alice"), ("appId", APP_ID), ("messageJson", m.as_str())];
        let mut f: Form = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        f.push(("sign".into(), sign(&params, SECRET)));
        let (status, body) = post_to(&mock, "garcia/api/server/push/varnished/pushByAlias", &f).await;
        assert_eq!((status, body["code"].as_str()), (200, Some("200")));
    }
}
