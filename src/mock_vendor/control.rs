//! A plain HTTP/1.1 control server for people driving mocks from outside the process (the
//! `pushd demo` walkthrough, curl, load-test scripts): read what a mock received, add or clear
//! scripted answers. Tests in-process call [`MockServer`] directly instead.
//!
//! Routes (JSON in and out):
//!
//! | Route | Does |
//! |---|---|
//! | `GET /mock` | the mocks served: vendor, url, counters |
//! | `GET /mock/process` | this process's [`Usage`]: pid, CPU, RSS, start time; 503 without `/proc` |
//! | `GET /mock/{vendor}` | one mock: vendor, url, `ca_pem`, `started_unix_us`, counters |
//! | `GET /mock/{vendor}/received` | every [`Received`](super::Received), newest last |
//! | `DELETE /mock/{vendor}/received` | removes and returns every [`Received`](super::Received), oldest first |
//! | `GET /mock/{vendor}/rules` | the pending [`MockRule`]s |
//! | `POST /mock/{vendor}/rules` | adds a [`MockRule`] (body: its JSON) |
//! | `DELETE /mock/{vendor}/rules` | removes every rule |
//!
//! An unknown vendor is a 404 that lists the known ones; a known route with another method, a
//! 405. `GET /mock/{vendor}` gives what a client in another process needs: the CA to trust, and
//! `started_unix_us`, the wall clock (µs since the Unix epoch) at which `at_us` of the records
//! is 0. A load harness drains the record with `DELETE …/received` so nothing is dropped at
//! [`RECORD_CAPACITY`](super::RECORD_CAPACITY).
//!
//! No auth, no TLS: bind it to loopback. Not here: anything vendor-specific.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::tls::{drive, spawn_accept_loop, Stopper};
use super::{reply, MockApns, MockFcm, MockRule, MockServer, ReadRequest, Reply};
use crate::process::Usage;

/// Keeps the control server running; it stops on [`ControlHandle::shutdown`] or when the
/// handle is dropped.
#[must_use = "the control server stops when its handle is dropped"]
#[derive(Debug)]
pub struct ControlHandle {
    addr: SocketAddr,
    stopper: Stopper,
}

impl ControlHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting; open connections close after their current request. Idempotent.
    pub fn shutdown(&self) {
        self.stopper.stop();
    }
}

impl Drop for ControlHandle {
    fn drop(&mut self) {
        self.stopper.stop();
    }
}

/// Serves the control routes for the given mocks on `addr` (port 0 = any free port).
/// Returns the bound address once listening.
pub async fn serve_control(
    addr: SocketAddr,
    apns: Option<MockApns>,
    fcm: Option<MockFcm>,
) -> io::Result<(SocketAddr, ControlHandle)> {
    let mocks = apns.map(MockServer::from).into_iter().chain(fcm.map(MockServer::from)).collect();
    serve_mocks(addr, mocks).await
}

/// [`serve_control`] for any set of mocks, keyed by [`MockServer::vendor`] (which must be
/// unique).
pub async fn serve_mocks(addr: SocketAddr, mocks: Vec<MockServer>) -> io::Result<(SocketAddr, ControlHandle)> {
    let mut by_vendor = BTreeMap::new();
    for mock in mocks {
        let vendor = mock.vendor();
        if by_vendor.insert(vendor, mock).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mock control: two mocks named {vendor:?}"),
            ));
        }
    }
    let mocks = Arc::new(by_vendor);
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stopper = Stopper::new();
    let stop = stopper.signal();
    spawn_accept_loop(listener, stopper.signal(), move |stream| {
        let mocks = mocks.clone();
        let service = service_fn(move |req| {
            let mocks = mocks.clone();
            async move { Ok::<_, Infallible>(route(&mocks, req).await) }
        });
        let served = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        tokio::spawn(drive(served, stop.clone(), |c| c.graceful_shutdown()));
    });
    Ok((addr, ControlHandle { addr, stopper }))
}

fn error(status: u16, message: String) -> Reply {
    reply(status, &[], Some(&json!({ "error": message })))
}

fn ok(body: Value) -> Reply {
    reply(200, &[], Some(&body))
}

fn not_allowed(method: &Method) -> Reply {
    error(405, format!("{method} not allowed here"))
}

/// The 404 for a vendor no mock is named after, listing the known ones.
fn unknown(mocks: &BTreeMap<&'static str, MockServer>, vendor: &str) -> Reply {
    let known: Vec<&str> = mocks.keys().copied().collect();
    error(404, format!("no mock {vendor:?}; known: {}", known.join(", ")))
}

