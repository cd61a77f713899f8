//! The Session actor: everything about one user that changes fast.
//!
//! Messages it accepts (see `messages.rs`): `RegisterDevice`, `RemoveDevice`, `ListDevices`,
//! `PresenceChanged`, `MessageArrived`, `Acked`, `GetSettings`, `UpdateSettings`,
//! `DeleteConversationSettings`, `TokenRevoked`, `DeliveryReported`, `OpenTraces`.
//!
//! State: the user's devices and their presence (with the time of the last applied event, so
//! late events are ignored), the messages in flight awaiting an ack, the badge and settings.
//! All of it is loaded from the store on activation and written through on change, so a
//! session can passivate (stop) when idle with nothing in flight and come back identical.
//!
//! ```text
//! MessageArrived ─▶ decide ─┬─ Push ─▶ render ─▶ ProviderHandle::deliver
//!                           ├─ Wait ─▶ in flight ─(ack)─▶ done
//!                           │              └─(offline / ack timeout)─▶ decide again
//!                           └─ Stop(rule) ─▶ trace
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use litemap::LiteMap;

use super::messages::*;
use super::registry::{Registry, Services};
use crate::metrics as m;
use crate::model::{ChatSettings, ConversationId, Device, DeviceId, Message, MessageId, Presence, Token, UserId};
use crate::policy::{self, DeviceView, Recipient, Verdict};
use crate::provider::actor::{PushJob, Target};
use crate::provider::Outcome;
use crate::render::{self, RenderContext};
use crate::store::{Finish, PresenceRecord, Recipients, StoreError};
use crate::trace::{AttemptTrace, DeviceTrace, Fallback, PushTrace, TraceEntry};

/// A message delivered to online devices and not acknowledged yet.
struct InFlight {
    message: Arc<Message>,
    /// Online devices that have not acked; empty → fall back.
    waiting: BTreeSet<DeviceId>,
    /// Devices that went offline or timed out for this message (count as offline).
    offline_for: BTreeSet<DeviceId>,
    timer: Option<SpawnHandle>,
}

/// One user's session.
pub struct Session {
    user: UserId,
    services: Arc<Services>,
    registry: Arc<Registry>,
    /// Few per user: a sorted vector (`LiteMap`), not a `BTreeMap`, whose first node holds room
    /// for eleven entries. Measured (load harness, issue 6): with two devices the BTreeMaps of
    /// devices and presence were about 2 KB of each active session's 3.5 KB.
    devices: LiteMap<DeviceId, Device>,
    /// Presence of every device the gateway told us about, registered or not.
    presence: LiteMap<DeviceId, PresenceRecord>,
    settings: ChatSettings,
    conversations: HashMap<ConversationId, Option<ChatSettings>>,
    badge: u32,
    /// The badge as last stored. A message's count is stored with its completion
    /// ([`crate::store::Store::finish`]): a crash before it replays the message, which counts it again.
    badge_stored: u32,
    /// Messages already counted in the badge (cleared when the badge resets).
    counted: BTreeSet<MessageId>,
    /// Messages being worked on; `None` while there are none (most sessions, most of the
    /// time). Measured (load harness, issue 6): the four empty maps inline were about 200 B of
    /// each active session.
    work: Option<Box<Work>>,
    last_command: Instant,
}

/// A message arrived and not completed.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// Whether it went to this user only.
    recipients: Recipients,
    /// Whether the store may hold its trace: not for a message this process accepted, until
    /// it completes.
    stored: Stored,
}

/// Whether the store may hold a message's trace or dedup records for this user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// The first decision of a message this process accepted: nothing stored yet.
    Nothing,
    /// A replay, or a later decision (a dedup record may have been written since).
    Maybe,
}

/// What a session holds for the messages it is working on.
#[derive(Default)]
struct Work {
    /// Messages waiting for online devices to ack.
    in_flight: HashMap<MessageId, InFlight>,
    /// Pushes handed to a provider and not answered yet, per message (dedup before the vendor
    /// answers; the store's dedup record is written with the answer).
    dispatched: HashMap<MessageId, BTreeSet<DeviceId>>,
    /// Messages arrived and not completed, and whether each went to this user only: each holds
    /// one unit of the daemon's pending bound.
    open: HashMap<MessageId, Open>,
    /// Traces of the messages still worked on (waiting for an ack or a vendor's answer), kept
    /// here and written to the store once, when the message completes. `GET …/pushes` merges
    /// them in (`OpenTraces`). Measured (load harness, issue 6): writing the trace at the
    /// decision and reading it back at the answer was about a tenth of pushd's CPU on the
    /// embedded store, and half of the bytes it wrote.
    traces: HashMap<MessageId, TraceEntry>,
}

