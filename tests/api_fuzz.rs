//! Property tests on the gateway API's request parsing (issue 5): whatever body a client sends
//! to a `/v1` endpoint — random bytes, random JSON, or a valid body with fields dropped,
//! retyped, duplicated, or given huge, exotic-unicode or control-character values — the answer
//! is never a 5xx, every refusal has the error shape, and the daemon keeps working.
//!
//! One daemon (on the embedded store, so the durable write path is exercised too) serves the
//! whole run; a `TestRunner` per endpoint drives it through `System::block_on`.

mod support;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use reqwest::Method;
use serde_json::{json, Map, Value};
use support::{apns_token, TestDaemon, API_KEY};

/// Cases per endpoint; `PUSHD_FUZZ_CASES` asks for more (a longer bug hunt).
fn cases() -> u32 {
    std::env::var("PUSHD_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(200)
}

/// A marker that survives JSON serialisation verbatim (private-use characters are not escaped)
/// and is replaced afterwards by raw JSON text no `serde_json::Value` can hold.
const MARK: char = '\u{E000}';

// ---- valid bodies, the starting points of mutation ----

/// Message ids in generated bodies; each case gets a fresh one so that messages are accepted
/// (and rendered, and pushed) rather than answered as duplicates.
const FUZZ_ID: &str = "m-fuzz";

fn valid_device() -> Value {
    json!({"credential": "test-apns", "token": apns_token("dan/phone"), "timezone": "Europe/Berlin", "locale": "zh-CN"})
}

fn valid_presence() -> Value {
    json!({"events": [
        {"user": "pat", "device": "phone", "state": "online", "at": "2020-01-01T00:00:00Z"},
        {"user": "pat", "device": "tablet", "state": "kicked"},
    ]})
}

fn valid_message() -> Value {
    json!({
        "id": FUZZ_ID,
        "from": {"id": "alice", "name": "Alice"},
        "conversation": {"id": "c-alice", "type": "group", "name": "Team"},
        "to": ["bob", "carol"],
        "kind": "text",
        "text": "hi",
        "mentions": ["bob"],
        "mention_all": false,
        "push": {
            "force": ["bob"], "title": "T", "body": "B", "template": "detail", "type": "alert",
            "collapse_id": "c1", "ttl_seconds": 60, "data": {"deep_link": "im://c/1"}
        }
    })
}

fn valid_batch() -> Value {
    let mut second = valid_message();
    second["id"] = json!(format!("{FUZZ_ID}-b"));
    second["push"] = json!({"force": true});
    json!({"messages": [valid_message(), second]})
}

fn valid_ack() -> Value {
    json!({"user": "bob", "device": "phone", "message_ids": [FUZZ_ID, "m-other"]})
}

fn valid_user_settings() -> Value {
    json!({
        "push_mode": "mentions", "dnd": {"from": "22:00", "to": "07:00"}, "dnd_minutes": 60,
        "dnd_until": "2030-01-01T00:00:00Z", "timezone": "Asia/Tokyo", "template": "detail",
        "display_name": "Sam"
    })
}

fn valid_conversation_settings() -> Value {
    let mut s = valid_user_settings();
    s.as_object_mut().unwrap().remove("timezone");
    s
}

/// Every `/v1` endpoint that takes a body. Each writes to users of its own so that mutated
/// settings or presence never stop the pushes of the message endpoints (bob and carol).
struct Endpoint {
    name: &'static str,
    method: Method,
    path: &'static str,
    valid: fn() -> Value,
}

fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint { name: "device", method: Method::PUT, path: "/v1/users/dan/devices/phone", valid: valid_device },
        Endpoint { name: "presence", method: Method::POST, path: "/v1/presence", valid: valid_presence },
        Endpoint { name: "message", method: Method::POST, path: "/v1/messages", valid: valid_message },
        Endpoint { name: "batch of messages", method: Method::POST, path: "/v1/messages", valid: valid_batch },
        Endpoint { name: "ack", method: Method::POST, path: "/v1/acks", valid: valid_ack },
        Endpoint {
            name: "user settings",
            method: Method::PUT,
            path: "/v1/users/sam/settings",
            valid: valid_user_settings,
        },
        Endpoint {
            name: "conversation settings",
            method: Method::PUT,
            path: "/v1/users/sam/conversations/c1/settings",
            valid: valid_conversation_settings,
        },
    ]
}

// ---- generators ----

/// Field names of every body, so random objects sometimes look like the real thing.
const FIELDS: &[&str] = &[
    "id",
    "from",
    "conversation",
    "to",
    "kind",
    "text",
    "mentions",
    "mention_all",
    "push",
    "force",
    "title",
    "body",
    "template",
    "type",
    "collapse_id",
    "ttl_seconds",
    "data",
    "name",
    "messages",
    "events",
    "user",
    "device",
    "state",
    "at",
    "message_ids",
    "credential",
    "token",
    "timezone",
    "locale",
    "push_mode",
    "dnd",
    "dnd_minutes",
    "dnd_until",
    "display_name",
];

