//! The ceiling: what a plain HTTP/2 client gets from the same mock APNs on the same machine,
//! with the same concurrency as pushd. Two clients: raw hyper (one TLS connection, `h2`, the
//! headline ceiling) and reqwest with prior knowledge (the client library pushd itself uses,
//! to show how much of the gap is the library and how much pushd).
//!
//! Each request is what pushd sends for one push: same path, headers (with a valid provider
//! token, signed once) and a body of the same shape.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

use crate::measure::{self, SendTimes};
use crate::rig::{demo_file, ApnsTarget, Vendor, TOPIC};

/// What one client run measured.
pub struct Run {
    pub requests: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl Run {
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A provider token the mock accepts: the demo key, under the team and key id it checks.
fn provider_token(mock: &ApnsTarget) -> anyhow::Result<String> {
    let key = std::fs::read(demo_file("apns-demo-key.p8"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(mock.key_id.into());
    let claims = json!({"iss": mock.team, "iat": chrono::Utc::now().timestamp()});
    Ok(jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_pem(&key)?)?)
}

/// The body pushd sends for a `default`-template text push, with this number as message id.
fn body(n: u64) -> Bytes {
    Bytes::from(
        json!({
            "aps": {"alert": {"title": "pushd", "body": "You have a new message"}, "badge": 1, "sound": "default",
                    "thread-id": "c-1"},
            "msg": format!("raw-{n}"), "conv": "c-1", "sender": "u1"
        })
        .to_string(),
    )
}

struct Shape {
    auth: http::HeaderValue,
    tokens: Vec<String>,
}

impl Shape {
    fn new(mock: &ApnsTarget, tokens: usize) -> anyhow::Result<Self> {
        Ok(Self {
            auth: http::HeaderValue::from_str(&format!("bearer {}", provider_token(mock)?))?,
            tokens: (0..tokens.max(1)).map(|u| Vendor::Apns.token(u, 0)).collect(),
        })
    }

    fn headers(&self, h: &mut http::HeaderMap, n: u64) {
        h.insert(http::header::AUTHORIZATION, self.auth.clone());
        h.insert("apns-push-type", http::HeaderValue::from_static("alert"));
        h.insert("apns-topic", http::HeaderValue::from_static(TOPIC));
        h.insert("apns-priority", http::HeaderValue::from_static("10"));
        if let Ok(v) = http::HeaderValue::from_str(&format!("raw-{n}")) {
            h.insert("apns-collapse-id", v);
        }
        if let Ok(v) = http::HeaderValue::from_str(&uuid::Uuid::new_v4().hyphenated().to_string()) {
            h.insert("apns-id", v);
        }
        h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    }

    fn path(&self, n: u64) -> String {
        format!("/3/device/{}", self.tokens[(n as usize) % self.tokens.len()])
    }
}

/// How a raw client paces its requests.
#[derive(Clone)]
pub enum Pace {
    /// This many request loops, each sending its next request when the last one is answered:
    /// the most the client gets through (the ceiling).
    Closed(usize),
    /// Open loop at this many requests per second, released every 2 ms like the harness posts
    /// its messages: the client's latency at a given rate, next to pushd's at the same rate.
    /// Each request's send instant is marked in the times (its body's `msg` is `raw-<n>`), so
    /// the mock's record gives send → vendor answer, the latency pushd's rows report.
    Rate(f64, Arc<SendTimes>),
}

/// Runs `one` for `duration` (and at most `max_requests`) at `pace`.
async fn drive<F, Fut>(pace: Pace, duration: Duration, max_requests: u64, one: F) -> Run
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    match pace {
        Pace::Closed(concurrency) => closed(concurrency, duration, max_requests, one).await,
        Pace::Rate(rate, times) => open(rate, &times, duration, max_requests, one).await,
    }
}

/// One request's result: answered 200 or not, and its round trip.
async fn timed<Fut: std::future::Future<Output = bool>>(fut: Fut) -> (bool, u64) {
    let t = Instant::now();
    let ok = fut.await;
    (ok, u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX).max(1))
}

async fn closed<F, Fut>(concurrency: usize, duration: Duration, max_requests: u64, one: F) -> Run
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, one) = (next.clone(), one.clone());
        tasks.push(tokio::spawn(async move {
            let mut run = Run::empty();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= max_requests || Instant::now() >= deadline {
                    break;
                }
                run.count(timed(one(n)).await);
            }
            run
        }));
    }
    Run::merge(tasks, start).await
}