impl Work {
    fn is_empty(&self) -> bool {
        self.in_flight.is_empty() && self.dispatched.is_empty() && self.open.is_empty() && self.traces.is_empty()
    }

    /// Whether `id` waits for an ack or a vendor's answer.
    fn busy_with(&self, id: &MessageId) -> bool {
        self.in_flight.contains_key(id) || self.dispatched.get(id).is_some_and(|d| !d.is_empty())
    }
}

impl Session {
    /// Loads the user's state from the store.
    pub fn load(user: UserId, services: Arc<Services>, registry: Arc<Registry>) -> Self {
        let store = &services.store;
        let log = |what: &str, e: StoreError| tracing::error!(user = %user, what, error = %e, "session load failed");
        let devices = store.devices(&user).unwrap_or_else(|e| {
            log("devices", e);
            Vec::new()
        });
        let presence = store.presences(&user).unwrap_or_else(|e| {
            log("presence", e);
            Vec::new()
        });
        let settings = store.user_settings(&user).unwrap_or_else(|e| {
            log("settings", e);
            ChatSettings::default()
        });
        let badge = store.badge(&user).unwrap_or_else(|e| {
            log("badge", e);
            0
        });
        Self {
            devices: exact(devices.into_iter().map(|d| (d.id.clone(), d))),
            presence: exact(presence),
            settings,
            conversations: HashMap::new(),
            badge,
            badge_stored: badge,
            counted: BTreeSet::new(),
            work: None,
            last_command: Instant::now(),
            user,
            services,
            registry,
        }
    }

    fn presence_of(&self, device: &DeviceId) -> Presence {
        self.presence.get(device).map_or(Presence::Offline, |p| p.presence)
    }

    fn conversation_settings(&mut self, conv: &ConversationId) -> Option<ChatSettings> {
        if let Some(s) = self.conversations.get(conv) {
            return s.clone();
        }
        let s = self.services.store.conversation_settings(&self.user, conv).unwrap_or_else(|e| {
            tracing::error!(user = %self.user, error = %e, "conversation settings unavailable");
            None
        });
        self.conversations.insert(conv.clone(), s.clone());
        s
    }

    fn timezone(&self) -> chrono_tz::Tz {
        self.settings.timezone.or_else(|| self.devices.values().find_map(|d| d.timezone)).unwrap_or(chrono_tz::UTC)
    }

    /// Sets the badge and stores it at once (a reset).
    fn set_badge(&mut self, badge: u32) {
        self.badge = badge;
        if badge != self.badge_stored {
            match self.services.store.put_badge(&self.user, badge) {
                Ok(()) => self.badge_stored = badge,
                Err(e) => tracing::error!(user = %self.user, error = %e, "badge not stored"),
            }
        }
    }

    /// The trace of `id`: the open one, else the stored one (a message decided before).
    fn take_trace(&mut self, id: &MessageId) -> Option<TraceEntry> {
        self.take_trace_of(id, Stored::Maybe)
    }

    /// [`Session::take_trace`], without the store's read when nothing can be stored yet.
    fn take_trace_of(&mut self, id: &MessageId, stored: Stored) -> Option<TraceEntry> {
        let open = self.work.as_mut().and_then(|w| w.traces.remove(id));
        open.or_else(|| match stored {
            Stored::Maybe => self.services.store.trace(&self.user, id).ok().flatten(),
            Stored::Nothing => None,
        })
    }

    /// Keeps the trace of a message still worked on; [`Session::maybe_complete`] stores it.
    fn keep_trace(&mut self, entry: TraceEntry) {
        self.work.get_or_insert_default().traces.insert(entry.message_id.clone(), entry);
    }

