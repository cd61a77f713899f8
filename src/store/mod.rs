//! Persistence behind one trait, [`Store`]: devices and the token index, user and
//! conversation settings, presence (so kicked survives passivation), badge counters, the
//! intake record of accepted message ids, the per-device dedup set, and the bounded trace.
//!
//! Nothing outside this module may assume where the data lives: sessions read and write
//! through the trait, and a persistent or shared implementation replaces [`memory::MemoryStore`]
//! without touching them.

pub mod memory;

use crate::model::{
    ChatSettings, ConversationId, CredentialName, Device, DeviceId, Message, MessageId, Presence, Timestamp, Token,
    UserId,
};
use crate::trace::TraceEntry;

pub use memory::MemoryStore;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceRecord {
    pub presence: Presence,
    pub at: Timestamp,
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

    /// Records an accepted message id; `Duplicate` if it was accepted before.
    fn accept_message(&self, message: &Message) -> Result<Intake, StoreError>;
    /// Whether `message` was already pushed to `device` (dedup).
    fn was_pushed(&self, user: &UserId, message: &MessageId, device: &DeviceId) -> Result<bool, StoreError>;
    /// Records that `message` was pushed to `device`.
    fn mark_pushed(&self, user: &UserId, message: &MessageId, device: &DeviceId) -> Result<(), StoreError>;

    /// Inserts or replaces the trace entry of `entry.message_id`, keeping the newest `keep`.
    fn upsert_trace(&self, user: &UserId, entry: &TraceEntry, keep: usize) -> Result<(), StoreError>;
    /// One trace entry.
    fn trace(&self, user: &UserId, message: &MessageId) -> Result<Option<TraceEntry>, StoreError>;
    /// The newest trace entries first, at most `limit`.
    fn traces(&self, user: &UserId, limit: usize) -> Result<Vec<TraceEntry>, StoreError>;
}
