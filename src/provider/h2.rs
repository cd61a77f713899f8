//! The transport of HTTP/2-only vendors (APNs): one hyper HTTP/2 connection per credential,
//! over rustls with ALPN `h2`, shared by every push of that credential.
//!
//! Why not reqwest here: measured (load harness, issue 6, A/B in one build, alternating, two
//! runs each) the APNs fan-out went from 27.6–28.3 k to 31.7–32.2 k pushes/s and from 47–48 to
//! 39–41 µs of pushd CPU per push; reqwest's pool and per-request layers are a cost an
//! HTTP/2-only vendor does not need (it multiplexes every push over one connection). The other
//! vendors keep reqwest. Like reqwest, it tunnels through the `HTTPS_PROXY` the environment
//! names, unless `NO_PROXY` exempts the host ([`super::proxy`]).
//!
//! - The connection is made on first use and again once hyper reports it closed (GOAWAY, a
//!   reset, a failed keep-alive ping); one task connects at a time, the others wait for it.
//! - HTTP/2 keep-alive pings every 60 s, also while idle (APNs drops quiet connections).
//! - The peer's `SETTINGS_MAX_CONCURRENT_STREAMS` is honoured by h2: pushes beyond it queue.
//! - Failures map to the shared layer's retry reasons: `connect` (TCP, TLS, HTTP/2 handshake or
//!   `connect_timeout`), `timeout` (no answer within the request timeout), `transport`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::actor::TransportSettings;
use super::proxy::Proxy;
use super::{Outcome, VendorRequest};

/// How long a new connection may take (TCP, TLS and the HTTP/2 preface).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keep-alive ping interval.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// A vendor's answer: status, headers, body.
pub type Answer = (http::StatusCode, http::HeaderMap, Bytes);

/// One credential's HTTP/2 connection.
pub struct H2Transport {
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<Proxy>,
    /// The open connection and the `host:port` it goes to.
    conn: Mutex<Option<(String, SendRequest<Full<Bytes>>)>>,
    /// Held while connecting: one connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for H2Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Transport").finish_non_exhaustive()
    }
}

impl H2Transport {
    /// The TLS setup from the credential's settings: the public web roots plus `extra_roots_pem`,
    /// and the client certificate of `identity_pem` (certificate chain and key in one PEM); the
    /// proxy from the environment.
    pub fn new(t: &TransportSettings) -> Result<Self, String> {
        Self::with_proxy(t, Proxy::from_env()?)
    }

    /// As [`H2Transport::new`], through `proxy` (or directly).
    pub fn with_proxy(t: &TransportSettings, proxy: Option<Proxy>) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for pem in &t.extra_roots_pem {
            for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("extra root: {e}"))?;
                roots.add(cert).map_err(|e| format!("extra root: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let mut config = match &t.identity_pem {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let chain = rustls_pemfile::certs(&mut pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("client certificate: {e}"))?;
                let key = rustls_pemfile::private_key(&mut pem.as_bytes())
                    .map_err(|e| format!("client certificate key: {e}"))?
                    .ok_or("client certificate: no private key in the PEM")?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self { tls: Arc::new(config), proxy, conn: Mutex::new(None), connecting: tokio::sync::Mutex::new(()) })
    }

    /// Sends one request; the answer, or the retry reason of what went wrong.
    pub async fn send(&self, r: VendorRequest, timeout: Duration) -> Result<Answer, Outcome> {
        let retry = |reason| Outcome::Retry { after: None, reason };
        let mut sender = self.sender(&r.url).await.map_err(|_| retry("connect"))?;
        let uri: http::Uri = r.url.as_str().parse().map_err(|_| Outcome::Fatal { reason: "build_failed" })?;
        let mut req = http::Request::new(Full::new(r.body));
        *req.method_mut() = r.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = r.headers;
        let exchange = async {
            let resp = sender.send_request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>((parts.status, parts.headers, body))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(retry("transport")),
            Err(_) => Err(retry("timeout")),
        }
    }

    /// The open connection to `url`'s host, connecting if there is none.
    async fn sender(&self, url: &url::Url) -> Result<SendRequest<Full<Bytes>>, String> {
        let (host, port) = endpoint(url)?;
        let authority = format!("{host}:{port}");
        if let Some(s) = self.open(&authority) {
            return Ok(s);
        }
        let _one = self.connecting.lock().await;
        // Another task may have connected while this one waited.
        if let Some(s) = self.open(&authority) {
            return Ok(s);
        }
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(&host, port))
            .await
            .unwrap_or_else(|_| Err("no connection within the connect timeout".to_owned()));
        let sender = connected.inspect_err(|e| tracing::warn!(%authority, error = %e, "vendor connection failed"))?;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some((authority, sender.clone()));
        Ok(sender)
    }

    fn open(&self, authority: &str) -> Option<SendRequest<Full<Bytes>>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.as_ref().filter(|(a, s)| a == authority && !s.is_closed()).map(|(_, s)| s.clone())
    }

    async fn connect(&self, host: &str, port: u16) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = match self.proxy.as_ref().filter(|p| p.applies_to(host)) {
            Some(proxy) => proxy.tunnel(host, port).await?,
            None => tokio::net::TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?,
        };
        // Without TCP_NODELAY a quiet HTTP/2 connection waits ~40 ms per request (Nagle +
        // delayed ACK); see docs/decisions.md.
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let tls =
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await.map_err(|e| e.to_string())?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err("the server did not agree to HTTP/2 (ALPN h2)".into());
        }
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP/2 connection ended");
            }
        });
        Ok(sender)
    }
}