    fn store_trace(&self, entry: &TraceEntry) {
        let keep = self.services.sessions.trace_per_user;
        if let Err(e) = self.services.store.upsert_trace(&self.user, entry, keep) {
            tracing::error!(user = %self.user, error = %e, "trace not stored");
        }
    }

    /// Decides `message` with the devices in `offline_for` counted offline, pushes what must
    /// be pushed, and (re)arms the in-flight wait for online devices. `stored` says whether the
    /// store may hold a trace or dedup records of it.
    fn evaluate(
        &mut self,
        message: Arc<Message>,
        offline_for: BTreeSet<DeviceId>,
        stored: Stored,
        ctx: &mut Context<Self>,
    ) {
        let now = self.services.clock.now();
        let conv_settings = self.conversation_settings(&message.conversation.id);
        let ids: Vec<DeviceId> = {
            let mut ids: BTreeSet<DeviceId> = self.devices.keys().cloned().collect();
            ids.extend(self.presence.keys().cloned());
            ids.into_iter().collect()
        };
        let dispatched = self.work.as_ref().and_then(|w| w.dispatched.get(&message.id));
        let views: Vec<DeviceView<'_>> = ids
            .iter()
            .map(|id| {
                let actual = self.presence_of(id);
                let presence =
                    if actual == Presence::Online && offline_for.contains(id) { Presence::Offline } else { actual };
                let device = self.devices.get(id);
                let already_pushed = device.is_some()
                    && (dispatched.is_some_and(|d| d.contains(id))
                        || (stored == Stored::Maybe
                            && self.services.store.was_pushed(&self.user, &message.id, id).unwrap_or(false)));
                DeviceView { id, presence, has_token: device.is_some_and(|d| d.token.is_some()), already_pushed }
            })
            .collect();
        let recipient = Recipient {
            user: &self.user,
            devices: &views,
            user_settings: &self.settings,
            conversation_settings: conv_settings.as_ref(),
            timezone: self.timezone(),
        };
        let decision = policy::decide(&message, &recipient, &self.services.policy, now);
        drop(views);

        if decision.counts_toward_badge && self.counted.insert(message.id.clone()) {
            // Stored when the message completes.
            self.badge = self.badge.saturating_add(1);
        }

        let mut entry = self.take_trace_of(&message.id, stored).unwrap_or_else(|| TraceEntry {
            message_id: message.id.clone(),
            conversation_id: message.conversation.id.to_string(),
            decided_at: now,
            fallbacks: Vec::new(),
            devices: Vec::new(),
            counted_in_badge: false,
        });
        entry.decided_at = now;
        entry.counted_in_badge |= decision.counts_toward_badge;

        let mut waiting = BTreeSet::new();
        for d in &decision.devices {
            let label = match d.verdict {
                Verdict::Push => "push",
                Verdict::Wait => "wait",
                Verdict::Stop(rule) => rule.as_str(),
            };
            metrics::counter!(m::DECISIONS, "verdict" => label).increment(1);
            let existing = entry.devices.iter().position(|t| t.device == d.device.as_str());
            // A device already pushed keeps its `push` trace: re-deciding it (as `duplicate`)
            // would hide from "why didn't my phone ring?" that it did. A `Push` verdict means it
            // was not pushed after all (a replay after a crash, before the vendor's answer was
            // recorded): that one is pushed again, and its trace replaced.
            if let Some(i) = existing {
                if entry.devices[i].push.is_some() && d.verdict != Verdict::Push {
                    continue;
                }
            }
            let mut dt = DeviceTrace { device: d.device.to_string(), decision: label.to_owned(), push: None };
            match d.verdict {
                Verdict::Push => dt = self.dispatch(&message, &d.device, dt, ctx),
                Verdict::Wait => {
                    if !self.services.sessions.ack_timeout.is_zero() {
                        waiting.insert(d.device.clone());
                    } else {
                        dt.decision = "online".to_owned();
                    }
                }
                Verdict::Stop(_) => {}
            }
            match existing {
                Some(i) => entry.devices[i] = dt,
                None => entry.devices.push(dt),
            }
        }
        // A device that waited for this message and has since logged out with its token
        // unbound is no longer decided: say so instead of leaving it "waiting".
        for t in entry.devices.iter_mut().filter(|t| t.decision == "wait") {
            if !decision.devices.iter().any(|d| d.device.as_str() == t.device) {
                t.decision = "logged_out".to_owned();
            }
        }
        self.keep_trace(entry);

        if let Some(old) = self.work.as_mut().and_then(|w| w.in_flight.remove(&message.id)) {
            if let Some(t) = old.timer {
                ctx.cancel_future(t);
            }
        }
        if !waiting.is_empty() {
            let id = message.id.clone();
            let timer = ctx.run_later(self.services.sessions.ack_timeout, move |act, ctx| act.ack_timed_out(&id, ctx));
            let f = InFlight { message, waiting, offline_for, timer: Some(timer) };
            self.work.get_or_insert_default().in_flight.insert(f.message.id.clone(), f);
        } else {
            self.maybe_complete(&message.id);
        }
    }

