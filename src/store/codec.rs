//! How the embedded store encodes a trace entry: a version byte, then the entry in postcard
//! (serde's compact binary format: no field names, varint numbers, instants as two integers).
//!
//! A trace entry is the largest record written per push: as JSON, an APNs push with one
//! attempt and a second device's decision is 646 bytes (the tests' entry), most of it field
//! names and RFC 3339 instants; here it is 240. Every byte goes through fjall's journal (which
//! does not compress values this small) and memtable before its tables. Measured (load
//! harness, issue 6): pushd's CPU per push did not move beyond noise (43–45 µs), peak RSS
//! under the fan-out did (about 30 MiB less). Entries written by earlier versions are JSON
//! (they start with `{`) and are still read; the API serves JSON either way.

use std::borrow::Cow;

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::model::{MessageId, Timestamp};
use crate::trace::{AttemptTrace, DeviceTrace, Fallback, PushTrace, TraceEntry};

/// The first byte of an entry in this encoding (JSON starts with `{`).
const V1: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    message_id: Cow<'a, str>,
    #[serde(borrow)]
    conversation_id: Cow<'a, str>,
    decided_at: Instant,
    #[serde(borrow)]
    fallbacks: Vec<(Instant, Cow<'a, str>)>,
    #[serde(borrow)]
    devices: Vec<Device<'a>>,
    counted_in_badge: bool,
}

#[derive(Serialize, Deserialize)]
struct Device<'a> {
    #[serde(borrow)]
    device: Cow<'a, str>,
    #[serde(borrow)]
    decision: Cow<'a, str>,
    #[serde(borrow)]
    push: Option<Push<'a>>,
}

#[derive(Serialize, Deserialize)]
struct Push<'a> {
    #[serde(borrow)]
    vendor: Cow<'a, str>,
    #[serde(borrow)]
    credential: Cow<'a, str>,
    #[serde(borrow)]
    token: Cow<'a, str>,
    #[serde(borrow)]
    title: Cow<'a, str>,
    #[serde(borrow)]
    body: Cow<'a, str>,
    badge: Option<u32>,
    #[serde(borrow)]
    push_type: Cow<'a, str>,
    #[serde(borrow)]
    attempts: Vec<Attempt<'a>>,
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    note: Option<Cow<'a, str>>,
}

#[derive(Serialize, Deserialize)]
struct Attempt<'a> {
    at: Instant,
    status: Option<u16>,
    #[serde(borrow)]
    outcome: Cow<'a, str>,
    #[serde(borrow)]
    reason: Cow<'a, str>,
}

/// An instant, exactly: seconds since the Unix epoch and nanoseconds.
#[derive(Serialize, Deserialize)]
struct Instant(i64, u32);

impl Instant {
    fn of(t: &Timestamp) -> Self {
        Self(t.timestamp(), t.timestamp_subsec_nanos())
    }

    fn get(&self) -> Result<Timestamp, StoreError> {
        DateTime::from_timestamp(self.0, self.1).ok_or_else(|| corrupt("instant out of range"))
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("corrupt trace entry: {e}"))
}

