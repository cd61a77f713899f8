//! The domain vocabulary: validated ids (newtypes that check once, at parse time) and the closed
//! sets of the product (enums with `as_str`). Strings stop at the API boundary; everything past
//! `api` speaks these types.
//!
//! Deliberately not here: behaviour. Rules live in `policy`, rendering in `render`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Wall-clock instant used everywhere in pushd (UTC, from [`crate::clock::Clock`]).
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Why an id or token failed validation; the API maps it to a 4xx with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must be 1 to {max} bytes long")]
    Length { what: &'static str, max: usize },
    #[error("{what} must not contain control characters")]
    Control { what: &'static str },
    #[error("{what} has an invalid format: {why}")]
    Format { what: &'static str, why: &'static str },
}

fn check_id(s: &str, what: &'static str, max: usize) -> Result<(), IdError> {
    if s.is_empty() || s.len() > max {
        return Err(IdError::Length { what, max });
    }
    if s.chars().any(char::is_control) {
        return Err(IdError::Control { what });
    }
    Ok(())
}

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps; the only way to build one from outside input.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check_id(s, $what, $max)?;
                Ok(Self(s.to_owned()))
            }
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_newtype!(
    /// An IM account id: 1–128 bytes, no control characters.
    UserId, "user id", 128
);
id_newtype!(
    /// The gateway's id of one app installation of a user.
    DeviceId, "device id", 128
);
id_newtype!(
    /// A conversation id (single, group or chatroom).
    ConversationId, "conversation id", 128
);
id_newtype!(
    /// The gateway's message id; pushd dedups on it.
    MessageId, "message id", 128
);
id_newtype!(
    /// The operator-configured name of a push credential, e.g. `im-ios-prod`.
    CredentialName, "credential name", 64
);
id_newtype!(
    /// The name of a notification template.
    TemplateName, "template name", 64
);

/// A vendor's device token. Validated per vendor by [`Token::parse_for`]; never logged in full.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

/// Longest token accepted for any vendor: FCM tokens are opaque and "store up to 4 KB".
pub const MAX_TOKEN_BYTES: usize = 4096;

impl Token {
    /// Validates a token for the vendor that will receive it. APNs tokens are even-length hex
    /// (stored lower-case); the others are opaque printable ASCII without spaces.
    pub fn parse_for(vendor: VendorKind, s: &str) -> Result<Self, IdError> {
        const WHAT: &str = "token";
        if s.is_empty() || s.len() > MAX_TOKEN_BYTES {
            return Err(IdError::Length { what: WHAT, max: MAX_TOKEN_BYTES });
        }
        match vendor {
            VendorKind::Apns => {
                if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(IdError::Format { what: WHAT, why: "APNs tokens are even-length hex" });
                }
                Ok(Self(s.to_ascii_lowercase()))
            }
            // Xiaomi and Meizu send batches as comma-separated lists: a comma would split a
            // token in two.
            VendorKind::Xiaomi | VendorKind::Meizu if s.contains(',') => {
                Err(IdError::Format { what: WHAT, why: "Xiaomi and Meizu tokens contain no commas" })
            }
            _ => {
                if !s.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(IdError::Format { what: WHAT, why: "printable ASCII without spaces expected" });
                }
                Ok(Self(s.to_owned()))
            }
        }
    }

    /// Wraps a token read back from the store (validated when it was registered).
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }

    /// The full token, for the vendor request only.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A masked form safe for logs, traces and the device listing: first 6 and last 4 chars.
    pub fn masked(&self) -> String {
        let s = &self.0;
        if s.len() <= 12 {
            return "*".repeat(s.len());
        }
        format!("{}…{}", &s[..6], &s[s.len() - 4..])
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.masked())
    }
}

macro_rules! str_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The wire and label form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($text => Ok($name::$variant),)+ _ => Err(()) }
            }
        }
    };
}

str_enum!(
    /// A device's connection state as the gateway reports it.
    Presence {
        /// Connected to the gateway (even with the app in the background).
        Online => "online",
        /// Disconnected or app killed; the default before any event.
        Offline => "offline",
        /// Forced off by another login: no push until online or registered again.
        Kicked => "kicked",
    }
);

str_enum!(
    /// Which messages a user (or one conversation) wants pushed.
    PushMode {
        All => "all",
        Mentions => "mentions",
        None => "none",
    }
);

str_enum!(
    /// Operator policy for users logged in on several devices (product.md §2.1).
    MultiDevicePolicy {
        /// Push only when none of the user's devices is online.
        AllOffline => "all_offline",
        /// Push every offline device even while another is online.
        AnyOffline => "any_offline",
    }
);

str_enum!(
    /// The kind of conversation a message belongs to.
    ConversationKind {
        Single => "single",
        Group => "group",
        Chatroom => "chatroom",
    }
);

str_enum!(
    /// What a message carries; `detail` renders a preview from it.
    MessageKind {
        Text => "text",
        Image => "image",
        Voice => "voice",
        Video => "video",
        File => "file",
        Location => "location",
        Custom => "custom",
        Call => "call",
    }
);

str_enum!(
    /// How the notification is presented by the device.
    PushType {
        /// A visible notification with title, body, badge, sound.
        Alert => "alert",
        /// A background (content-available) push: no alert.
        Silent => "silent",
        /// A call (APNs PushKit VoIP; high priority data elsewhere).
        Voip => "voip",
    }
);

