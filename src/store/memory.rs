//! An in-memory [`Store`]: the reference implementation for tests and the core daemon.
//! Nothing survives a restart; the embedded persistent store replaces it (issue 5).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use dashmap::DashMap;

use super::{Durable, Intake, PresenceRecord, Recipients, Store, StoreError, Swept};
use crate::maps::growing;
use crate::model::{
    ChatSettings, ConversationId, CredentialName, Device, DeviceId, Message, MessageId, Timestamp, Token, UserId,
};
use crate::render::TemplateConfig;
use crate::trace::TraceEntry;

/// Per-user data, kept together so one lock covers one user.
#[derive(Default)]
struct UserData {
    devices: BTreeMap<DeviceId, Device>,
    presences: BTreeMap<DeviceId, PresenceRecord>,
    settings: ChatSettings,
    conversations: BTreeMap<ConversationId, ChatSettings>,
    badge: u32,
    pushed: HashMap<(MessageId, DeviceId), Timestamp>,
    /// Oldest first.
    traces: VecDeque<TraceEntry>,
}

/// The in-memory store.
pub struct MemoryStore {
    users: DashMap<UserId, UserData>,
    tokens: DashMap<(CredentialName, Token), (UserId, DeviceId)>,
    /// Accepted message ids and when (dedup of gateway retries).
    accepted: DashMap<MessageId, Timestamp>,
    /// The intake journal: message and recipients still pending.
    journal: Mutex<BTreeMap<MessageId, (Message, BTreeSet<UserId>)>>,
    templates: DashMap<String, TemplateConfig>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            users: growing(),
            tokens: growing(),
            accepted: growing(),
            journal: Mutex::default(),
            templates: DashMap::new(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read<T>(&self, user: &UserId, f: impl FnOnce(&UserData) -> T) -> T {
        match self.users.get(user) {
            Some(u) => f(&u),
            None => f(&UserData::default()),
        }
    }

    fn write<T>(&self, user: &UserId, f: impl FnOnce(&mut UserData) -> T) -> T {
        f(&mut self.users.entry(user.clone()).or_default())
    }
}

impl Store for MemoryStore {
    fn devices(&self, user: &UserId) -> Result<Vec<Device>, StoreError> {
        Ok(self.read(user, |u| u.devices.values().cloned().collect()))
    }

    fn put_device(&self, user: &UserId, device: &Device) -> Result<(), StoreError> {
        let old = self.write(user, |u| u.devices.insert(device.id.clone(), device.clone()));
        if let Some(Device { token: Some(t), credential, .. }) = old {
            if device.token.as_ref() != Some(&t) || device.credential != credential {
                self.tokens.remove_if(&(credential, t), |_, owner| owner.0 == *user && owner.1 == device.id);
            }
        }
        if let Some(t) = &device.token {
            self.tokens.insert((device.credential.clone(), t.clone()), (user.clone(), device.id.clone()));
        }
        Ok(())
    }

    fn remove_device(&self, user: &UserId, device: &DeviceId) -> Result<Option<Device>, StoreError> {
        let old = self.write(user, |u| {
            u.presences.remove(device);
            u.devices.remove(device)
        });
        if let Some(Device { token: Some(t), credential, .. }) = &old {
            self.tokens.remove_if(&(credential.clone(), t.clone()), |_, owner| owner.0 == *user && owner.1 == *device);
        }
        Ok(old)
    }

    fn token_owner(
        &self,
        credential: &CredentialName,
        token: &Token,
    ) -> Result<Option<(UserId, DeviceId)>, StoreError> {
        Ok(self.tokens.get(&(credential.clone(), token.clone())).map(|o| o.clone()))
    }

    fn presences(&self, user: &UserId) -> Result<Vec<(DeviceId, PresenceRecord)>, StoreError> {
        Ok(self.read(user, |u| u.presences.iter().map(|(d, p)| (d.clone(), *p)).collect()))
    }

    fn put_presence(&self, user: &UserId, device: &DeviceId, record: PresenceRecord) -> Result<(), StoreError> {
        self.write(user, |u| u.presences.insert(device.clone(), record));
        Ok(())
    }

    fn user_settings(&self, user: &UserId) -> Result<ChatSettings, StoreError> {
        Ok(self.read(user, |u| u.settings.clone()))
    }

    fn put_user_settings(&self, user: &UserId, settings: &ChatSettings) -> Result<(), StoreError> {
        self.write(user, |u| u.settings = settings.clone());
        Ok(())
    }