async fn open<F, Fut>(rate: f64, times: &SendTimes, duration: Duration, max_requests: u64, one: F) -> Run
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    // At most this many unanswered requests: a stalled mock cannot make the loop grow unbounded.
    let outstanding = Arc::new(tokio::sync::Semaphore::new(4096));
    let start = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(2));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut next, mut tasks) = (0u64, Vec::new());
    while start.elapsed() < duration && next < max_requests {
        interval.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(max_requests);
        while next < due {
            let Ok(permit) = outstanding.clone().acquire_owned().await else { break };
            let one = one.clone();
            let n = next;
            next += 1;
            times.mark(n as usize, Instant::now());
            tasks.push(tokio::spawn(async move {
                let result = timed(one(n)).await;
                drop(permit);
                result
            }));
        }
    }
    // One histogram for the run (a histogram per request would be ~100 KB each).
    let mut run = Run::empty();
    for t in tasks {
        if let Ok(result) = t.await {
            run.count(result);
        }
    }
    run.elapsed = start.elapsed();
    run
}

impl Run {
    fn empty() -> Self {
        Self { requests: 0, failed: 0, elapsed: Duration::ZERO, latency: measure::latency_histogram() }
    }

    fn count(&mut self, (ok, us): (bool, u64)) {
        if ok {
            self.requests += 1;
            self.latency.saturating_record(us);
        } else {
            self.failed += 1;
        }
    }

    async fn merge(tasks: Vec<tokio::task::JoinHandle<Run>>, start: Instant) -> Run {
        let mut run = Run::empty();
        for t in tasks {
            if let Ok(part) = t.await {
                run.requests += part.requests;
                run.failed += part.failed;
                let _ = run.latency.add(part.latency);
            }
        }
        run.elapsed = start.elapsed();
        run
    }
}

/// Raw hyper: one TLS connection speaking h2, paced by `pace`.
pub async fn hyper_h2(mock: &ApnsTarget, pace: Pace, duration: Duration, tokens: usize) -> anyhow::Result<Run> {
    let shape = Arc::new(Shape::new(mock, tokens)?);
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut mock.ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(mock.addr).await?;
    tcp.set_nodelay(true)?;
    let host = mock.url.host_str().unwrap_or("127.0.0.1").trim_matches(['[', ']']).to_owned();
    let name = rustls::pki_types::ServerName::try_from(host)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.context("TLS")?;
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    let driver = tokio::spawn(conn);
    let authority = format!("https://{}", mock.addr);
    let run = drive(pace, duration, u64::MAX, move |n| {
        let (mut sender, shape, authority) = (sender.clone(), shape.clone(), authority.clone());
        async move {
            let mut req = http::Request::new(Full::new(body(n)));
            *req.method_mut() = http::Method::POST;
            let Ok(uri) = format!("{authority}{}", shape.path(n)).parse() else { return false };
            *req.uri_mut() = uri;
            shape.headers(req.headers_mut(), n);
            match sender.send_request(req).await {
                Ok(resp) => {
                    let ok = resp.status() == http::StatusCode::OK;
                    ok && resp.into_body().collect().await.is_ok()
                }
                Err(_) => false,
            }
        }
    })
    .await;
    driver.abort();
    Ok(run)
}

/// reqwest with HTTP/2 prior knowledge (pushd's own client library, without pushd).
pub async fn reqwest_h2(mock: &ApnsTarget, pace: Pace, duration: Duration, tokens: usize) -> anyhow::Result<Run> {
    let shape = Arc::new(Shape::new(mock, tokens)?);
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(mock.ca_pem.as_bytes())?)
        .http2_prior_knowledge()
        .tcp_nodelay(true)
        .build()?;
    let base = mock.url.clone();
    Ok(drive(pace, duration, u64::MAX, move |n| {
        let (client, shape) = (client.clone(), shape.clone());
        let url = format!("{}{}", base.as_str().trim_end_matches('/'), shape.path(n));
        async move {
            let mut headers = http::HeaderMap::new();
            shape.headers(&mut headers, n);
            match client.post(url).headers(headers).body(body(n)).send().await {
                Ok(resp) => resp.status() == reqwest::StatusCode::OK && resp.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await)
}