async fn route(mocks: &BTreeMap<&'static str, MockServer>, req: Request<Incoming>) -> Reply {
    let r = ReadRequest::read(req).await;
    let segments: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["mock"] if r.method == Method::GET => {
            let list: Vec<Value> = mocks
                .values()
                .map(|m| {
                    json!({
                        "vendor": m.vendor(),
                        "url": m.url().as_str(),
                        "connections_opened": m.connections_opened(),
                        "requests_total": m.requests_total(),
                    })
                })
                .collect();
            ok(Value::Array(list))
        }
        ["mock"] => not_allowed(&r.method),
        // No vendor is called "process"; this route is the process the mocks run in.
        ["mock", "process"] => match (&r.method, Usage::read()) {
            (&Method::GET, Some(usage)) => ok(json!(usage)),
            (&Method::GET, None) => error(503, "process usage unavailable: no /proc on this system".to_owned()),
            _ => not_allowed(&r.method),
        },
        ["mock", vendor] => {
            let Some(mock) = mocks.get(vendor) else {
                return unknown(mocks, vendor);
            };
            if r.method != Method::GET {
                return not_allowed(&r.method);
            }
            ok(json!({
                "vendor": mock.vendor(),
                "url": mock.url().as_str(),
                "ca_pem": mock.ca_pem(),
                "started_unix_us": mock.started_unix_us(),
                "connections_opened": mock.connections_opened(),
                "requests_total": mock.requests_total(),
            }))
        }
        ["mock", vendor, what @ ("received" | "rules")] => {
            let Some(mock) = mocks.get(vendor) else {
                return unknown(mocks, vendor);
            };
            match (*what, &r.method) {
                ("received", &Method::GET) => ok(json!(mock.received())),
                ("received", &Method::DELETE) => ok(json!(mock.take_received())),
                ("rules", &Method::GET) => ok(json!(mock.rules())),
                ("rules", &Method::POST) => match serde_json::from_slice::<MockRule>(&r.body) {
                    Ok(rule) => {
                        mock.script(rule);
                        ok(json!({ "rules": mock.rules().len() }))
                    }
                    Err(e) => error(400, format!("body is not a MockRule: {e}")),
                },
                ("rules", &Method::DELETE) => {
                    mock.clear_rules();
                    ok(json!({ "rules": 0 }))
                }
                _ => not_allowed(&r.method),
            }
        }
        _ => error(404, format!("no route {}", r.path)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{client, APNS_KEY_P8, APNS_PUB_PEM};
    use super::super::{MockAnswer, MockApnsConfig};
    use super::*;
    use crate::clock::Clock as _;

    #[tokio::test]
    async fn rules_posted_over_control_shape_answers_and_received_lists_them() {
        let apns = MockApns::start(MockApnsConfig::new("DEMOTEAM01", "DEMOKEY001", APNS_PUB_PEM, "com.example.im"))
            .await
            .expect("apns starts");
        let local = "127.0.0.1:0".parse().expect("addr");
        let (addr, _control) = serve_control(local, Some(apns.clone()), None).await.expect("control starts");
        let http = reqwest::Client::new();
        let base = format!("http://{addr}/mock");
        let token = "ab".repeat(32);

        let added = http
            .post(format!("{base}/apns/rules"))
            .body(r#"{"token":"ABSENT","answer":{"status":410}}"#)
            .send()
            .await
            .expect("control answers");
        let rule = MockRule::for_token(&token, MockAnswer::with_reason("BadDeviceToken"));
        let added_json = http.post(format!("{base}/apns/rules")).json(&rule).send().await.expect("control answers");
        let header = {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            h.kid = Some("DEMOKEY001".into());
            h
        };
        let key = jsonwebtoken::EncodingKey::from_ec_pem(APNS_KEY_P8.as_bytes()).expect("key");
        let claims = json!({ "iss": "DEMOTEAM01", "iat": chrono::Utc::now().timestamp() });
        let jwt = jsonwebtoken::encode(&header, &claims, &key).expect("signs");
        let pushed = client(&apns, true)
            .post(apns.url().join(&format!("3/device/{token}")).expect("url"))
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", "com.example.im")
            .body(r#"{"aps":{}}"#)
            .send()
            .await
            .expect("mock answers");
        let received: Value = http
            .get(format!("{base}/apns/received"))
            .send()
            .await
            .expect("control answers")
            .json()
            .await
            .expect("JSON");
        let cleared = http.delete(format!("{base}/apns/rules")).send().await.expect("control answers");
        let unknown = http.get(format!("{base}/huawei/received")).send().await.expect("control answers");
        let bad_rule = http.post(format!("{base}/apns/rules")).body("{}").send().await.expect("control answers");

        assert_eq!(added.status(), 200);
        assert_eq!(added_json.status(), 200);
        assert_eq!(pushed.status(), 400);
        assert_eq!(received[0]["token"], token.as_str());
        assert_eq!(received[0]["answer"]["reason"], "BadDeviceToken");
        assert_eq!(received[0]["headers"]["authorization"], "bearer eyJ0e");
        assert_eq!(cleared.status(), 200);
        assert!(apns.rules().is_empty());
        assert_eq!(unknown.status(), 404);
        assert_eq!(bad_rule.status(), 400);
    }

    /// A mock APNs and a control server for it on free ports; the control base URL.
    async fn apns_with_control() -> (MockApns, ControlHandle, String) {
        let apns = MockApns::start(MockApnsConfig::new("DEMOTEAM01", "DEMOKEY001", APNS_PUB_PEM, "com.example.im"))
            .await
            .expect("apns starts");
        let local = "127.0.0.1:0".parse().expect("addr");
        let (addr, control) = serve_control(local, Some(apns.clone()), None).await.expect("control starts");
        (apns, control, format!("http://{addr}/mock"))
    }

    /// Sends `n` requests without a provider token: refused by the mock, recorded all the same.
    async fn push_unsigned(apns: &MockApns, n: usize) {
        let url = apns.url().join(&format!("3/device/{}", "ab".repeat(32))).expect("url");
        for _ in 0..n {
            client(apns, true).post(url.clone()).body("{}").send().await.expect("mock answers");
        }
    }

    async fn call(method: reqwest::Method, url: &str) -> (u16, Value) {
        let r = reqwest::Client::new().request(method, url).send().await.expect("control answers");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON"))
    }

    #[tokio::test]
    async fn process_route_shows_this_process() {
        let (_apns, _control, base) = apns_with_control().await;

        let (status, usage) = call(reqwest::Method::GET, &format!("{base}/process")).await;
        let (refused, _) = call(reqwest::Method::POST, &format!("{base}/process")).await;

        let here = Usage::read().expect("/proc is readable on Linux");
        assert_eq!(status, 200, "{usage}");
        assert_eq!(usage["pid"], std::process::id());
        assert_eq!(usage["start_time_seconds"].as_f64(), Some(here.start_time_seconds), "{usage}");
        assert!(usage["cpu_seconds"].as_f64().is_some_and(|c| (0.0..=here.cpu_seconds).contains(&c)), "{usage}");
        assert!(usage["rss_bytes"].as_u64().is_some_and(|r| r > 0), "{usage}");
        assert_eq!(refused, 405);
    }

    #[tokio::test]
    async fn vendor_route_gives_the_ca_the_wall_clock_start_and_counters() {
        let (apns, _control, base) = apns_with_control().await;
        push_unsigned(&apns, 2).await;

        let (status, info) = call(reqwest::Method::GET, &format!("{base}/apns")).await;
        let (unknown, listed) = call(reqwest::Method::GET, &format!("{base}/huawei")).await;
        let (refused, _) = call(reqwest::Method::PUT, &format!("{base}/apns")).await;

        let now_us = crate::clock::SystemClock.now().timestamp_micros() as u64;
        assert_eq!(status, 200, "{info}");
        assert_eq!(info["vendor"], "apns");
        assert_eq!(info["url"], apns.url().as_str());
        assert_eq!(info["ca_pem"], apns.ca_pem());
        assert_eq!(info["started_unix_us"], apns.started_unix_us());
        let started = info["started_unix_us"].as_u64().expect("a number");
        assert!(started <= now_us && started > now_us - 60_000_000, "started within the last minute: {info}");
        assert_eq!(info["requests_total"], 2);
        assert!(info["connections_opened"].as_u64().is_some_and(|c| c >= 1), "{info}");
        assert_eq!(unknown, 404);
        assert!(listed["error"].as_str().is_some_and(|e| e.contains("known: apns")), "{listed}");
        assert_eq!(refused, 405);
    }

    #[tokio::test]
    async fn delete_received_drains_the_record_oldest_first() {
        let (apns, _control, base) = apns_with_control().await;
        push_unsigned(&apns, 3).await;
        let received = format!("{base}/apns/received");

        let (status, taken) = call(reqwest::Method::DELETE, &received).await;
        let (_, left) = call(reqwest::Method::GET, &received).await;
        push_unsigned(&apns, 1).await;
        let (_, next) = call(reqwest::Method::DELETE, &received).await;
        let (unknown, _) = call(reqwest::Method::DELETE, &format!("{base}/huawei/received")).await;
        let (refused, _) = call(reqwest::Method::POST, &received).await;

        assert_eq!(status, 200, "{taken}");
        let seqs: Vec<u64> = taken.as_array().expect("a list").iter().filter_map(|r| r["seq"].as_u64()).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(taken[0]["vendor"], "apns");
        assert!(taken[0]["at_us"].is_u64(), "the shape of GET …/received: {taken}");
        assert_eq!(left, json!([]));
        assert_eq!(next[0]["seq"], 4, "numbering goes on after a drain: {next}");
        assert_eq!(apns.requests_total(), 4);
        assert_eq!(unknown, 404);
        assert_eq!(refused, 405);
    }

    #[tokio::test]
    async fn two_mocks_with_one_name_are_refused() {
        let cfg = MockApnsConfig::new("T", "K", APNS_PUB_PEM, "com.example.im");
        let a = MockApns::start(cfg.clone()).await.expect("starts");
        let b = MockApns::start(cfg).await.expect("starts");
        let local = "127.0.0.1:0".parse().expect("addr");

        let refused = serve_mocks(local, vec![a.into(), b.into()]).await;

        assert_eq!(refused.map(|_| ()).map_err(|e| e.kind()), Err(io::ErrorKind::InvalidInput));
    }
}