str_enum!(
    /// The vendor channel a credential speaks.
    VendorKind {
        Apns => "apns",
        Fcm => "fcm",
        Huawei => "huawei",
        Honor => "honor",
        Xiaomi => "xiaomi",
        Oppo => "oppo",
        Vivo => "vivo",
        Meizu => "meizu",
    }
);

/// A daily do-not-disturb window in the user's time zone, as minutes since midnight.
/// `from == to` means all day; `to` may be 1440 ("24:00"); `from > to` crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DndWindow {
    /// Start, 0..=1439.
    pub from: u16,
    /// End, 0..=1440.
    pub to: u16,
}

impl DndWindow {
    /// Parses `"HH:MM"` pair; `"24:00"` is accepted only as an end.
    pub fn parse(from: &str, to: &str) -> Result<Self, IdError> {
        let from = parse_hhmm(from, false)?;
        let to = parse_hhmm(to, true)?;
        Ok(Self { from, to })
    }

    /// Formats a minute-of-day back to `"HH:MM"`.
    pub fn fmt_minute(m: u16) -> String {
        format!("{:02}:{:02}", m / 60, m % 60)
    }
}

fn parse_hhmm(s: &str, allow_24: bool) -> Result<u16, IdError> {
    const WHAT: &str = "DND time";
    let bad = IdError::Format { what: WHAT, why: "expected \"HH:MM\" (24-hour)" };
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' || !b.iter().enumerate().all(|(i, c)| i == 2 || c.is_ascii_digit()) {
        return Err(bad);
    }
    let h = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
    let m = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
    if (h == 24 && m == 0 && allow_24) || (h < 24 && m < 60) {
        Ok(h * 60 + m)
    } else {
        Err(bad)
    }
}

/// Push settings of a user (app level) or of one conversation. Every field is optional:
/// an unset conversation field falls back to the user's, an unset user field to the operator's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatSettings {
    pub push_mode: Option<PushMode>,
    pub dnd: Option<DndWindow>,
    /// "Mute until": no push before this instant.
    pub dnd_until: Option<Timestamp>,
    /// IANA zone for the DND window (user level; conversations use the user's).
    pub timezone: Option<chrono_tz::Tz>,
    pub template: Option<TemplateName>,
    pub display_name: Option<String>,
}

/// One registered device as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub credential: CredentialName,
    /// `None` after the vendor said the token is dead, or after logout with unbind.
    pub token: Option<Token>,
    /// When the current token was registered; the APNs 410 timestamp rule compares to it.
    pub token_registered_at: Timestamp,
    pub timezone: Option<chrono_tz::Tz>,
    pub locale: Option<String>,
}

/// The sender of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sender {
    pub id: UserId,
    pub name: Option<String>,
}

/// The conversation a message belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub name: Option<String>,
}

/// Who a force push applies to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum Force {
    #[default]
    Nobody,
    Everyone,
    Users(Vec<UserId>),
}

impl Force {
    /// Whether `user` is force-pushed by this message.
    pub fn applies_to(&self, user: &UserId) -> bool {
        match self {
            Force::Nobody => false,
            Force::Everyone => true,
            Force::Users(users) => users.contains(user),
        }
    }
}

/// The message's own push options (product.md §5 `push`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PushOptions {
    pub force: Force,
    pub title: Option<String>,
    pub body: Option<String>,
    pub template: Option<TemplateName>,
    pub push_type: Option<PushType>,
    pub collapse_id: Option<String>,
    pub ttl: Option<Duration>,
    pub data: BTreeMap<String, String>,
}

/// An accepted message, as the sessions see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub from: Sender,
    pub conversation: Conversation,
    pub to: Vec<UserId>,
    pub kind: MessageKind,
    pub text: Option<String>,
    pub mentions: Vec<UserId>,
    pub mention_all: bool,
    pub push: PushOptions,
    /// When pushd accepted it (for end-to-end latency).
    pub accepted_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_tokens_are_even_length_hex_stored_lower_case() {
        assert_eq!(Token::parse_for(VendorKind::Apns, "ABcd").unwrap().as_str(), "abcd");
        assert!(Token::parse_for(VendorKind::Apns, "abc").is_err());
        assert!(Token::parse_for(VendorKind::Apns, "zz").is_err());
        assert!(Token::parse_for(VendorKind::Fcm, "a b").is_err());
        assert!(Token::parse_for(VendorKind::Fcm, "fX3k:APA91b").is_ok());
    }

    #[test]
    fn ids_reject_empty_long_and_control_characters() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"a".repeat(129)).is_err());
        assert!(UserId::parse("a\nb").is_err());
        assert!(UserId::parse("alice").is_ok());
    }

    #[test]
    fn dnd_times_accept_24_00_only_as_an_end() {
        assert_eq!(DndWindow::parse("22:00", "08:00").unwrap(), DndWindow { from: 1320, to: 480 });
        assert_eq!(DndWindow::parse("00:00", "24:00").unwrap().to, 1440);
        assert!(DndWindow::parse("24:00", "08:00").is_err());
        assert!(DndWindow::parse("7:00", "08:00").is_err());
        assert!(DndWindow::parse("07:60", "08:00").is_err());
    }

    #[test]
    fn masked_tokens_hide_the_middle() {
        let t = Token::parse_for(VendorKind::Apns, &"ab".repeat(32)).unwrap();
        assert_eq!(t.masked(), "ababab…abab");
    }
}