/// The host (an IPv6 address without its brackets) and port `url` names.
fn endpoint(url: &url::Url) -> Result<(String, u16), String> {
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string(),
        None => return Err(format!("{url}: no host")),
    };
    let port = url.port_or_known_default().ok_or_else(|| format!("{url}: no port"))?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use http::{HeaderMap, HeaderValue, Method};

    use super::*;
    use crate::mock_vendor::testing::{APNS_KEY_P8, APNS_PUB_PEM};
    use crate::mock_vendor::tls::MockTls;
    use crate::mock_vendor::{MockAnswer, MockApns, MockApnsConfig, MockRule};

    const TOKEN: &str = "5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d0a0b";
    const WAIT: Duration = Duration::from_secs(5);

    async fn mock(tls: &Arc<MockTls>, addr: SocketAddr) -> std::io::Result<MockApns> {
        let mut cfg = MockApnsConfig::new("DEMOTEAM01", "DEMOKEY001", APNS_PUB_PEM, "com.example.im");
        cfg.tls = Some(tls.clone());
        cfg.addr = addr;
        MockApns::start(cfg).await
    }

    fn transport(mock: &MockApns) -> H2Transport {
        let settings =
            TransportSettings { http2_only: true, extra_roots_pem: vec![mock.ca_pem().to_owned()], identity_pem: None };
        H2Transport::new(&settings).expect("transport builds")
    }

    /// One provider token for the whole test (the mock, like APNs, answers 429 to a connection
    /// that changes its token too often; ES256 signatures differ on every signing).
    fn provider_token() -> &'static str {
        static JWT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        JWT.get_or_init(|| {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            header.kid = Some("DEMOKEY001".into());
            let iat = crate::clock::Clock::now(&crate::clock::SystemClock).timestamp();
            let claims = serde_json::json!({"iss": "DEMOTEAM01", "iat": iat});
            let key = jsonwebtoken::EncodingKey::from_ec_pem(APNS_KEY_P8.as_bytes()).expect("demo key");
            jsonwebtoken::encode(&header, &claims, &key).expect("signs")
        })
    }

    /// A push the mock accepts (200).
    fn push(mock: &MockApns) -> VendorRequest {
        let jwt = provider_token();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("bearer {jwt}")).expect("header"));
        headers.insert("apns-topic", HeaderValue::from_static("com.example.im"));
        headers.insert("apns-push-type", HeaderValue::from_static("alert"));
        VendorRequest {
            method: Method::POST,
            url: mock.url().join(&format!("/3/device/{TOKEN}")).expect("url"),
            headers,
            body: Bytes::from_static(br#"{"aps":{"alert":"hi"}}"#),
        }
    }

    fn reason(r: Result<Answer, Outcome>) -> &'static str {
        match r {
            Ok((status, ..)) => panic!("answered {status}, expected a failure"),
            Err(o) => o.reason(),
        }
    }

    #[tokio::test]
    async fn pushes_share_one_connection_and_a_closed_one_is_replaced() {
        let tls = Arc::new(MockTls::generate().expect("mock CA"));
        let first = mock(&tls, "127.0.0.1:0".parse().unwrap()).await.expect("mock starts");
        let addr = first.addr();
        let t = transport(&first);
        for _ in 0..3 {
            let (status, ..) = t.send(push(&first), WAIT).await.expect("answered");
            assert_eq!(status, http::StatusCode::OK);
        }
        let conns: std::collections::BTreeSet<u64> = first.received().iter().map(|r| r.connection).collect();
        assert_eq!(conns.len(), 1, "three pushes, one connection: {conns:?}");

        // The vendor goes away (its connections get GOAWAY) and comes back on the same address.
        drop(first);
        let mut second = None;
        for _ in 0..250 {
            // Bounded: the old listener closes within moments of the stop.
            match mock(&tls, addr).await {
                Ok(m) => {
                    second = Some(m);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let second = second.expect("the address is free again");
        // A push may still meet the closing connection (`transport`, retried by the shared
        // layer); the next one connects again.
        let mut failures = Vec::new();
        let mut answered = false;
        for _ in 0..3 {
            match t.send(push(&second), WAIT).await {
                Ok((status, ..)) => {
                    assert_eq!(status, http::StatusCode::OK);
                    answered = true;
                    break;
                }
                Err(o) => failures.push(o.reason()),
            }
        }
        assert!(answered, "no answer after the vendor came back: {failures:?}");
        assert!(failures.len() <= 1 && failures.iter().all(|r| *r == "transport"), "{failures:?}");
        assert_eq!(second.received().len(), 1);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_failure_and_a_slow_answer_a_timeout() {
        let tls = Arc::new(MockTls::generate().expect("mock CA"));
        let m = mock(&tls, "127.0.0.1:0".parse().unwrap()).await.expect("mock starts");
        let t = transport(&m);

        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
        let mut nowhere = push(&m);
        nowhere.url.set_port(Some(free.port())).expect("port");
        assert_eq!(reason(t.send(nowhere, WAIT).await), "connect");

        m.script(MockRule::any(MockAnswer { delay_ms: Some(2_000), ..MockAnswer::default() }).times(1));
        assert_eq!(reason(t.send(push(&m), Duration::from_millis(100)).await), "timeout");
        // The connection survives a timed-out stream.
        let (status, ..) = t.send(push(&m), WAIT).await.expect("answered");
        assert_eq!(status, http::StatusCode::OK);
    }

    /// A CONNECT proxy on loopback: records each request head, answers `answer`, and on a 200
    /// relays bytes both ways.
    async fn connect_proxy(answer: &'static str) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                    seen.lock().expect("heads").push(head);
                    if client.write_all(answer.as_bytes()).await.is_err() || !answer.starts_with("HTTP/1.1 200") {
                        return;
                    }
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        (addr, heads)
    }

    fn via(mock: &MockApns, proxy: SocketAddr, no_proxy: &str) -> H2Transport {
        let settings =
            TransportSettings { http2_only: true, extra_roots_pem: vec![mock.ca_pem().to_owned()], identity_pem: None };
        let proxy = Proxy::parse(&format!("http://pushd:s%3Acret@{proxy}"), no_proxy).expect("proxy");
        H2Transport::with_proxy(&settings, Some(proxy)).expect("transport builds")
    }

    #[tokio::test]
    async fn pushes_tunnel_through_the_proxy_with_its_credentials_unless_no_proxy_exempts_the_host() {
        let tls = Arc::new(MockTls::generate().expect("mock CA"));
        let m = mock(&tls, "127.0.0.1:0".parse().unwrap()).await.expect("mock starts");
        let (proxy, heads) = connect_proxy("HTTP/1.1 200 Connection established\r\n\r\n").await;

        let t = via(&m, proxy, "");
        for _ in 0..2 {
            let (status, ..) = t.send(push(&m), WAIT).await.expect("answered through the proxy");
            assert_eq!(status, http::StatusCode::OK);
        }
        let seen = heads.lock().expect("heads").clone();
        assert_eq!(seen.len(), 1, "one tunnel serves both pushes: {seen:?}");
        let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "pushd:s:cret");
        assert!(seen[0].starts_with(&format!("CONNECT {} HTTP/1.1\r\n", m.addr())), "{}", seen[0]);
        assert!(seen[0].contains(&format!("Proxy-Authorization: Basic {basic}\r\n")), "{}", seen[0]);

        let direct = via(&m, proxy, "127.0.0.0/8");
        let (status, ..) = direct.send(push(&m), WAIT).await.expect("answered directly");
        assert_eq!(status, http::StatusCode::OK);
        assert_eq!(heads.lock().expect("heads").len(), 1, "NO_PROXY: no second tunnel");
        assert_eq!(m.received().len(), 3);
    }

    #[tokio::test]
    async fn a_proxy_refusing_the_tunnel_is_a_connect_failure() {
        let tls = Arc::new(MockTls::generate().expect("mock CA"));
        let m = mock(&tls, "127.0.0.1:0".parse().unwrap()).await.expect("mock starts");
        let (proxy, heads) = connect_proxy("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        assert_eq!(reason(via(&m, proxy, "").send(push(&m), WAIT).await), "connect");
        assert_eq!(heads.lock().expect("heads").len(), 1);
        assert!(m.received().is_empty());
    }

    #[test]
    fn the_endpoint_is_host_and_port_with_ipv6_unbracketed() {
        let e = |u: &str| endpoint(&url::Url::parse(u).unwrap()).unwrap();
        assert_eq!(e("https://api.push.apple.com/3/device/ab"), ("api.push.apple.com".into(), 443));
        assert_eq!(e("https://127.0.0.1:8443/3/device/ab"), ("127.0.0.1".into(), 8443));
        assert_eq!(e("https://[::1]:8443/3/device/ab"), ("::1".into(), 8443));
    }

    #[tokio::test]
    async fn an_untrusted_certificate_does_not_connect() {
        let tls = Arc::new(MockTls::generate().expect("mock CA"));
        let m = mock(&tls, "127.0.0.1:0".parse().unwrap()).await.expect("mock starts");
        // Trusting only the public roots, the mock's certificate is refused.
        let public = H2Transport::new(&TransportSettings::default()).expect("transport builds");
        assert_eq!(reason(public.send(push(&m), WAIT).await), "connect");
        assert!(m.received().is_empty());
    }
}
