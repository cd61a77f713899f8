//! Persistence behind one trait, [`Store`]: devices and the token index, user and
//! conversation settings, presence (so kicked survives passivation), badge counters, the
//! intake record of accepted message ids, the per-device dedup set, and the bounded trace.
//!
//! Nothing outside this module may assume where the data lives: sessions read and write
//! through the trait. [`embedded::EmbeddedStore`] (fjall, the default) persists everything;
//! [`memory::MemoryStore`] keeps it in memory (tests, benchmarks).
//!
//! Durability: writes are applied at once (readers see them) but reach the disk through
//! group commit — [`Store::sync`] resolves when everything written before it is durable, and
//! many concurrent callers share one flush (see `journal.rs`).
//!
//! The intake journal: [`Store::accept_message`] records an accepted message with one pending
//! mark per recipient; [`Store::complete`] clears a recipient once its session has decided the
//! message and every push it made got a final vendor answer. [`Store::pending`] lists what a
//! restart must replay.

mod codec;
pub mod embedded;
pub mod journal;
pub mod memory;
mod reaper;

use std::future::Future;
use std::pin::Pin;

use crate::model::{
    ChatSettings, ConversationId, CredentialName, Device, DeviceId, Message, MessageId, Presence, Timestamp, Token,
    UserId,
};
use crate::render::TemplateConfig;
use crate::trace::TraceEntry;

pub use embedded::EmbeddedStore;
pub use memory::MemoryStore;

/// Resolves when the writes made before it are durable.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// What a retention sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub dedup: usize,
    pub accepted_ids: usize,
    pub traces: usize,
}

/// A storage failure; the API answers 503 and the caller retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Whether an accepted message id is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    New,
    /// Accepted before (a gateway retry): push nothing new.
    Duplicate,
}

/// The last presence event applied to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PresenceRecord {
    pub presence: Presence,
    pub at: Timestamp,
}

/// Whom a message went to, as its recipient completing it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients {
    /// To the completing user alone (a 1:1 message), accepted by this process: its journal
    /// entry is its only pending mark, so no other is looked for or removed.
    Only,
    /// To others too, or not known, or replayed (an earlier version's journal may hold a mark
    /// for a 1:1 message too).
    Several,
}

/// What a session writes once it is done with a message for its user (decided, every push
/// answered): see [`Store::finish`].
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    /// The message's trace, to insert or replace, keeping the user's newest `keep`.
    pub trace: Option<&'a TraceEntry>,
    /// The caller knows no trace of this message is stored (its first completion, for a
    /// message this process accepted): the store need not look for one to replace.
    pub trace_new: bool,
    pub keep: usize,
    /// The user's badge, when it changed since it was last stored.
    pub badge: Option<u32>,
    pub recipients: Recipients,
}