/// Strings that mean something to some field, or that are known trouble.
const INTERESTING: &[&str] = &[
    "",
    " ",
    "bob",
    "carol",
    "online",
    "offline",
    "kicked",
    "single",
    "group",
    "chatroom",
    "text",
    "call",
    "alert",
    "silent",
    "voip",
    "all",
    "mentions",
    "none",
    "test-apns",
    "test-fcm",
    "test-apns-cert",
    "detail",
    "default",
    "Europe/Berlin",
    "UTC",
    "24:00",
    "00:00",
    "23:59",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-23:59",
    "0000-01-01T00:00:00Z",
    "0000-01-01T00:00:00+23:59",
    "1970-01-01T00:00:00Z",
    "2026-01-01T00:00:00.999999999999Z",
    "aps",
    "google.x",
    "\u{0}",
    "a\u{0}b",
    "\u{7f}",
    "\u{85}",
    "\u{200b}",
    "\u{202e}evil",
    "\u{feff}bom",
    "e\u{301}\u{301}\u{301}",
    "\u{10ffff}",
    "🎉🎉🎉",
    "👩‍👩‍👧‍👦",
    "群聊",
    "%00",
    "../../etc",
    "{sender_name}",
    "{{}}",
];

/// Raw JSON text a `Value` cannot hold or would normalise away.
const RAW: &[&str] = &[
    r#""\ud800""#,
    r#""\udc00\ud800""#,
    r#""\u0000""#,
    "1e400",
    "-1e400",
    "-0",
    "18446744073709551616",
    "-9223372036854775809",
    "1.0",
    "0.5e1",
    "NaN",
    "Infinity",
    "undefined",
    "'single'",
    "[",
    "{",
    "\"unterminated",
];

/// Numbers at the edges of the API's ranges (TTL, DND minutes, u32, i64).
const NUMBERS: &[i64] =
    &[0, -1, 1, 59, 1440, 2_419_200, 2_419_201, 527_040, 527_041, u32::MAX as i64, 1 << 32, i64::MIN, i64::MAX];

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(INTERESTING).prop_map(str::to_owned),
        2 => "[a-z0-9:_.-]{1,16}",
        2 => any::<String>(),
        1 => "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}]{1,8}",
        1 => "\\PC{0,40}",
        // Long: past an id's 128 bytes, a token's 4096, a display name's 256, the body limit.
        1 => (prop::sample::select(&["x", "é", "🎉", "\u{0}"][..]), prop::sample::select(&[129usize, 257, 4097, 20_000, 70_000][..]))
            .prop_map(|(s, n)| s.repeat(n)),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => prop::sample::select(NUMBERS).prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        3 => string().prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(FIELDS).prop_map(str::to_owned), 1 => string()]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a valid body, at a node chosen by `Index` among all nodes.
#[derive(Debug, Clone)]
enum Mutation {
    /// Removes the node from its object or array.
    Drop(Index),
    /// Replaces the node with another value (often of another type).
    Retype(Index, Value),
    /// Replaces a string with another string (huge, exotic unicode, control characters) and a
    /// number with another number: the body keeps its shape, so it often gets past parsing.
    Revalue(Index, String, i64),
    /// Adds a field to an object (an unknown one, or a known one of another body).
    Add(Index, String, Value),
    /// Writes one of an object's fields twice, with `Some` other value or the same again.
    Duplicate(Index, Index, Option<Value>),
    /// Replaces the node with raw JSON text.
    Raw(Index, &'static str),
    /// Puts the node one level down: `[x]` or `{"x": x}`.
    Wrap(Index, bool),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Drop),
        3 => (any::<Index>(), json_value()).prop_map(|(i, v)| Mutation::Retype(i, v)),
        4 => (any::<Index>(), string(), prop::sample::select(NUMBERS)).prop_map(|(i, s, n)| Mutation::Revalue(i, s, n)),
        1 => (any::<Index>(), key(), json_value()).prop_map(|(i, k, v)| Mutation::Add(i, k, v)),
        1 => (any::<Index>(), any::<Index>(), prop::option::of(leaf())).prop_map(|(i, k, v)| Mutation::Duplicate(i, k, v)),
        1 => (any::<Index>(), prop::sample::select(RAW)).prop_map(|(i, r)| Mutation::Raw(i, r)),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(i, a)| Mutation::Wrap(i, a)),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    At(usize),
}

