//! TLS material for the loopback mocks and the server loop every mock shares.
//!
//! Owns: the test CA and the server certificate (generated at start with rcgen, never written
//! to disk), the rustls server config with ALPN, the accept loop, per-connection hyper serving
//! (HTTP/2, or HTTP/1.1 when ALPN picked it) and graceful stop. Does not own: what a request
//! means (the vendor files) or what is recorded (`mod.rs`).
//!
//! ```text
//! TcpListener ─accept─▶ TLS handshake (ALPN) ─▶ hyper h2 | h1 ─▶ Vendor::handle per request
//!      ▲ stop signal ends the loop; open connections get a graceful shutdown (GOAWAY)
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::{Conn, Core, Vendor};

/// How long open connections get to finish their streams after a stop before being dropped.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A test CA and a server certificate for `localhost`, `127.0.0.1` and `::1` signed by it.
///
/// Generated fresh at every start. Share one (`Arc`) between several mocks so a client trusts
/// them all with one root; hand [`MockTls::ca_pem`] to pushd's extra-roots setting.
pub struct MockTls {
    /// The CA certificate, PEM: the only thing a client needs to trust the mocks.
    pub ca_pem: String,
    /// The server (leaf) certificate, PEM, for tools that want to inspect it.
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: PrivatePkcs8KeyDer<'static>,
    /// Kept to issue client certificates (APNs certificate auth).
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl fmt::Debug for MockTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key stays out of logs and test failure output.
        f.debug_struct("MockTls").field("ca_pem", &self.ca_pem).finish_non_exhaustive()
    }
}

fn tls_error(what: &str, e: impl fmt::Display) -> io::Error {
    io::Error::other(format!("mock TLS: {what}: {e}"))
}

impl MockTls {
    /// Generates a CA (P-256) and a server certificate signed by it.
    pub fn generate() -> io::Result<Self> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_error("CA params", e))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "pushd mock vendor CA");
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = ca_params.self_signed(&ca_key).map_err(|e| tls_error("CA certificate", e))?;

        let key = KeyPair::generate().map_err(|e| tls_error("server key", e))?;
        let names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        let mut params = CertificateParams::new(names).map_err(|e| tls_error("params", e))?;
        params.distinguished_name.push(DnType::CommonName, "pushd mock vendor");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(|e| tls_error("server certificate", e))?;

        Ok(Self {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
            ca_cert: ca,
            ca_key,
        })
    }

    /// A client certificate signed by the mock CA, with its key, as one PEM (certificate
    /// first): what an operator's APNs certificate file holds, for certificate-auth tests.
    pub fn client_identity_pem(&self, common_name: &str) -> io::Result<String> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate().map_err(|e| tls_error("client key", e))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_error("client params", e))?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert =
            params.signed_by(&key, &self.ca_cert, &self.ca_key).map_err(|e| tls_error("client certificate", e))?;
        Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
    }

    /// A rustls server config presenting the server certificate and offering `alpn`
    /// (e.g. `[b"h2"]`), in order of preference.
    pub fn server_config(&self, alpn: &[&[u8]]) -> io::Result<Arc<rustls::ServerConfig>> {
        // An explicit provider: the process-wide default may be unset or another backend.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("protocol versions", e))?
            .with_client_cert_verifier(self.client_verifier(provider.clone())?)
            .with_single_cert(vec![self.cert_der.clone()], PrivateKeyDer::Pkcs8(self.key_der.clone_key()))
            .map_err(|e| tls_error("certificate", e))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl MockTls {
    /// Client certificates are optional (token auth sends none); one that is presented must be
    /// signed by the mock CA, as APNs accepts only its own certificates.
    fn client_verifier(
        &self,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> io::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_cert.der().clone()).map_err(|e| tls_error("client roots", e))?;
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| tls_error("client verifier", e))
    }
}

/// Which HTTP versions a mock speaks (offered through ALPN).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Protocols {
    /// HTTP/2 only (APNs). A client without ALPN still gets HTTP/2.
    H2 { max_concurrent_streams: u32 },
    /// HTTP/2 preferred, HTTP/1.1 when the client asks for it or offers no ALPN (Google).
    H2OrHttp1 { max_concurrent_streams: u32 },
}

impl Protocols {
    pub(crate) fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            Protocols::H2 { .. } => &[b"h2"],
            Protocols::H2OrHttp1 { .. } => &[b"h2", b"http/1.1"],
        }
    }
}

