//! The session actor's protocol: one struct per command or event, one doc line each.

use std::sync::Arc;

use actix::Message as ActixMessage;

use crate::model::{
    ChatSettings, ConversationId, CredentialName, Device, DeviceId, DndWindow, Message, MessageId, Presence, PushMode,
    TemplateName, Timestamp, Token,
};
use crate::provider::actor::DeliveryReport;
use crate::store::StoreError;

/// Register or update a device; a token bound elsewhere moves here ("last login wins").
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "Result<Device, StoreError>")]
pub struct RegisterDevice {
    pub device: DeviceId,
    pub credential: CredentialName,
    pub token: Token,
    pub timezone: Option<chrono_tz::Tz>,
    pub locale: Option<String>,
}

/// Logout: `unbind` removes the device and its token; otherwise the device keeps its token
/// (it still gets offline pushes) and is marked offline.
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct RemoveDevice {
    pub device: DeviceId,
    pub unbind: bool,
}

/// One device as listed by the API.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceStatus {
    pub device: Device,
    pub presence: Presence,
}

/// List the user's registered devices with their presence.
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "Result<Vec<DeviceStatus>, StoreError>")]
pub struct ListDevices;

/// The traces of the messages the session still works on (not stored yet), newest first.
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "Vec<crate::trace::TraceEntry>")]
pub struct OpenTraces;

/// A presence event from the gateway; ignored when older than the last applied one.
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct PresenceChanged {
    pub device: DeviceId,
    pub presence: Presence,
    pub at: Timestamp,
}

/// A message for this user was accepted.
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "Result<(), StoreError>")]
pub struct MessageArrived(pub Arc<Message>, pub Arrival);

/// How a message reached its session, which says what the store may already hold for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Accepted by this process a moment ago (its id was new to the intake journal): nothing
    /// is stored for it yet, neither a trace nor a dedup record.
    Accepted,
    /// Replayed from the journal at start: an earlier run may have traced and pushed it.
    Replayed,
}

/// The gateway delivered these messages to a device online.
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "()")]
pub struct Acked {
    pub device: DeviceId,
    pub messages: Vec<MessageId>,
}

/// Read settings: the user's, or one conversation's (`None` if never set).
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "Result<Option<ChatSettings>, StoreError>")]
pub struct GetSettings {
    pub conversation: Option<ConversationId>,
}

/// Change settings: the user's or one conversation's. Returns the settings after the change.
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "Result<ChatSettings, StoreError>")]
pub struct UpdateSettings {
    pub conversation: Option<ConversationId>,
    pub patch: SettingsPatch,
}

/// Drop one conversation's settings; the user's apply again.
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteConversationSettings(pub ConversationId);

/// Another user registered this token: unbind it from `device`.
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "()")]
pub struct TokenRevoked {
    pub device: DeviceId,
    pub credential: CredentialName,
    pub token: Token,
}

/// The provider's final word on one push to one of this user's devices.
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "()")]
pub struct DeliveryReported(pub DeliveryReport);

/// A settings change: `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsPatch {
    pub push_mode: Option<Option<PushMode>>,
    /// `Some(None)` turns DND off: clears the window and `dnd_until`.
    pub dnd: Option<Option<DndWindow>>,
    /// "Mute for N minutes": sets `dnd_until = now + N min`.
    pub dnd_minutes: Option<u32>,
    pub dnd_until: Option<Option<Timestamp>>,
    pub timezone: Option<Option<chrono_tz::Tz>>,
    pub template: Option<Option<TemplateName>>,
    pub display_name: Option<Option<String>>,
}

impl SettingsPatch {
    /// Applies the patch at `now`.
    pub fn apply(&self, s: &mut ChatSettings, now: Timestamp) {
        if let Some(v) = self.push_mode {
            s.push_mode = v;
        }
        if let Some(v) = self.dnd {
            s.dnd = v;
            if v.is_none() {
                s.dnd_until = None;
            }
        }
        if let Some(v) = self.dnd_until {
            s.dnd_until = v;
        }
        if let Some(m) = self.dnd_minutes {
            s.dnd_until = Some(now + chrono::Duration::minutes(i64::from(m)));
        }
        if let Some(v) = self.timezone {
            s.timezone = v;
        }
        if let Some(v) = &self.template {
            s.template = v.clone();
        }
        if let Some(v) = &self.display_name {
            s.display_name = v.clone();
        }
    }
}
