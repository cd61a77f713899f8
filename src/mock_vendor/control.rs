//! A plain HTTP/1.1 control server for people driving mocks from outside the process (the
//! `pushd demo` walkthrough, curl, load-test scripts): read what a mock received, add or clear
//! scripted answers. Tests in-process call [`MockServer`] directly instead.
//!
//! Routes (JSON in and out):
//!
//! | Route | Does |
//! |---|---|
//! | `GET /mock` | the mocks served: vendor, url, counters |
//! | `GET /mock/{vendor}/received` | every [`Received`](super::Received), newest last |
//! | `GET /mock/{vendor}/rules` | the pending [`MockRule`]s |
//! | `POST /mock/{vendor}/rules` | adds a [`MockRule`] (body: its JSON) |
//! | `DELETE /mock/{vendor}/rules` | removes every rule |
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
        ["mock", vendor, what @ ("received" | "rules")] => {
            let Some(mock) = mocks.get(vendor) else {
                let known: Vec<&str> = mocks.keys().copied().collect();
                return error(404, format!("no mock {vendor:?}; known: {}", known.join(", ")));
            };
            match (*what, &r.method) {
                ("received", &Method::GET) => ok(json!(mock.received())),
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
                _ => error(405, format!("{} not allowed here", r.method)),
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