/// The sending side of a stop signal; stopping is idempotent.
#[derive(Debug)]
pub(crate) struct Stopper(watch::Sender<bool>);

impl Stopper {
    pub(crate) fn new() -> Self {
        Self(watch::Sender::new(false))
    }

    pub(crate) fn stop(&self) {
        self.0.send_replace(true);
    }

    pub(crate) fn signal(&self) -> StopSignal {
        StopSignal(self.0.subscribe())
    }
}

/// Resolves once the server is told to stop.
#[derive(Debug, Clone)]
pub(crate) struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    pub(crate) async fn stopped(&mut self) {
        // A dropped sender also means "stop": nobody can start the server again.
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}

/// Accepts connections until `stop`, handing each TCP stream (TCP_NODELAY set) to
/// `on_stream`, which spawns whatever serves it.
pub(crate) fn spawn_accept_loop(
    listener: TcpListener,
    mut stop: StopSignal,
    on_stream: impl Fn(TcpStream) + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.stopped() => break,
            };
            match accepted {
                Ok((stream, _peer)) => {
                    // Clients must not pay Nagle's delay on small HTTP/2 frames.
                    let _ = stream.set_nodelay(true);
                    on_stream(stream);
                }
                Err(e) => {
                    // e.g. EMFILE under a load test: back off briefly instead of spinning.
                    tracing::debug!(error = %e, "mock accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
}

/// Runs one hyper connection until it ends or `stop` fires; on stop, calls `graceful`
/// (GOAWAY / close after the current request) and gives open streams [`STOP_GRACE`].
pub(crate) async fn drive<C>(conn: C, mut stop: StopSignal, graceful: impl FnOnce(Pin<&mut C>))
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        ended = conn.as_mut() => {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "mock connection ended with an error");
            }
            return;
        }
        _ = stop.stopped() => {}
    }
    graceful(conn.as_mut());
    let _ = tokio::time::timeout(STOP_GRACE, conn).await;
}

/// Serves a vendor over TLS on `listener` until the core is stopped.
pub(crate) fn spawn_tls_server<V: Vendor>(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    core: Arc<Core>,
    vendor: Arc<V>,
    protocols: Protocols,
) {
    let acceptor = TlsAcceptor::from(config);
    let stop = core.stop_signal();
    spawn_accept_loop(listener, stop, move |stream| {
        let fut = serve_tls_connection(stream, acceptor.clone(), core.clone(), vendor.clone(), protocols);
        tokio::spawn(fut);
    });
}

async fn serve_tls_connection<V: Vendor>(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    core: Arc<Core>,
    vendor: Arc<V>,
    protocols: Protocols,
) {
    let mut stop = core.stop_signal();
    let handshake = tokio::select! {
        handshake = acceptor.accept(stream) => handshake,
        _ = stop.stopped() => return,
    };
    let tls = match handshake {
        Ok(tls) => tls,
        Err(e) => {
            // Typical cause: the client does not trust the mock CA. Not an HTTP request, so
            // nothing is recorded; the client sees the TLS alert.
            tracing::debug!(vendor = core.vendor(), error = %e, "mock TLS handshake failed");
            return;
        }
    };
    let (use_h2, max_streams) = match protocols {
        Protocols::H2 { max_concurrent_streams } => (true, max_concurrent_streams),
        Protocols::H2OrHttp1 { max_concurrent_streams } => {
            (tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice()), max_concurrent_streams)
        }
    };
    let client_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
    let conn = Arc::new(Conn::<V::ConnState>::new(core.connection_opened(), client_cert));
    let service = {
        let core = core.clone();
        service_fn(move |req| {
            let (core, vendor, conn) = (core.clone(), vendor.clone(), conn.clone());
            async move {
                let _in_flight = core.enter(&conn);
                Ok::<_, Infallible>(vendor.handle(req, &conn).await)
            }
        })
    };
    let io = TokioIo::new(tls);
    if use_h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.max_concurrent_streams(max_streams);
        let served = builder.serve_connection(io, service);
        drive(served, stop, |c| c.graceful_shutdown()).await;
    } else {
        let served = http1::Builder::new().serve_connection(io, service);
        drive(served, stop, |c| c.graceful_shutdown()).await;
    }
}
