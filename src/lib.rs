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
//! - [`process`]: this process's CPU, memory and start time (for `/metrics` and the mocks).

pub mod api;
pub mod clock;
pub mod config;
pub mod demo;
pub mod maps;
pub mod metrics;
pub mod mock_vendor;
pub mod model;
pub mod policy;
pub mod process;
pub mod provider;
pub mod render;
pub mod session;
pub mod store;
pub mod trace;

/// The allocator of every process that runs pushd (the daemon, the load harness, the tests):
/// mimalloc. Measured (load harness, issue 6): with glibc malloc, malloc/free and contention on
/// its arena locks were 18–25 % of pushd's CPU and 0.6 s of every 6 s of the session threads'
/// off-CPU time, and glibc's fragmentation between JSON temporaries and long-lived session
/// data made an active session cost 3.5 KB of RSS instead of ~1.5 KB. Declared in the library
/// so that the harness measures the allocator the daemon ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    #[error("store: {0}")]
    Store(String),
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
    sweeper: actix_rt::task::JoinHandle<()>,
    grace: std::time::Duration,
}

impl Running {
    /// Graceful shutdown: stop accepting (requests in progress finish), give accepted work up
    /// to the grace period to reach the vendors, flush the store, stop the arbiters. Work still
    /// pending stays in the journal for the next start.
    pub async fn stop(self) {
        for s in &self.servers {
            s.stop(true).await;
        }
        let services = self.registry.services().clone();
        let deadline = tokio::time::Instant::now() + self.grace;
        // Polls a counter at a bounded rate until the deadline: shutdown is not a hot path.
        while services.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let left = services.pending();
        if left > 0 {
            tracing::warn!(
                pending = left,
                "grace period over: pending messages stay in the journal for the next start"
            );
        }
        if let Err(e) = services.store.sync().await {
            tracing::error!(error = %e, "final flush failed");
        }
        self.sweeper.abort();
        drop(services);
        // Join the arbiters so every session and provider (and their store handles) is gone
        // when this returns: the store's files are closed and may be opened again.
        let arbiters = self.arbiters;
        let joined = actix_rt::task::spawn_blocking(move || {
            for a in arbiters {
                a.stop();
                let _ = a.join();
            }
        });
        let _ = joined.await;
        tracing::info!("pushd stopped");
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
    let mut templates = render::Templates::new(settings.render.clone(), &settings.templates)
        .map_err(|e| StartError::Templates(e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")))?;
    // Templates the operator added at run time (admin API) come back from the store.
    for (name, t) in store.templates().map_err(|e| StartError::Store(e.to_string()))? {
        match model::TemplateName::parse(&name) {
            Ok(n) => {
                if let Err(e) = templates.upsert(n, t) {
                    tracing::error!(template = %name, error = %e, "stored template ignored");
                }
            }
            Err(e) => tracing::error!(template = %name, error = %e, "stored template ignored"),
        }
    }
    let services = Arc::new(Services::new(store, clock.clone(), settings.policy, settings.sessions.clone(), templates));

    let mut arbiters: Vec<Arbiter> = (0..settings.sessions.arbiters.max(1)).map(|_| Arbiter::new()).collect();
    let registry = Registry::new(services.clone(), arbiters.iter().map(Arbiter::handle).collect());

    let provider_arbiter = Arbiter::new();
    let mut providers = HashMap::new();
    for c in &settings.credentials {
        // Weak: the providers live inside the registry's services; a strong reference here
        // would make a cycle that keeps the store open after a stop.
        let sink_registry = Arc::downgrade(&registry);
        let sink: provider::actor::ReportSink = Arc::new(move |r| {
            if let Some(registry) = sink_registry.upgrade() {
                registry.report(r);
            }
        });
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
    let matrix_state = web::Data::new(api::matrix::MatrixState::new(registry.clone(), settings.matrix.clone()));
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
    recover(&registry).map_err(|e| StartError::Store(e.to_string()))?;
    let sweeper = spawn_sweeper(services.clone(), settings.store.retention, settings.store.sweep_interval);
    ready.store(true, Ordering::Release);
    tracing::info!(%gateway_addr, %operator_addr, credentials = settings.credentials.len(), "pushd running");
    Ok(Running {
        gateway_addr,
        operator_addr,
        matrix_addr,
        registry,
        servers,
        arbiters,
        sweeper,
        grace: settings.shutdown_grace,
    })
}

/// Replays the intake journal: every (message, recipient) accepted before a stop or crash and
/// not done goes to its session again. Pushes the vendor already answered are not repeated (the
/// dedup record is written with the answer); see docs/durability.md for the remaining window.
fn recover(registry: &Arc<Registry>) -> Result<(), store::StoreError> {
    let services = registry.services();
    let pending = services.store.pending()?;
    let mut pairs = 0usize;
    for (message, users) in pending {
        let message = Arc::new(message);
        for user in users {
            // Replayed work counts against the bound too, but is never refused.
            services.force_pending(1);
            registry.notify(
                &user,
                session::messages::MessageArrived(message.clone(), session::messages::Arrival::Replayed),
            );
            pairs += 1;
        }
    }
    if pairs > 0 {
        ::metrics::counter!(metrics::RECOVERED).increment(pairs as u64);
        tracing::info!(pairs, "replaying accepted messages from the journal");
    }
    Ok(())
}

/// Removes dedup records, accepted ids and traces older than `retention`, every `every`, on a
/// blocking thread (it scans whole keyspaces).
fn spawn_sweeper(
    services: Arc<Services>,
    retention: std::time::Duration,
    every: std::time::Duration,
) -> actix_rt::task::JoinHandle<()> {
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let before =
                services.clock.now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(3));
            let store = services.store.clone();
            match actix_rt::task::spawn_blocking(move || store.sweep(before)).await {
                Ok(Ok(swept)) => tracing::info!(?swept, "retention sweep"),
                Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed"),
                Err(e) => tracing::error!(error = %e, "retention sweep panicked"),
            }
        }
    })
}