fn b(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

fn owned(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

/// `entry` as stored.
pub(super) fn encode(entry: &TraceEntry) -> Result<Vec<u8>, StoreError> {
    let stored = Entry {
        message_id: b(entry.message_id.as_str()),
        conversation_id: b(&entry.conversation_id),
        decided_at: Instant::of(&entry.decided_at),
        fallbacks: entry.fallbacks.iter().map(|f| (Instant::of(&f.at), b(&f.cause))).collect(),
        devices: entry
            .devices
            .iter()
            .map(|d| Device {
                device: b(&d.device),
                decision: b(&d.decision),
                push: d.push.as_ref().map(|p| Push {
                    vendor: b(&p.vendor),
                    credential: b(&p.credential),
                    token: b(&p.token),
                    title: b(&p.title),
                    body: b(&p.body),
                    badge: p.badge,
                    push_type: b(&p.push_type),
                    attempts: p
                        .attempts
                        .iter()
                        .map(|a| Attempt {
                            at: Instant::of(&a.at),
                            status: a.status,
                            outcome: b(&a.outcome),
                            reason: b(&a.reason),
                        })
                        .collect(),
                    outcome: p.outcome.as_deref().map(b),
                    reason: p.reason.as_deref().map(b),
                    note: p.note.as_deref().map(b),
                }),
            })
            .collect(),
        counted_in_badge: entry.counted_in_badge,
    };
    postcard::to_extend(&stored, vec![V1]).map_err(corrupt)
}

/// A stored entry, in this encoding or an earlier version's JSON.
pub(super) fn decode(bytes: &[u8]) -> Result<TraceEntry, StoreError> {
    let Some((&V1, rest)) = bytes.split_first() else {
        return serde_json::from_slice(bytes).map_err(corrupt);
    };
    let e: Entry<'_> = postcard::from_bytes(rest).map_err(corrupt)?;
    let fallbacks = e.fallbacks.into_iter().map(|(at, cause)| Ok(Fallback { at: at.get()?, cause: owned(cause) }));
    let devices = e.devices.into_iter().map(|d| {
        let push = d.push.map(|p| -> Result<PushTrace, StoreError> {
            let attempts = p.attempts.into_iter().map(|a| {
                Ok(AttemptTrace {
                    at: a.at.get()?,
                    status: a.status,
                    outcome: owned(a.outcome),
                    reason: owned(a.reason),
                })
            });
            Ok(PushTrace {
                vendor: owned(p.vendor),
                credential: p.credential.into_owned(),
                token: p.token.into_owned(),
                title: p.title.into_owned(),
                body: p.body.into_owned(),
                badge: p.badge,
                push_type: owned(p.push_type),
                attempts: attempts.collect::<Result<_, StoreError>>()?,
                outcome: p.outcome.map(owned),
                reason: p.reason.map(owned),
                note: p.note.map(Cow::into_owned),
            })
        });
        Ok(DeviceTrace { device: d.device.into_owned(), decision: d.decision.into_owned(), push: push.transpose()? })
    });
    Ok(TraceEntry {
        message_id: MessageId::parse(&e.message_id).map_err(corrupt)?,
        conversation_id: e.conversation_id.into_owned(),
        decided_at: e.decided_at.get()?,
        fallbacks: fallbacks.collect::<Result<_, StoreError>>()?,
        devices: devices.collect::<Result<_, StoreError>>()?,
        counted_in_badge: e.counted_in_badge,
    })
}

/// Whether the stored entry is the trace of `message`, reading no more than its id.
pub(super) fn is_of(bytes: &[u8], message: &MessageId) -> Result<bool, StoreError> {
    #[derive(Deserialize)]
    struct JsonId<'a> {
        #[serde(borrow)]
        message_id: Cow<'a, str>,
    }
    match bytes.split_first() {
        Some((&V1, rest)) => {
            let (id, _) = postcard::take_from_bytes::<&str>(rest).map_err(corrupt)?;
            Ok(id == message.as_str())
        }
        _ => Ok(serde_json::from_slice::<JsonId<'_>>(bytes).map_err(corrupt)?.message_id == message.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn entry(note: Option<&str>, push: bool) -> TraceEntry {
        let at = chrono::Utc.timestamp_opt(1_767_225_600, 123_456_789).unwrap();
        TraceEntry {
            message_id: MessageId::parse("m-1").unwrap(),
            conversation_id: "c-1".into(),
            decided_at: at,
            fallbacks: vec![Fallback { at, cause: "ack_timeout".into() }],
            devices: vec![
                DeviceTrace {
                    device: "phone".into(),
                    decision: "push".into(),
                    push: push.then(|| PushTrace {
                        vendor: "apns".into(),
                        credential: "prod-apns".into(),
                        token: "ab".repeat(32),
                        title: "Alice".into(),
                        body: "hello 世界 \"quoted\"".into(),
                        badge: Some(3),
                        push_type: "alert".into(),
                        attempts: vec![AttemptTrace {
                            at,
                            status: Some(200),
                            outcome: "delivered".into(),
                            reason: "ok".into(),
                        }],
                        outcome: Some("delivered".into()),
                        reason: None,
                        note: note.map(str::to_owned),
                    }),
                },
                DeviceTrace { device: "web".into(), decision: "presence".into(), push: None },
            ],
            counted_in_badge: true,
        }
    }

    #[test]
    fn an_entry_round_trips_exactly_and_smaller_than_json() {
        for e in [entry(Some("token removed: x"), true), entry(None, true), entry(None, false)] {
            let bytes = encode(&e).unwrap();
            assert_eq!(decode(&bytes).unwrap(), e);
            let json = serde_json::to_vec(&e).unwrap();
            assert!(bytes.len() * 2 < json.len(), "{} bytes against {} as JSON", bytes.len(), json.len());
            assert!(is_of(&bytes, &e.message_id).unwrap());
            assert!(!is_of(&bytes, &MessageId::parse("m-10").unwrap()).unwrap());
        }
    }

    #[test]
    fn an_entry_stored_as_json_by_an_earlier_version_is_read() {
        let e = entry(Some("n"), true);
        let json = serde_json::to_vec(&e).unwrap();
        assert_eq!(decode(&json).unwrap(), e);
        assert!(is_of(&json, &e.message_id).unwrap());
        assert!(!is_of(&json, &MessageId::parse("m-2").unwrap()).unwrap());
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let bytes = encode(&entry(None, true)).unwrap();
        for cut in [1, 2, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(b"").is_err());
        assert!(decode(&[V1, 0xff, 0xff, 0xff]).is_err());
    }
}
