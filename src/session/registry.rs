//! The session registry: finds the Session actor of a user or starts one, spread over a few
//! arbiters by user hash. Callers address users, never raw actor addresses; a command that
//! reaches a session as it passivates is retried on a fresh one.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use dashmap::DashMap;

use super::actor::Session;
use super::messages::DeliveryReported;
use crate::clock::SharedClock;
use crate::config::SessionSettings;
use crate::model::{CredentialName, TemplateName, UserId};
use crate::policy::PolicyConfig;
use crate::provider::actor::{DeliveryReport, ProviderHandle};
use crate::render::{TemplateConfig, TemplateError, Templates};
use crate::store::Store;

/// What every session needs, shared.
pub struct Services {
    pub store: Arc<dyn Store>,
    /// Accepted (message, recipient) pairs not yet done, bounded by `max_pending`.
    pending: std::sync::atomic::AtomicUsize,
    max_pending: usize,
    pub clock: SharedClock,
    pub policy: PolicyConfig,
    pub sessions: SessionSettings,
    templates: RwLock<Templates>,
    providers: OnceLock<HashMap<CredentialName, ProviderHandle>>,
}

impl Services {
    /// Bundles the shared parts; providers are attached once started.
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        policy: PolicyConfig,
        sessions: SessionSettings,
        templates: Templates,
    ) -> Self {
        let max_pending = sessions.max_pending;
        Self {
            store,
            clock,
            policy,
            sessions,
            templates: RwLock::new(templates),
            providers: OnceLock::new(),
            pending: Default::default(),
            max_pending,
        }
    }

    /// Takes room for `n` (message, recipient) pairs; false when that would pass the bound.
    pub fn reserve_pending(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        let mut current = self.pending.load(Ordering::Acquire);
        loop {
            if current.saturating_add(n) > self.max_pending {
                return false;
            }
            match self.pending.compare_exchange_weak(current, current + n, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    metrics::gauge!(crate::metrics::PENDING).set((current + n) as f64);
                    return true;
                }
                Err(now) => current = now,
            }
        }
    }

    /// Takes room for `n` pairs even past the bound (journal replay: already accepted).
    pub fn force_pending(&self, n: usize) {
        let before = self.pending.fetch_add(n, std::sync::atomic::Ordering::AcqRel);
        metrics::gauge!(crate::metrics::PENDING).set((before + n) as f64);
    }

    /// Gives back room for `n` pairs (done, or not accepted after all).
    pub fn release_pending(&self, n: usize) {
        use std::sync::atomic::Ordering;
        if n == 0 {
            return;
        }
        let before = self.pending.fetch_sub(n, Ordering::AcqRel);
        metrics::gauge!(crate::metrics::PENDING).set(before.saturating_sub(n) as f64);
    }

    /// (message, recipient) pairs accepted and not done.
    pub fn pending(&self) -> usize {
        self.pending.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Attaches the started providers (once).
    pub fn set_providers(&self, providers: HashMap<CredentialName, ProviderHandle>) {
        let _ = self.providers.set(providers);
    }

    /// The provider of a credential.
    pub fn provider(&self, name: &CredentialName) -> Option<&ProviderHandle> {
        self.providers.get().and_then(|p| p.get(name))
    }

    /// Every provider.
    pub fn providers(&self) -> impl Iterator<Item = (&CredentialName, &ProviderHandle)> {
        self.providers.get().into_iter().flat_map(|p| p.iter())
    }

    /// Adds or replaces a custom template (operator admin API).
    pub fn upsert_template(&self, name: TemplateName, t: TemplateConfig) -> Result<(), TemplateError> {
        self.templates.write().unwrap_or_else(|p| p.into_inner()).upsert(name, t)
    }

    /// The templates (read lock; held only while rendering).
    pub fn templates(&self) -> RwLockReadGuard<'_, Templates> {
        self.templates.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a session could not take a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session's mailbox stayed full; the API answers 503 with Retry-After.
    #[error("session busy")]
    Busy,
    /// The session kept stopping under us (shutdown).
    #[error("session unavailable")]
    Gone,
}

/// How long a command may wait for room in a session's mailbox.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Finds or starts sessions.
pub struct Registry {
    sessions: DashMap<UserId, Addr<Session>>,
    arbiters: Vec<ArbiterHandle>,
    hasher: std::collections::hash_map::RandomState,
    services: Arc<Services>,
}

impl Registry {
    /// A registry spreading sessions over `arbiters` (at least one: the current one).
    pub fn new(services: Arc<Services>, arbiters: Vec<ArbiterHandle>) -> Arc<Self> {
        let arbiters = if arbiters.is_empty() { vec![Arbiter::current()] } else { arbiters };
        Arc::new(Self { sessions: crate::maps::growing(), arbiters, hasher: Default::default(), services })
    }

    /// The shared services.
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Sessions alive.
    pub fn active(&self) -> usize {
        self.sessions.len()
    }

    /// The user's session if one is running; never starts one.
    fn running(&self, user: &UserId) -> Option<Addr<Session>> {
        self.sessions.get(user).filter(|a| a.connected()).map(|a| a.clone())
    }