    /// Clears this user's pending mark in the intake journal once the message is decided and
    /// every push it made has its final answer: from then on a restart does not replay it.
    fn maybe_complete(&mut self, id: &MessageId) {
        if self.work.as_ref().is_some_and(|w| w.busy_with(id)) {
            return;
        }
        let (trace, was_open) = match self.work.as_mut() {
            Some(w) => {
                w.dispatched.remove(id);
                (w.traces.remove(id), w.open.remove(id))
            }
            None => (None, None),
        };
        // Trace, badge and completion together: once the journal mark is gone, nothing
        // replays the message.
        let finish = Finish {
            trace: trace.as_ref(),
            keep: self.services.sessions.trace_per_user,
            badge: (self.badge != self.badge_stored).then_some(self.badge),
            trace_new: was_open.is_some_and(|o| o.stored == Stored::Nothing),
            recipients: was_open.map_or(Recipients::Several, |o| o.recipients),
        };
        match self.services.store.finish(&self.user, id, finish) {
            Ok(()) => self.badge_stored = self.badge,
            Err(e) => tracing::error!(user = %self.user, error = %e, "trace, badge or journal completion not stored"),
        }
        if was_open.is_some() {
            self.services.release_pending(1);
        }
        if self.work.as_ref().is_some_and(|w| w.is_empty()) {
            self.work = None;
        }
    }

    /// Renders and hands one push to the device's provider; returns the updated trace.
    fn dispatch(
        &mut self,
        message: &Arc<Message>,
        device_id: &DeviceId,
        mut dt: DeviceTrace,
        ctx: &mut Context<Self>,
    ) -> DeviceTrace {
        let Some(device) = self.devices.get(device_id) else { return dt };
        let Some(token) = device.token.clone() else { return dt };
        // The store's token index is the authority on "last login wins": the TokenRevoked
        // notice from the new owner's session may not have arrived yet (or been lost), and a
        // push here would show this user's message on someone else's phone.
        let owner = self.services.store.token_owner(&device.credential, &token).unwrap_or(None);
        if owner.as_ref().is_some_and(|(u, d)| u != &self.user || d != device_id) {
            let credential = device.credential.clone();
            self.token_moved(device_id, &credential, &token);
            dt.decision = "no_token".to_owned();
            return dt;
        }
        let Some(provider) = self.services.provider(&device.credential) else {
            dt.decision = "unknown_credential".to_owned();
            return dt;
        };
        let now = self.services.clock.now();
        let conv_template =
            self.conversations.get(&message.conversation.id).and_then(|s| s.as_ref()).and_then(|s| s.template.clone());
        let user_template = conv_template.or_else(|| self.settings.template.clone());
        let rendered = {
            let templates = self.services.templates();
            let rctx = RenderContext {
                message,
                recipient: &self.user,
                locale: device.locale.as_deref(),
                badge: self.badge,
                count: self.badge,
            };
            templates.render_for(message, &rctx, user_template.as_ref(), &self.services.sessions.default_template)
        };
        let mut push = render::build_push(message, rendered, self.badge, now);
        let vendor = provider.vendor().clone();
        let fits = render::fit(&mut push, vendor.as_ref());
        let mut trace = PushTrace {
            vendor: vendor.kind().as_str().into(),
            credential: device.credential.to_string(),
            token: token.masked(),
            title: push.title.clone(),
            body: push.body.clone(),
            badge: push.badge,
            push_type: push.push_type.as_str().into(),
            attempts: Vec::new(),
            outcome: None,
            reason: None,
            note: None,
        };
        if !fits {
            trace.outcome = Some("fatal".into());
            trace.reason = Some("payload_too_large".into());
            dt.push = Some(trace);
            return dt;
        }
        self.work.get_or_insert_default().dispatched.entry(message.id.clone()).or_default().insert(device_id.clone());
        let job = PushJob {
            push: Arc::new(push),
            targets: vec![Target {
                user: self.user.clone(),
                device: device_id.clone(),
                token,
                message_id: message.id.clone(),
            }],
            accepted_at: message.accepted_at,
            reply: None,
        };
        self.hand_off(job, device.credential.clone(), ctx);
        dt.push = Some(trace);
        dt
    }

