//! Rendering: from an accepted [`Message`] to the vendor-neutral [`VendorPush`] one recipient is
//! sent, shortened to fit the vendor's payload limit.
//!
//! ```text
//! Message ─▶ Templates::render_for ─▶ Rendered {title, body} ─▶ build_push ─▶ VendorPush ─▶ fit
//!            (message text > message template > user template > operator default)   (vendor limit)
//! ```
//!
//! Owns: the built-in `default` and `detail` templates and the operator's custom ones (parsed and
//! checked for unknown placeholders at load), locale fallback, text previews, the mapping of a
//! message's push options to a [`VendorPush`], and char-boundary truncation.
//!
//! Deliberately not here: *whether* to push (`policy`), the badge count (the session keeps it),
//! the wire format and the size a vendor counts ([`Vendor::payload_size`] in `provider`), and
//! reading the TOML (the config module embeds [`TemplateConfig`] and [`RenderTexts`]).
//!
//! [`Message`]: crate::model::Message
//! [`VendorPush`]: crate::provider::VendorPush
//! [`Vendor::payload_size`]: crate::provider::Vendor::payload_size

mod fit;
mod push;
mod template;
mod texts;

pub use fit::{fit, truncate_chars};
pub use push::{build_push, DATA_CONVERSATION, DATA_MESSAGE, DATA_SENDER};
pub use template::{LocalizedText, TemplateConfig, TemplateError, Templates, DEFAULT_TEMPLATE, DETAIL_TEMPLATE};
pub use texts::RenderTexts;

use crate::model::{Message, UserId};

/// What one rendering sees: the message, who it is for, and the recipient's counters.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// The message being pushed.
    pub message: &'a Message,
    /// The user the push is for.
    pub recipient: &'a UserId,
    /// The recipient device's locale (`"zh-CN"`, `"en"`), if known.
    pub locale: Option<&'a str>,
    /// The badge the push will carry (messages received while offline).
    pub badge: u32,
    /// Offline messages in this conversation; may equal `badge`.
    pub count: u32,
}

/// A rendered notification text, before it becomes a [`crate::provider::VendorPush`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The notification title.
    pub title: String,
    /// The notification body.
    pub body: String,
}

#[cfg(test)]
mod test_support;