/// Every node's path, the root first.
fn paths(v: &Value) -> Vec<Vec<Seg>> {
    fn walk(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        out.push(here.clone());
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    here.push(Seg::Key(k.clone()));
                    walk(child, here, out);
                    here.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    here.push(Seg::At(i));
                    walk(child, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn node<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, seg| match seg {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::At(i) => &mut v[*i],
    })
}

/// A body to send, with what it was made from (for the failure report).
#[derive(Debug, Clone)]
enum Input {
    Bytes(Vec<u8>),
    Json(Value),
    Mutated(Vec<Mutation>),
}

/// Applies `mutations` to the endpoint's valid body and serialises it, raw snippets and
/// duplicate fields written in.
fn mutated_body(valid: Value, mutations: &[Mutation]) -> String {
    let mut v = valid;
    let mut raws: Vec<(String, String)> = Vec::new();
    let marker = |n: usize| format!("{MARK}{n}{MARK}");
    for m in mutations {
        let all: Vec<Vec<Seg>> = paths(&v);
        match m {
            Mutation::Drop(i) => {
                let path = i.get::<Vec<Seg>>(&all).clone();
                if let Some((last, parent)) = path.split_last() {
                    match (node(&mut v, parent), last) {
                        (Value::Object(o), Seg::Key(k)) => {
                            o.remove(k);
                        }
                        (Value::Array(a), Seg::At(n)) => {
                            a.remove(*n);
                        }
                        _ => {}
                    }
                }
            }
            Mutation::Retype(i, new) => *node(&mut v, i.get::<Vec<Seg>>(&all)) = new.clone(),
            Mutation::Revalue(i, new_string, new_number) => {
                let n = node(&mut v, i.get::<Vec<Seg>>(&all));
                match n {
                    Value::String(_) => *n = Value::String(new_string.clone()),
                    Value::Number(_) => *n = Value::from(*new_number),
                    _ => {}
                }
            }
            Mutation::Add(i, k, new) => {
                if let Value::Object(o) = node(&mut v, i.get::<Vec<Seg>>(&all)) {
                    o.insert(k.clone(), new.clone());
                }
            }
            Mutation::Duplicate(i, k, other) => {
                if let Value::Object(o) = node(&mut v, i.get::<Vec<Seg>>(&all)) {
                    if !o.is_empty() {
                        let keys: Vec<String> = o.keys().cloned().collect();
                        let original = k.get(&keys).clone();
                        let value = other.clone().unwrap_or_else(|| o[&original].clone());
                        // A second field under a marker name, renamed to the original after
                        // serialisation: JSON text with the key twice.
                        let name = marker(raws.len());
                        raws.push((serde_json::to_string(&name).unwrap(), serde_json::to_string(&original).unwrap()));
                        o.insert(name, value);
                    }
                }
            }
            Mutation::Raw(i, raw) => {
                let name = marker(raws.len());
                raws.push((serde_json::to_string(&name).unwrap(), (*raw).to_owned()));
                *node(&mut v, i.get::<Vec<Seg>>(&all)) = Value::String(name);
            }
            Mutation::Wrap(i, as_array) => {
                let n = node(&mut v, i.get::<Vec<Seg>>(&all));
                let inner = n.take();
                *n = if *as_array { json!([inner]) } else { Value::Object(Map::from_iter([("x".into(), inner)])) };
            }
        }
    }
    let mut text = serde_json::to_string(&v).unwrap();
    for (name, raw) in raws {
        text = text.replace(&name, &raw);
    }
    text
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        1 => prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            // Almost JSON: printable ASCII, braces and quotes likely.
            "[{}\\[\\]\":,0-9a-z \\\\]{0,200}".prop_map(String::into_bytes),
        ].prop_map(Input::Bytes),
        2 => json_value().prop_map(Input::Json),
        5 => prop::collection::vec(mutation(), 1..5).prop_map(Input::Mutated),
    ]
}

/// How a case's body goes on the wire: the content type varies too.
fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        6 => Just(Some("application/json")),
        1 => Just(None),
        1 => Just(Some("text/plain; charset=latin1")),
        1 => Just(Some("application/x-www-form-urlencoded")),
    ]
}

// ---- the run ----

