//! pushd: the offline push dispatcher of an instant-messaging service.
//!
//! ```text
//! gateway ─HTTP─▶ api ─▶ store (accept) ─▶ session registry ─▶ Session actor (one per user)
//!                                                  │ policy::decide (pure) ─▶ render
//!                                                  ▼
//!                                   ProviderActor (one per credential) ─▶ vendor / mock
//! ```
//!
//! Module map:
//! - [`model`]: ids, enums, domain structs;  [`clock`]: the only wall clock.
//! - [`config`]: TOML + environment → validated [`config::Settings`].
//! - [`api`]: gateway `/v1` and operator listeners.
//! - [`session`]: per-user actors and their registry.
//! - [`policy`]: the push rules, pure.  [`render`]: templates, payload limits.
//! - [`provider`]: vendor trait, shared delivery layer, one module per vendor.
//! - [`mock_vendor`]: loopback vendor servers for tests, the demo and load tests.
//! - [`store`]: the persistence trait and its implementations.  [`metrics`]: every metric name.

pub mod api;
pub mod clock;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod mock_vendor;
pub mod model;
pub mod policy;
pub mod provider;
pub mod render;
pub mod session;
pub mod store;
pub mod trace;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::session::{Registry, Services};
use crate::store::Store;

/// The listeners pushd serves on, bound by the caller (tests bind `127.0.0.1:0` first, so
/// there is no startup race).
pub struct Listeners {
    pub gateway: TcpListener,
    pub operator: TcpListener,
    /// The Matrix push gateway's own listener (`matrix.listen`); `None`: on the gateway one.
    pub matrix: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `settings`.
    pub fn bind(settings: &Settings) -> std::io::Result<Self> {
        let matrix = match (settings.matrix.enabled, settings.matrix.listen) {
            (true, Some(addr)) => Some(TcpListener::bind(addr)?),
            _ => None,
        };
        Ok(Self {
            gateway: TcpListener::bind(settings.listen.gateway)?,
            operator: TcpListener::bind(settings.listen.operator)?,
            matrix,
        })
    }

    /// Gateway and operator listeners on free loopback ports (tests, tools).
    pub fn loopback() -> std::io::Result<Self> {
        Ok(Self {
            gateway: TcpListener::bind("127.0.0.1:0")?,
            operator: TcpListener::bind("127.0.0.1:0")?,
            matrix: None,
        })
    }
}

/// Why pushd could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listener: {0}")]
    Listen(#[from] std::io::Error),
    #[error("{0}")]
    Transport(#[from] provider::actor::TransportError),
    #[error("templates: {0}")]
    Templates(String),
}

/// A running daemon.
pub struct Running {
    pub gateway_addr: SocketAddr,
    pub operator_addr: SocketAddr,
    /// Where the Matrix push gateway listens, when it has its own listener.
    pub matrix_addr: Option<SocketAddr>,
    pub registry: Arc<Registry>,
    servers: Vec<actix_web::dev::ServerHandle>,
    arbiters: Vec<Arbiter>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and stops the arbiters.
    pub async fn stop(self) {
        for s in &self.servers {
            s.stop(true).await;
        }
        for a in &self.arbiters {
            a.stop();
        }
    }
}

/// Starts pushd inside the current actix system: sessions, providers, both listeners.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    store: Arc<dyn Store>,
    clock: SharedClock,
) -> Result<Running, StartError> {
    let metrics_handle = metrics::install();
    let templates = render::Templates::new(settings.render.clone(), &settings.templates)
        .map_err(|e| StartError::Templates(e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")))?;
    let services = Arc::new(Services::new(store, clock.clone(), settings.policy, settings.sessions.clone(), templates));

    let mut arbiters: Vec<Arbiter> = (0..settings.sessions.arbiters.max(1)).map(|_| Arbiter::new()).collect();
    let registry = Registry::new(services.clone(), arbiters.iter().map(Arbiter::handle).collect());

    let provider_arbiter = Arbiter::new();
    let mut providers = HashMap::new();
    for c in &settings.credentials {
        let sink_registry = registry.clone();
        let sink: provider::actor::ReportSink = Arc::new(move |r| sink_registry.report(r));
        let handle = provider::actor::ProviderHandle::start(
            &provider_arbiter.handle(),
            c.provider.clone(),
            c.vendor.clone(),
            clock.clone(),
            sink,
        )?;
        providers.insert(c.name.clone(), handle);
    }
    services.set_providers(providers);
    arbiters.push(provider_arbiter);

    let ready = Arc::new(AtomicBool::new(false));
    let api_state = web::Data::new(api::gateway::ApiState { registry: registry.clone(), api: settings.api.clone() });
    let max_body = settings.api.max_body_bytes;
    let gateway_addr = listeners.gateway.local_addr()?;
    let matrix_state =
        web::Data::new(api::matrix::MatrixState { registry: registry.clone(), settings: settings.matrix.clone() });
    // Without its own listener, the Matrix endpoint shares the gateway's (when enabled).
    let matrix_on_gateway = settings.matrix.enabled && listeners.matrix.is_none();
    let gateway_matrix = matrix_state.clone();
    let gateway = HttpServer::new(move || {
        let app = App::new()
            .app_data(api_state.clone())
            .app_data(gateway_matrix.clone())
            .app_data(web::PayloadConfig::new(max_body));
        if matrix_on_gateway {
            app.configure(api::matrix::routes).configure(api::gateway::routes)
        } else {
            app.configure(api::gateway::routes)
        }
    })
    .workers(2)
    // Gateways and homeservers reuse connections; an idle one stays open for 10 minutes.
    .keep_alive(std::time::Duration::from_secs(600))
    .disable_signals()
    .listen(listeners.gateway)?
    .run();

    let op_state = web::Data::new(api::operator::OperatorState {
        metrics: metrics_handle,
        ready: ready.clone(),
        registry: registry.clone(),
        admin_keys: settings.api.admin_keys.clone(),
    });
    let operator_addr = listeners.operator.local_addr()?;
    let operator = HttpServer::new(move || App::new().app_data(op_state.clone()).configure(api::operator::routes))
        .workers(1)
        .disable_signals()
        .listen(listeners.operator)?
        .run();

    let mut servers = vec![gateway.handle(), operator.handle()];
    actix_rt::spawn(gateway);
    actix_rt::spawn(operator);
    let mut matrix_addr = None;
    if let Some(listener) = listeners.matrix.filter(|_| settings.matrix.enabled) {
        matrix_addr = Some(listener.local_addr()?);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(matrix_state.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .configure(api::matrix::routes)
        })
        .workers(1)
        .disable_signals()
        // Homeservers keep connections open and retry 1 s after a silently dropped one:
        // keep idle connections well beyond their 2-minute expectation.
        .keep_alive(std::time::Duration::from_secs(600))
        .listen(listener)?
        .run();
        servers.push(server.handle());
        actix_rt::spawn(server);
    }
    ready.store(true, Ordering::Release);
    tracing::info!(%gateway_addr, %operator_addr, credentials = settings.credentials.len(), "pushd running");
    Ok(Running { gateway_addr, operator_addr, matrix_addr, registry, servers, arbiters })
}