    fn addr(self: &Arc<Self>, user: &UserId) -> Addr<Session> {
        if let Some(a) = self.running(user) {
            return a;
        }
        self.sessions
            .entry(user.clone())
            .and_modify(|a| {
                if !a.connected() {
                    *a = self.spawn(user);
                }
            })
            .or_insert_with(|| self.spawn(user))
            .clone()
    }

    fn spawn(self: &Arc<Self>, user: &UserId) -> Addr<Session> {
        let h = self.hasher.hash_one(user);
        let arbiter = &self.arbiters[(h % self.arbiters.len() as u64) as usize];
        let (user, services, registry) = (user.clone(), self.services.clone(), self.clone());
        Session::start_in_arbiter(arbiter, move |_| Session::load(user, services, registry))
    }

    /// Removes `addr` for `user` if it is still the registered one (passivation).
    pub fn forget(&self, user: &UserId, addr: &Addr<Session>) {
        self.sessions.remove_if(user, |_, a| a == addr);
    }

    /// Sends a command to the user's session and waits for its answer. A full mailbox makes
    /// the caller wait, but not forever: after 5 s it gets `Busy` (the API answers 503).
    pub async fn call<M>(self: &Arc<Self>, user: &UserId, msg: M) -> Result<M::Result, SessionError>
    where
        M: Message + Send + Clone + 'static,
        M::Result: Send,
        Session: Handler<M>,
        <Session as Actor>::Context: ToEnvelope<Session, M>,
    {
        tokio::time::timeout(SEND_TIMEOUT, self.call_untimed(user, msg)).await.unwrap_or(Err(SessionError::Busy))
    }

    /// [`Registry::call`] without a deadline of its own, for a caller that puts many calls
    /// under one ([`Registry::deadline`]). Measured (load harness, issue 6): a timer per event
    /// of a 5000-event presence batch was a tenth of presence ingest's CPU.
    pub async fn call_untimed<M>(self: &Arc<Self>, user: &UserId, msg: M) -> Result<M::Result, SessionError>
    where
        M: Message + Send + Clone + 'static,
        M::Result: Send,
        Session: Handler<M>,
        <Session as Actor>::Context: ToEnvelope<Session, M>,
    {
        for _ in 0..3 {
            let addr = self.addr(user);
            match addr.send(msg.clone()).await {
                Ok(r) => return Ok(r),
                Err(MailboxError::Closed) => self.forget(user, &addr),
                Err(MailboxError::Timeout) => return Err(SessionError::Busy),
            }
        }
        Err(SessionError::Gone)
    }

    /// Asks the user's session, only if one is running (never starts one): `None` if none is.
    pub async fn ask_running<M>(self: &Arc<Self>, user: &UserId, msg: M) -> Result<Option<M::Result>, SessionError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Session: Handler<M>,
        <Session as Actor>::Context: ToEnvelope<Session, M>,
    {
        let Some(addr) = self.running(user) else {
            return Ok(None);
        };
        match addr.send(msg).timeout(SEND_TIMEOUT).await {
            Ok(r) => Ok(Some(r)),
            // Stopped meanwhile: it stored its traces when it stopped.
            Err(MailboxError::Closed) => Ok(None),
            Err(MailboxError::Timeout) => Err(SessionError::Busy),
        }
    }

    /// Runs `calls` (built from [`Registry::call_untimed`]) under the deadline of one call.
    pub async fn deadline<T, E: From<SessionError>>(
        calls: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        tokio::time::timeout(SEND_TIMEOUT, calls).await.unwrap_or_else(|_| Err(SessionError::Busy.into()))
    }

    /// Sends a command without waiting for it to be handled (retried on a fresh session if
    /// the current one is stopping).
    pub fn notify<M>(self: &Arc<Self>, user: &UserId, msg: M)
    where
        M: Message + Send + Clone + 'static,
        M::Result: Send,
        Session: Handler<M>,
        <Session as Actor>::Context: ToEnvelope<Session, M>,
    {
        let (registry, user) = (self.clone(), user.clone());
        actix::spawn(async move {
            if let Err(e) = registry.call(&user, msg).await {
                tracing::warn!(user = %user, error = %e, "session notification lost");
            }
        });
    }

    /// Routes a provider's final outcome to the user's session.
    ///
    /// Fast path: the session that dispatched the push is registered and cannot passivate
    /// while it waits for this answer, so the report goes straight into its mailbox. Measured
    /// (load harness, issue 6): the general path (a spawned task awaiting the session's reply
    /// under a timeout) was about 5 % of pushd's CPU in an offline fan-out. A full mailbox or a
    /// session that is gone takes the general path, which waits and retries.
    pub fn report(self: &Arc<Self>, report: DeliveryReport) {
        let user = report.target.user.clone();
        let addr = self.running(&user);
        let msg = DeliveryReported(report);
        let msg = match addr {
            Some(addr) => match addr.try_send(msg) {
                Ok(()) => return,
                Err(SendError::Full(msg) | SendError::Closed(msg)) => msg,
            },
            None => msg,
        };
        self.notify(&user, msg);
    }
}