/// Everything pushd persists.
pub trait Store: Send + Sync + 'static {
    /// The user's registered devices.
    fn devices(&self, user: &UserId) -> Result<Vec<Device>, StoreError>;
    /// Creates or replaces a device and indexes its token.
    fn put_device(&self, user: &UserId, device: &Device) -> Result<(), StoreError>;
    /// Removes a device (and its token from the index); returns what was removed.
    fn remove_device(&self, user: &UserId, device: &DeviceId) -> Result<Option<Device>, StoreError>;
    /// Who holds `token` of `credential`, if anyone.
    fn token_owner(&self, credential: &CredentialName, token: &Token)
        -> Result<Option<(UserId, DeviceId)>, StoreError>;

    /// Last applied presence per device of the user.
    fn presences(&self, user: &UserId) -> Result<Vec<(DeviceId, PresenceRecord)>, StoreError>;
    /// Records the last applied presence event of a device.
    fn put_presence(&self, user: &UserId, device: &DeviceId, record: PresenceRecord) -> Result<(), StoreError>;

    /// The user's app-level settings (default when never set).
    fn user_settings(&self, user: &UserId) -> Result<ChatSettings, StoreError>;
    /// Replaces the user's app-level settings.
    fn put_user_settings(&self, user: &UserId, settings: &ChatSettings) -> Result<(), StoreError>;
    /// One conversation's settings, if set.
    fn conversation_settings(&self, user: &UserId, conv: &ConversationId) -> Result<Option<ChatSettings>, StoreError>;
    /// Replaces one conversation's settings.
    fn put_conversation_settings(
        &self,
        user: &UserId,
        conv: &ConversationId,
        s: &ChatSettings,
    ) -> Result<(), StoreError>;
    /// Deletes one conversation's settings (the user's apply again).
    fn delete_conversation_settings(&self, user: &UserId, conv: &ConversationId) -> Result<bool, StoreError>;

    /// The user's badge (messages received while offline).
    fn badge(&self, user: &UserId) -> Result<u32, StoreError>;
    /// Sets the user's badge.
    fn put_badge(&self, user: &UserId, badge: u32) -> Result<(), StoreError>;

    /// Records an accepted message in the intake journal, pending for every recipient;
    /// `Duplicate` (and nothing written) if its id was accepted before.
    fn accept_message(&self, message: &Message) -> Result<Intake, StoreError>;
    /// `user` is done with `message` (decided, every push answered): clears its pending mark,
    /// and the journal entry once no recipient is pending. `recipients` says whether the
    /// message went to `user` only: then there is no other mark to look for.
    fn complete(&self, message: &MessageId, user: &UserId, recipients: Recipients) -> Result<(), StoreError>;
    /// Journal entries still pending, with the recipients still pending (restart replay).
    fn pending(&self) -> Result<Vec<(Message, Vec<UserId>)>, StoreError>;
    /// Resolves once every write made before the call is durable (group commit).
    fn sync(&self) -> Durable;
    /// Removes dedup records and accepted ids recorded before `before`, and traces decided
    /// before it.
    fn sweep(&self, before: Timestamp) -> Result<Swept, StoreError>;

    /// Operator-added templates (admin API), to reload at start.
    fn templates(&self) -> Result<Vec<(String, TemplateConfig)>, StoreError>;
    /// Stores an operator-added template.
    fn put_template(&self, name: &str, template: &TemplateConfig) -> Result<(), StoreError>;
    /// Whether `message` was already pushed to `device` (dedup).
    fn was_pushed(&self, user: &UserId, message: &MessageId, device: &DeviceId) -> Result<bool, StoreError>;
    /// Records that `message` was pushed to `device` (when the vendor answered), at `at`.
    fn mark_pushed(
        &self,
        user: &UserId,
        message: &MessageId,
        device: &DeviceId,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Inserts or replaces the trace entry of `entry.message_id`, keeping the newest `keep`.
    fn upsert_trace(&self, user: &UserId, entry: &TraceEntry, keep: usize) -> Result<(), StoreError>;
    /// `user` is done with `message`: stores its trace and the badge, then
    /// [`Store::complete`]s it. A store that can writes all of it at once (the embedded store:
    /// one batch, one journal append instead of three), so a crash leaves either all of it or
    /// none, and the message replays with none. The last answer needs no dedup record: once
    /// the pending mark is gone nothing replays the message for this user.
    fn finish(&self, user: &UserId, message: &MessageId, f: Finish<'_>) -> Result<(), StoreError> {
        if let Some(entry) = f.trace {
            self.upsert_trace(user, entry, f.keep)?;
        }
        if let Some(badge) = f.badge {
            self.put_badge(user, badge)?;
        }
        self.complete(message, user, f.recipients)
    }
    /// One trace entry.
    fn trace(&self, user: &UserId, message: &MessageId) -> Result<Option<TraceEntry>, StoreError>;
    /// The newest trace entries first, at most `limit`.
    fn traces(&self, user: &UserId, limit: usize) -> Result<Vec<TraceEntry>, StoreError>;

    /// `Err` once the store can no longer write: the embedded store after a failed disk write
    /// or a failed background flush, after which fjall refuses every write until pushd
    /// restarts and recovers from its journal. `/healthz` and `/readyz` then answer 503, so
    /// the operator's supervisor restarts pushd instead of leaving it refusing messages.
    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Opens the store the settings ask for.
pub fn open(settings: &crate::config::Settings) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let s = &settings.store;
    if s.embedded {
        let dir = settings.data_dir.join("store");
        Ok(std::sync::Arc::new(EmbeddedStore::open(&dir, s.sync, s.sync_interval)?))
    } else {
        Ok(std::sync::Arc::new(MemoryStore::new()))
    }
}

#[cfg(test)]
mod tests;