    fn conversation_settings(&self, user: &UserId, conv: &ConversationId) -> Result<Option<ChatSettings>, StoreError> {
        Ok(self.read(user, |u| u.conversations.get(conv).cloned()))
    }

    fn put_conversation_settings(
        &self,
        user: &UserId,
        conv: &ConversationId,
        s: &ChatSettings,
    ) -> Result<(), StoreError> {
        self.write(user, |u| u.conversations.insert(conv.clone(), s.clone()));
        Ok(())
    }

    fn delete_conversation_settings(&self, user: &UserId, conv: &ConversationId) -> Result<bool, StoreError> {
        Ok(self.write(user, |u| u.conversations.remove(conv).is_some()))
    }

    fn badge(&self, user: &UserId) -> Result<u32, StoreError> {
        Ok(self.read(user, |u| u.badge))
    }

    fn put_badge(&self, user: &UserId, badge: u32) -> Result<(), StoreError> {
        self.write(user, |u| u.badge = badge);
        Ok(())
    }

    fn accept_message(&self, message: &Message) -> Result<Intake, StoreError> {
        use dashmap::mapref::entry::Entry;
        match self.accepted.entry(message.id.clone()) {
            Entry::Occupied(_) => Ok(Intake::Duplicate),
            Entry::Vacant(v) => {
                v.insert(message.accepted_at);
                let pending = message.to.iter().cloned().collect();
                self.journal
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(message.id.clone(), (message.clone(), pending));
                Ok(Intake::New)
            }
        }
    }

    fn complete(&self, message: &MessageId, user: &UserId, _: Recipients) -> Result<(), StoreError> {
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, pending)) = journal.get_mut(message) {
            pending.remove(user);
            if pending.is_empty() {
                journal.remove(message);
            }
        }
        Ok(())
    }

    fn pending(&self) -> Result<Vec<(Message, Vec<UserId>)>, StoreError> {
        let journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        Ok(journal.values().map(|(m, users)| (m.clone(), users.iter().cloned().collect())).collect())
    }

    fn sync(&self) -> Durable {
        Box::pin(std::future::ready(Ok(())))
    }

    fn sweep(&self, before: Timestamp) -> Result<Swept, StoreError> {
        let mut swept = Swept::default();
        let journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        // A message still pending keeps its id: a gateway retry stays a duplicate.
        self.accepted.retain(|id, at| {
            let keep = *at >= before || journal.contains_key(id);
            swept.accepted_ids += usize::from(!keep);
            keep
        });
        drop(journal);
        for mut u in self.users.iter_mut() {
            let n = u.pushed.len();
            u.pushed.retain(|_, at| *at >= before);
            swept.dedup += n - u.pushed.len();
            let n = u.traces.len();
            u.traces.retain(|t| t.decided_at >= before);
            swept.traces += n - u.traces.len();
        }
        Ok(swept)
    }

    fn templates(&self) -> Result<Vec<(String, TemplateConfig)>, StoreError> {
        Ok(self.templates.iter().map(|t| (t.key().clone(), t.value().clone())).collect())
    }

    fn put_template(&self, name: &str, template: &TemplateConfig) -> Result<(), StoreError> {
        self.templates.insert(name.to_owned(), template.clone());
        Ok(())
    }

    fn was_pushed(&self, user: &UserId, message: &MessageId, device: &DeviceId) -> Result<bool, StoreError> {
        Ok(self.read(user, |u| u.pushed.contains_key(&(message.clone(), device.clone()))))
    }

    fn mark_pushed(
        &self,
        user: &UserId,
        message: &MessageId,
        device: &DeviceId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(user, |u| u.pushed.insert((message.clone(), device.clone()), at));
        Ok(())
    }

    fn upsert_trace(&self, user: &UserId, entry: &TraceEntry, keep: usize) -> Result<(), StoreError> {
        self.write(user, |u| {
            if let Some(slot) = u.traces.iter_mut().find(|t| t.message_id == entry.message_id) {
                *slot = entry.clone();
                return;
            }
            u.traces.push_back(entry.clone());
            while u.traces.len() > keep.max(1) {
                u.traces.pop_front();
            }
        });
        Ok(())
    }

    fn trace(&self, user: &UserId, message: &MessageId) -> Result<Option<TraceEntry>, StoreError> {
        Ok(self.read(user, |u| u.traces.iter().find(|t| t.message_id == *message).cloned()))
    }

    fn traces(&self, user: &UserId, limit: usize) -> Result<Vec<TraceEntry>, StoreError> {
        Ok(self.read(user, |u| u.traces.iter().rev().take(limit).cloned().collect()))
    }
}