    /// Gives a job to its provider; while the provider is full, tries again shortly (nothing
    /// accepted is dropped; the session's own mailbox bound slows the gateway down).
    fn hand_off(&mut self, job: PushJob, credential: crate::model::CredentialName, ctx: &mut Context<Self>) {
        let Some(provider) = self.services.provider(&credential) else { return };
        if provider.deliver(job.clone()).is_err() {
            tracing::debug!(user = %self.user, credential = %credential, "provider busy, retrying hand-off");
            ctx.run_later(std::time::Duration::from_millis(100), move |act, ctx| act.hand_off(job, credential, ctx));
        }
    }

    fn ack_timed_out(&mut self, id: &MessageId, ctx: &mut Context<Self>) {
        let Some(mut f) = self.work.as_mut().and_then(|w| w.in_flight.remove(id)) else { return };
        f.timer = None;
        let waiting = std::mem::take(&mut f.waiting);
        f.offline_for.extend(waiting);
        self.fall_back(f, "ack_timeout", ctx);
    }

    fn fall_back(&mut self, f: InFlight, cause: &'static str, ctx: &mut Context<Self>) {
        metrics::counter!(m::INFLIGHT_FALLBACKS, "cause" => cause).increment(1);
        let now = self.services.clock.now();
        if let Some(mut entry) = self.take_trace(&f.message.id) {
            entry.fallbacks.push(Fallback { at: now, cause: cause.into() });
            self.keep_trace(entry);
        }
        self.evaluate(f.message, f.offline_for, Stored::Maybe, ctx);
    }

    /// A device that left (offline, kicked, logged out) while messages waited for its ack
    /// counts as offline for them; those with no online device left waiting fall back now.
    fn device_left(&mut self, device: &DeviceId, ctx: &mut Context<Self>) {
        let Some(work) = self.work.as_mut() else { return };
        let ids: Vec<MessageId> =
            work.in_flight.iter().filter(|(_, f)| f.waiting.contains(device)).map(|(id, _)| id.clone()).collect();
        for id in ids {
            let Some(f) = self.work.as_mut().and_then(|w| w.in_flight.get_mut(&id)) else { continue };
            f.waiting.remove(device);
            f.offline_for.insert(device.clone());
            if f.waiting.is_empty() {
                if let Some(mut f) = self.work.as_mut().and_then(|w| w.in_flight.remove(&id)) {
                    if let Some(t) = f.timer.take() {
                        ctx.cancel_future(t);
                    }
                    self.fall_back(f, "offline", ctx);
                }
            }
        }
    }

    /// Unbinds `token` from `device` if the device still holds it (it moved to another user).
    fn token_moved(&mut self, device: &DeviceId, credential: &crate::model::CredentialName, token: &Token) {
        let Some(d) = self.devices.get_mut(device) else { return };
        if &d.credential == credential && d.token.as_ref() == Some(token) {
            d.token = None;
            if let Err(e) = self.services.store.put_device(&self.user, d) {
                tracing::error!(user = %self.user, error = %e, "token unbind not stored");
            }
            tracing::info!(user = %self.user, device = %device, "token moved to another user");
        }
    }

