//! Do-not-disturb windows: whether an instant falls inside a daily wall-clock window of a zone.
//! Owns the minute-of-day arithmetic only; which windows apply to a recipient is `decide`'s job.

use chrono::Timelike;

use crate::model::{DndWindow, Timestamp};

/// True when `now` falls inside the daily window in `tz` (from==to: all day; from>to: crosses
/// midnight; to may be 1440).
///
/// The window is compared with the local wall-clock minute of `now`, so on a DST transition day
/// the zone conversion decides which local time an instant has: a skipped local hour is never
/// "now", and a repeated one is "now" twice.
pub fn in_dnd_window(w: DndWindow, tz: chrono_tz::Tz, now: Timestamp) -> bool {
    let local = now.with_timezone(&tz);
    // hour() < 24 and minute() < 60, so this is < 1440 and fits in u16.
    let minute = (local.hour() * 60 + local.minute()) as u16;
    contains(w, minute)
}

/// Whether minute-of-day `m` (0..1440) is inside `w`: the start is included, the end excluded
/// (so `to == 1440` reaches the end of the day).
fn contains(w: DndWindow, m: u16) -> bool {
    use std::cmp::Ordering;
    match w.from.cmp(&w.to) {
        Ordering::Equal => true,
        Ordering::Less => w.from <= m && m < w.to,
        // Crosses midnight: from `from` to the end of the day, then from 00:00 to `to`.
        Ordering::Greater => m >= w.from || m < w.to,
    }
}
