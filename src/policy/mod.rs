//! Push rules (product.md §2): a pure function from a message, one recipient, the operator's
//! policy and `now` to a verdict per device of that recipient, plus whether the message counts
//! toward the user's badge.
//!
//! ```text
//! Message + Recipient (devices as seen for this message, settings, zone) + PolicyConfig + now
//!        │ decide: per device, first stopping rule wins
//!        ▼
//! Decision { per device: Push | Wait (online, in flight) | Stop(Rule), counts_toward_badge, forced }
//! ```
//!
//! Deliberately not here: reading the clock (`now` is an argument), loading devices or settings,
//! resolving the time zone, the in-flight bookkeeping of online devices (the session owns it and
//! calls `decide` again with timed-out devices passed as offline), rendering and delivery.

mod decide;
mod dnd;

pub use decide::{decide, Decision, DeviceDecision, DeviceView, PolicyConfig, Recipient, Rule, Verdict};
pub use dnd::in_dnd_window;

#[cfg(test)]
mod tests;