    fn touch(&mut self) {
        self.last_command = Instant::now();
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.services.sessions.mailbox_capacity);
        let idle = self.services.sessions.idle_passivate;
        let every = (idle / 4).max(std::time::Duration::from_millis(50));
        ctx.run_interval(every, move |act, ctx| {
            let waiting = act.work.as_ref().is_some_and(|w| !w.in_flight.is_empty() || !w.dispatched.is_empty());
            if !waiting && act.last_command.elapsed() >= idle {
                // Leave the registry first, so new commands start a fresh session; a command
                // already queued here fails with `Closed` and the registry retries it.
                act.registry.forget(&act.user, &ctx.address());
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Normally empty here (a session passivates only when done); at shutdown, what is
        // still open stays in the journal for the next start and leaves the pending bound,
        // and the traces so far are stored (the replay continues them).
        let Some(work) = self.work.take() else { return };
        for entry in work.traces.into_values() {
            self.store_trace(&entry);
        }
        if !work.open.is_empty() {
            self.services.release_pending(work.open.len());
        }
    }
}

impl Handler<RegisterDevice> for Session {
    type Result = Result<Device, StoreError>;

    fn handle(&mut self, msg: RegisterDevice, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let store = self.services.store.clone();
        let now = self.services.clock.now();
        // Last login wins: the token leaves whoever held it.
        if let Some((owner, owner_device)) = store.token_owner(&msg.credential, &msg.token)? {
            if owner == self.user && owner_device != msg.device {
                if let Some(other) = self.devices.get_mut(&owner_device) {
                    other.token = None;
                    store.put_device(&self.user, other)?;
                }
            } else if owner != self.user {
                self.registry.notify(
                    &owner,
                    TokenRevoked { device: owner_device, credential: msg.credential.clone(), token: msg.token.clone() },
                );
            }
        }
        let same_token = self.devices.get(&msg.device).is_some_and(|d| d.token.as_ref() == Some(&msg.token));
        let registered_at = match self.devices.get(&msg.device) {
            Some(d) if same_token => d.token_registered_at.max(now),
            _ => now,
        };
        let device = Device {
            id: msg.device.clone(),
            credential: msg.credential,
            token: Some(msg.token),
            // Re-registering the same token refreshes the time: the APNs 410 rule keeps a
            // token the device registered again after the vendor's timestamp.
            token_registered_at: registered_at,
            timezone: msg.timezone,
            locale: msg.locale,
        };
        store.put_device(&self.user, &device)?;
        self.devices.insert(device.id.clone(), device.clone());
        // Registering again ends a kick.
        if self.presence_of(&device.id) == Presence::Kicked {
            let record = PresenceRecord { presence: Presence::Offline, at: now };
            store.put_presence(&self.user, &device.id, record)?;
            self.presence.insert(device.id.clone(), record);
        }
        tracing::info!(user = %self.user, device = %device.id, credential = %device.credential, "device registered");
        Ok(device)
    }
}

impl Handler<RemoveDevice> for Session {
    type Result = Result<bool, StoreError>;

    fn handle(&mut self, msg: RemoveDevice, ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        if !self.devices.contains_key(&msg.device) {
            return Ok(false);
        }
        let now = self.services.clock.now();
        if msg.unbind {
            self.services.store.remove_device(&self.user, &msg.device)?;
            self.devices.remove(&msg.device);
            self.presence.remove(&msg.device);
        } else {
            let record = PresenceRecord { presence: Presence::Offline, at: now };
            self.services.store.put_presence(&self.user, &msg.device, record)?;
            self.presence.insert(msg.device.clone(), record);
        }
        // A logout is the device going offline: messages waiting for its ack must not wait out
        // the ack timeout (product.md §2, in-flight messages).
        self.device_left(&msg.device, ctx);
        tracing::info!(user = %self.user, device = %msg.device, unbind = msg.unbind, "device logged out");
        Ok(true)
    }
}

impl Handler<OpenTraces> for Session {
    type Result = Vec<TraceEntry>;

    fn handle(&mut self, _msg: OpenTraces, _ctx: &mut Self::Context) -> Self::Result {
        let mut open: Vec<TraceEntry> =
            self.work.as_ref().map(|w| w.traces.values().cloned().collect()).unwrap_or_default();
        open.sort_by_key(|t| std::cmp::Reverse(t.decided_at));
        open
    }
}

impl Handler<ListDevices> for Session {
    type Result = Result<Vec<DeviceStatus>, StoreError>;

    fn handle(&mut self, _msg: ListDevices, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        Ok(self
            .devices
            .values()
            .map(|d| DeviceStatus { device: d.clone(), presence: self.presence_of(&d.id) })
            .collect())
    }
}

impl Handler<PresenceChanged> for Session {
    type Result = Result<bool, StoreError>;

    fn handle(&mut self, msg: PresenceChanged, ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        if let Some(last) = self.presence.get(&msg.device) {
            if msg.at < last.at {
                metrics::counter!(m::PRESENCE_EVENTS, "outcome" => "stale").increment(1);
                return Ok(false);
            }
        }
        let record = PresenceRecord { presence: msg.presence, at: msg.at };
        self.services.store.put_presence(&self.user, &msg.device, record)?;
        self.presence.insert(msg.device.clone(), record);
        metrics::counter!(m::PRESENCE_EVENTS, "outcome" => "applied").increment(1);

        if msg.presence == Presence::Online {
            self.set_badge(0);
            self.counted.clear();
            return Ok(true);
        }
        self.device_left(&msg.device, ctx);
        Ok(true)
    }
}

impl Handler<MessageArrived> for Session {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, MessageArrived(message, arrival): MessageArrived, ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let work = self.work.get_or_insert_default();
        if work.in_flight.contains_key(&message.id) || work.open.contains_key(&message.id) {
            return Ok(());
        }
        // Measured (load harness, issue 6): for a message just accepted, the trace and dedup
        // lookups were store reads per push that could not find anything.
        let stored = match arrival {
            Arrival::Accepted => Stored::Nothing,
            Arrival::Replayed => Stored::Maybe,
        };
        let alone = message.to.len() == 1 && message.to[0] == self.user;
        let recipients = if alone && stored == Stored::Nothing { Recipients::Only } else { Recipients::Several };
        work.open.insert(message.id.clone(), Open { recipients, stored });
        self.evaluate(message, BTreeSet::new(), stored, ctx);
        Ok(())
    }
}

impl Handler<Acked> for Session {
    type Result = ();