/// Sends `body`; the status and body text, or why no answer came.
async fn send(
    d: &TestDaemon,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let mut req = d.http.request(method, format!("{}{path}", d.base)).bearer_auth(API_KEY).body(body);
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    let resp = req.send().await.map_err(|e| format!("no answer: {e:?}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("answer cut short: {e:?}"))?;
    Ok((status, text))
}

/// A body shown in a failure report: lossy, and shortened around the middle if long.
fn show(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 600 {
        return format!("{s:?}");
    }
    let head: String = chars[..300].iter().collect();
    let tail: String = chars[chars.len() - 300..].iter().collect();
    format!("{head:?} …({} chars)… {tail:?}", chars.len())
}

/// Checks one answer: no 5xx, and a refusal is `{"error": {"code", "message"}}`.
fn check(status: u16, text: &str) -> Result<(), String> {
    if status >= 500 {
        return Err(format!("answered {status}: {text}"));
    }
    if status >= 400 {
        let body: Value = serde_json::from_str(text).map_err(|_| format!("{status} without a JSON body: {text:?}"))?;
        let shaped = body.as_object().is_some_and(|o| o.len() == 1)
            && body["error"]["code"].as_str().is_some_and(|c| !c.is_empty())
            && body["error"]["message"].is_string();
        if !shaped {
            return Err(format!("{status} not in the error shape: {text}"));
        }
    }
    Ok(())
}

#[test]
fn arbitrary_bodies_on_every_v1_endpoint_never_yield_a_5xx_nor_stop_the_daemon() {
    let sys = actix_rt::System::new();
    let d = sys.block_on(TestDaemon::start_with("[store]\nkind = \"embedded\""));
    sys.block_on(async {
        d.register_apns("bob", "phone").await;
        d.register_fcm("carol", "pixel").await;
    });

    let case = Cell::new(0usize);
    let statuses: RefCell<BTreeMap<(String, u16), usize>> = RefCell::default();
    for endpoint in endpoints() {
        let config = Config {
            cases: cases(),
            failure_persistence: None,
            // A failing case shrinks a little, never for long (each step is a request).
            max_shrink_iters: 200,
            max_shrink_time: 10_000,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let label = format!("{} {} ({})", endpoint.method, endpoint.path, endpoint.name);
        let result = runner.run(&(input(), content_type()), |(input, content_type)| {
            let n = case.get();
            case.set(n + 1);
            let body = match &input {
                Input::Bytes(b) => b.clone(),
                Input::Json(v) => serde_json::to_vec(v).unwrap(),
                Input::Mutated(ms) => mutated_body((endpoint.valid)(), ms).into_bytes(),
            };
            // A fresh message id per case, so that valid-enough messages are accepted anew.
            let body = String::from_utf8(body)
                .map(|s| s.replace(&format!("\"{FUZZ_ID}"), &format!("\"{FUZZ_ID}-{n}")).into_bytes())
                .unwrap_or_else(|e| e.into_bytes());
            let answer = sys.block_on(send(&d, endpoint.method.clone(), endpoint.path, content_type, body.clone()));
            let outcome = answer.and_then(|(status, text)| {
                *statuses.borrow_mut().entry((label.clone(), status)).or_default() += 1;
                check(status, &text)
            });
            outcome.map_err(|why| TestCaseError::fail(format!("{why}\n  body: {}", show(&body))))
        });
        match result {
            Ok(()) => {}
            Err(TestError::Fail(why, (input, ct))) => {
                panic!("{label}: {why}\n  content type: {ct:?}\n  input: {input:?}")
            }
            Err(e) => panic!("{label}: {e}"),
        }
    }
    let statuses = statuses.into_inner();
    // What the run covered, for whoever reads the output (nextest shows it on failure or with
    // --no-capture): status counts per endpoint.
    eprintln!("statuses per endpoint: {statuses:#?}");
    assert!(
        statuses.iter().any(|((label, status), _)| label.contains("/v1/messages") && *status == 202),
        "no generated message was accepted: the mutations never reach the delivery path"
    );

    // The daemon still serves normal requests, end to end.
    sys.block_on(async {
        let token = d.register_apns("zoe", "phone").await;
        d.send_text("after-the-fuzz", "alice", &["zoe"], "still here").await;
        let got = d.apns_received(&token, 1).await;
        assert_eq!(got[0].body["msg"], "after-the-fuzz");
        let (status, body) = d.put("/v1/users/zoe/settings", json!({"push_mode": "all"})).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) =
            d.post("/v1/presence", json!({"events": [{"user": "zoe", "device": "phone", "state": "online"}]})).await;
        assert_eq!(status, 202, "{body}");

        // The sessions of the users the fuzzed messages went to still decide new messages
        // (their presence may have been fuzzed, so the decision itself is not asserted).
        d.send_text("after-the-fuzz-2", "alice", &["bob", "carol"], "and you?").await;
        for (user, device) in [("bob", "phone"), ("carol", "pixel")] {
            let decision = d.decision(user, "after-the-fuzz-2", device).await;
            assert!(!decision.is_empty(), "{user}: no decision");
            let (status, body) = d.get(&format!("/v1/users/{user}/devices")).await;
            assert_eq!(status, 200, "{body}");
        }
    });
}
