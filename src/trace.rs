//! The decision trace: for each message and recipient, what pushd decided per device and why,
//! and for each push sent, what was rendered, every attempt and the vendor's answer as
//! classified. `GET /v1/users/{user}/pushes` serves it ("why didn't my phone ring?").

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// A static word (metric-label style) that survives a round trip through the store.
pub type Word = Cow<'static, str>;

use crate::model::{MessageId, Timestamp};
use crate::provider::actor::Attempt;

/// One message as decided for one recipient.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceEntry {
    pub message_id: MessageId,
    pub conversation_id: String,
    pub decided_at: Timestamp,
    /// Each time an in-flight message fell back to offline handling.
    pub fallbacks: Vec<Fallback>,
    pub devices: Vec<DeviceTrace>,
    /// Whether the message counted toward the badge.
    pub counted_in_badge: bool,
}

/// A fall-back from in flight to offline handling.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fallback {
    pub at: Timestamp,
    /// `offline` (a waiting device disconnected) or `ack_timeout`.
    pub cause: Word,
}

/// What happened for one device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceTrace {
    pub device: String,
    /// `push`, `wait` (online, awaiting ack), `acked`, or the rule that stopped it
    /// (`presence`, `kicked`, `no_token`, `push_mode`, `dnd`, `duplicate`, `chatroom`, …).
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushTrace>,
}

/// A push that was sent (or attempted) to one device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PushTrace {
    pub vendor: Word,
    pub credential: String,
    pub token: String,
    pub title: String,
    pub body: String,
    pub badge: Option<u32>,
    pub push_type: Word,
    pub attempts: Vec<AttemptTrace>,
    /// Final classified answer: `delivered`, `invalid_token`, `retry` (gave up), `fatal`, …;
    /// `None` while still in progress.
    pub outcome: Option<Word>,
    pub reason: Option<Word>,
    /// What pushd did about it (e.g. "token removed").
    pub note: Option<String>,
}

/// One vendor request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptTrace {
    pub at: Timestamp,
    pub status: Option<u16>,
    pub outcome: Word,
    pub reason: Word,
}

impl From<&Attempt> for AttemptTrace {
    fn from(a: &Attempt) -> Self {
        Self { at: a.at, status: a.status, outcome: Cow::Borrowed(a.outcome), reason: Cow::Borrowed(a.reason) }
    }
}