    fn handle(&mut self, msg: Acked, ctx: &mut Self::Context) {
        self.touch();
        for id in msg.messages {
            let Some(f) = self.work.as_mut().and_then(|w| w.in_flight.remove(&id)) else { continue };
            if let Some(t) = f.timer {
                ctx.cancel_future(t);
            }
            if let Some(mut entry) = self.take_trace(&id) {
                for d in entry.devices.iter_mut().filter(|d| d.decision == "wait") {
                    d.decision = if d.device == msg.device.as_str() { "acked" } else { "delivered_online" }.to_owned();
                }
                self.keep_trace(entry);
            }
            self.maybe_complete(&id);
        }
    }
}

impl Handler<GetSettings> for Session {
    type Result = Result<Option<ChatSettings>, StoreError>;

    fn handle(&mut self, msg: GetSettings, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        Ok(match msg.conversation {
            None => Some(self.settings.clone()),
            Some(conv) => self.conversation_settings(&conv),
        })
    }
}

impl Handler<UpdateSettings> for Session {
    type Result = Result<ChatSettings, StoreError>;

    fn handle(&mut self, msg: UpdateSettings, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let now = self.services.clock.now();
        match msg.conversation {
            None => {
                let mut s = self.settings.clone();
                msg.patch.apply(&mut s, now);
                self.services.store.put_user_settings(&self.user, &s)?;
                self.settings = s.clone();
                Ok(s)
            }
            Some(conv) => {
                let mut s = self.conversation_settings(&conv).unwrap_or_default();
                msg.patch.apply(&mut s, now);
                self.services.store.put_conversation_settings(&self.user, &conv, &s)?;
                self.conversations.insert(conv, Some(s.clone()));
                Ok(s)
            }
        }
    }
}

impl Handler<DeleteConversationSettings> for Session {
    type Result = Result<bool, StoreError>;

    fn handle(
        &mut self,
        DeleteConversationSettings(conv): DeleteConversationSettings,
        _: &mut Self::Context,
    ) -> Self::Result {
        self.touch();
        let existed = self.services.store.delete_conversation_settings(&self.user, &conv)?;
        self.conversations.insert(conv, None);
        Ok(existed)
    }
}

impl Handler<TokenRevoked> for Session {
    type Result = ();

