//! One dispatch end to end, next to a raw HTTP/2 client against the same mock.
//!
//! - `pushd_session_to_mock_apns`: a message reaches a user's session (in-process, through the
//!   registry), is decided, rendered, handed to the APNs provider, signed, sent over HTTP/2 to
//!   the loopback mock APNs; timed until the mock has recorded it (its answer follows at once).
//!   pushd then records the answer; the next iteration waits for that outside the timing.
//! - `raw_hyper_h2_to_mock_apns`: one request of the same shape (path, headers, provider
//!   token, body) from a plain hyper HTTP/2 client on its own TLS connection, until its answer.
//!
//! Both run one at a time (latency, not throughput); the bench prints the ratio of their mean
//! times. The mock runs on its own runtime thread. Run: `cargo bench --bench dispatch`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pushd::mock_vendor::{MockApns, MockApnsConfig};
use pushd::model::{
    Conversation, ConversationId, ConversationKind, CredentialName, DeviceId, Message, MessageId, MessageKind,
    PushOptions, Sender, Token, UserId, VendorKind,
};
use pushd::session::messages::{Arrival, MessageArrived, RegisterDevice};
use serde_json::json;

const TOKEN: &str = "5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d0a0b";

fn demo_file(name: &str) -> String {
    format!("{}/config/demo/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn message(n: u64) -> Arc<Message> {
    Arc::new(Message {
        id: MessageId::parse(&format!("m-{n}")).unwrap(),
        from: Sender { id: UserId::parse("alice").unwrap(), name: Some("Alice".into()) },
        conversation: Conversation {
            id: ConversationId::parse("alice-bob").unwrap(),
            kind: ConversationKind::Single,
            name: None,
        },
        to: vec![UserId::parse("bob").unwrap()],
        kind: MessageKind::Text,
        text: Some("Lunch at noon?".into()),
        mentions: vec![],
        mention_all: false,
        push: PushOptions::default(),
        accepted_at: chrono::Utc::now(),
    })
}

/// Mean time per iteration of a criterion run, kept for the ratio.
type Mean = Arc<Mutex<(Duration, u64)>>;

fn bench(c: &mut Criterion) {
    let mock_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut cfg = MockApnsConfig::new(
        "TEAM123456",
        "KEY1234567",
        std::fs::read_to_string(demo_file("apns-demo-key.pub.pem")).unwrap(),
        "com.example.im",
    );
    cfg.max_concurrent_streams = 100;
    let mock: MockApns = mock_rt.block_on(MockApns::start(cfg)).expect("mock starts");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, mock.ca_pem()).unwrap();
    let toml = format!(
        r#"
        data_dir = "{dir}"
        log = "error"
        [store]
        kind = "memory"
        [api]
        keys = ["bench-key"]
        [policy]
        ack_timeout_ms = 0
        [delivery]
        rate_per_sec = 1000000
        burst = 1000000
        [credentials.bench-apns]
        vendor = "apns"
        endpoint = "{url}"
        extra_roots = ["{ca}"]
        topic = "com.example.im"
        key_file = "{key}"
        key_id = "KEY1234567"
        team_id = "TEAM123456"
        "#,
        dir = dir.path().display(),
        url = mock.url(),
        ca = ca.display(),
        key = demo_file("apns-demo-key.p8"),
    );
    let settings = pushd::config::Loader::new()
        .layer_str("bench", &toml)
        .and_then(|l| l.layer_env(&HashMap::new()).settings())
        .unwrap_or_else(|e| panic!("{e}"));
    let system = actix_rt::System::new();
    let store = pushd::store::open(&settings).unwrap();
    let running = system
        .block_on(pushd::run(
            settings,
            pushd::Listeners::loopback().unwrap(),
            store,
            Arc::new(pushd::clock::SystemClock),
        ))
        .expect("pushd starts");
    let registry = running.registry.clone();
    let bob = UserId::parse("bob").unwrap();
    system
        .block_on(registry.call(
            &bob,
            RegisterDevice {
                device: DeviceId::parse("iphone").unwrap(),
                credential: CredentialName::parse("bench-apns").unwrap(),
                token: Token::parse_for(VendorKind::Apns, TOKEN).unwrap(),
                timezone: None,
                locale: Some("en".into()),
            },
        ))
        .unwrap()
        .unwrap();

    let (pushd_mean, raw_mean): (Mean, Mean) = Default::default();
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30).measurement_time(Duration::from_secs(5));

    let mut n = 0u64;
    g.bench_function("pushd_session_to_mock_apns", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let services = registry.services().clone();
                let (registry, bob, mock) = (registry.clone(), bob.clone(), mock.clone());
                total += system.block_on(async move {
                    drop(mock.take_received());
                    // The API reserves a unit of the pending bound per recipient; so do we.
                    services.reserve_pending(1);
                    let t = Instant::now();
                    registry.call(&bob, MessageArrived(message(n), Arrival::Accepted)).await.unwrap().unwrap();
                    mock.wait_for(|r| !r.is_empty(), Duration::from_secs(10)).await.unwrap();
                    let took = t.elapsed();
                    // Untimed: pushd records the answer before the next dispatch (bounded).
                    for _ in 0..10_000 {
                        if services.pending() == 0 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_micros(50)).await;
                    }
                    took
                });
            }
            let mut m = pushd_mean.lock().unwrap();
            m.0 += total;
            m.1 += iters;
            total
        })
    });

    // The raw client: its own TLS connection and h2 session to the same mock.
    let jwt = {
        let key = std::fs::read(demo_file("apns-demo-key.p8")).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("KEY1234567".into());
        let claims = json!({"iss": "TEAM123456", "iat": chrono::Utc::now().timestamp()});
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_pem(&key).unwrap()).unwrap()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut sender = rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut mock.ca_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap().to_owned();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        sender
    });
    let uri: http::Uri = format!("https://{}/3/device/{TOKEN}", mock.addr()).parse().unwrap();
    g.bench_function("raw_hyper_h2_to_mock_apns", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            rt.block_on(async {
                for i in 0..iters {
                    let body = json!({"aps": {"alert": {"title": "Alice", "body": "Lunch at noon?"}, "badge": 1,
                        "sound": "default", "thread-id": "alice-bob"}, "msg": format!("raw-{i}"), "conv": "alice-bob",
                        "sender": "alice"});
                    let req = http::Request::post(uri.clone())
                        .header("authorization", format!("bearer {jwt}"))
                        .header("apns-push-type", "alert")
                        .header("apns-topic", "com.example.im")
                        .header("apns-priority", "10")
                        .header("apns-collapse-id", format!("raw-{i}"))
                        .header("apns-id", uuid::Uuid::new_v4().hyphenated().to_string())
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body.to_string())))
                        .unwrap();
                    let resp = sender.send_request(req).await.unwrap();
                    assert_eq!(resp.status(), 200);
                    resp.into_body().collect().await.unwrap();
                    if i % 1000 == 0 {
                        drop(mock.take_received());
                    }
                }
            });
            let total = t.elapsed();
            let mut m = raw_mean.lock().unwrap();
            m.0 += total;
            m.1 += iters;
            total
        })
    });
    g.finish();

    let mean = |m: &Mean| {
        let m = m.lock().unwrap();
        m.0.as_secs_f64() / m.1.max(1) as f64
    };
    let (p, r) = (mean(&pushd_mean), mean(&raw_mean));
    println!(
        "dispatch: pushd {:.1} µs, raw hyper {:.1} µs per dispatch; ratio (raw / pushd) = {:.2}",
        p * 1e6,
        r * 1e6,
        r / p.max(1e-12)
    );
    system.block_on(running.stop());
    mock.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