    fn handle(&mut self, msg: TokenRevoked, _ctx: &mut Self::Context) {
        self.touch();
        self.token_moved(&msg.device, &msg.credential, &msg.token);
    }
}

impl Handler<DeliveryReported> for Session {
    type Result = ();

    fn handle(&mut self, DeliveryReported(report): DeliveryReported, _ctx: &mut Self::Context) {
        self.touch();
        let target = &report.target;
        // A parked push (quota) is not answered yet; everything else is final.
        let is_final = !matches!(report.outcome, Outcome::QuotaExhausted { .. });
        // The dedup record, which a replay reads to skip a device already pushed, only while
        // the message is still open: the answer that completes it also removes the user's
        // pending mark (one batch), after which nothing replays or re-decides the message.
        // Measured (load harness, issue 6): that record was one of ten store writes per push.
        if is_final {
            if let Some(devices) = self.work.as_mut().and_then(|w| w.dispatched.get_mut(&target.message_id)) {
                devices.remove(&target.device);
            }
            if self.work.as_ref().is_some_and(|w| w.busy_with(&target.message_id)) {
                let now = self.services.clock.now();
                if let Err(e) = self.services.store.mark_pushed(&self.user, &target.message_id, &target.device, now) {
                    tracing::error!(user = %self.user, error = %e, "dedup record not stored");
                }
            }
        }
        let mut note = None;
        if let Outcome::InvalidToken { reason, since } = &report.outcome {
            if let Some(device) = self.devices.get_mut(&target.device) {
                let same = device.token.as_ref() == Some(&target.token);
                // APNs timestamps are milliseconds: compare at that precision, so a 410 in the
                // same millisecond as the registration still removes the token (apns.md §5).
                let registered_later =
                    since.is_some_and(|s| device.token_registered_at.timestamp_millis() > s.timestamp_millis());
                if same && !report.prune {
                    note = Some(
                        "token kept: pruning paused for this credential (most of its tokens turned invalid at once)"
                            .to_owned(),
                    );
                } else if same && !registered_later {
                    device.token = None;
                    match self.services.store.put_device(&self.user, device) {
                        Ok(()) => {
                            metrics::counter!(m::INVALID_TOKENS_REMOVED, "vendor" => report.vendor.as_str())
                                .increment(1);
                            note = Some(format!("token removed: {reason}"));
                            tracing::info!(user = %self.user, device = %target.device, reason, "invalid token removed");
                        }
                        Err(e) => tracing::error!(user = %self.user, error = %e, "token removal not stored"),
                    }
                } else if same {
                    note = Some("token kept: registered again after the vendor's timestamp".to_owned());
                } else {
                    note = Some("token kept: the device has a newer token".to_owned());
                }
            }
        }
        if let Outcome::QuotaExhausted { until: Some(until), .. } = &report.outcome {
            note = Some(format!("parked: the credential's daily quota is spent until {}", until.to_rfc3339()));
        }
        if let Some(entry) = self.take_trace(&target.message_id) {
            self.record_report(entry, &report, note);
        }
        if is_final {
            let id = target.message_id.clone();
            self.maybe_complete(&id);
        }
    }
}

impl Session {
    fn record_report(
        &mut self,
        mut entry: TraceEntry,
        report: &crate::provider::actor::DeliveryReport,
        note: Option<String>,
    ) {
        let target = &report.target;
        if let Some(push) =
            entry.devices.iter_mut().find(|d| d.device == target.device.as_str()).and_then(|d| d.push.as_mut())
        {
            push.attempts = report.attempts.iter().map(AttemptTrace::from).collect();
            push.outcome = Some(report.outcome.class().into());
            push.reason = Some(report.outcome.reason().into());
            push.note = note;
        }
        self.keep_trace(entry);
    }
}

/// A map of exactly the loaded entries. Collecting reserves room for at least four (a `Vec`'s
/// smallest growth step); measured (load harness, issue 6): for two devices that spare room
/// was about 400 B of each active session.
fn exact<K: Ord, V>(items: impl IntoIterator<Item = (K, V)>) -> LiteMap<K, V> {
    let mut sorted = items.into_iter().collect::<LiteMap<K, V>>().into_tuple_vec();
    sorted.shrink_to_fit();
    LiteMap::from_sorted_store_unchecked(sorted)
}
