//! `decide`: the push rules of product.md §2 for one message and one recipient, as a pure
//! function. Owns the rule order and the badge/force flags of the result; does not own where the
//! inputs come from (session, store, clock) nor what happens to a `Push` (render, provider).

use crate::model::{
    ChatSettings, ConversationKind, DeviceId, Message, MultiDevicePolicy, Presence, PushMode, Timestamp, UserId,
};

use super::dnd::in_dnd_window;

/// The operator's policy settings that `decide` needs (`policy.*` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// `policy.multi_device`: push only when every device is offline, or every offline device.
    pub multi_device: MultiDevicePolicy,
    /// `policy.push_chatrooms`: whether chatroom messages are pushed at all.
    pub push_chatrooms: bool,
    /// The push mode of a user who set none (product default: `all`).
    pub default_push_mode: PushMode,
}

/// One device as the session sees it *for this message*: a device that timed out or went offline
/// while the message was in flight is passed as Offline by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceView<'a> {
    /// The gateway's device id.
    pub id: &'a DeviceId,
    /// Presence for this message (see the type's doc).
    pub presence: Presence,
    /// Whether the device has a live vendor token.
    pub has_token: bool,
    /// Whether this message was already pushed to this device (dedup, product.md §3).
    pub already_pushed: bool,
}

/// Everything about one recipient of a message that the rules look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipient<'a> {
    /// The recipient.
    pub user: &'a UserId,
    /// All of the user's devices, in the order the decision should list them.
    pub devices: &'a [DeviceView<'a>],
    /// The user's app-level settings.
    pub user_settings: &'a ChatSettings,
    /// The user's settings for the message's conversation, if any were set.
    pub conversation_settings: Option<&'a ChatSettings>,
    /// The user's zone for DND windows (caller resolves: user setting, else device, else UTC).
    pub timezone: chrono_tz::Tz,
}

/// The rule that stopped a push to a device, in evaluation order; recorded in the trace and used
/// as the `rule` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A chatroom message while `policy.push_chatrooms` is off.
    Chatroom,
    /// The device was forced off by another login.
    Kicked,
    /// The device has no vendor token.
    NoToken,
    /// This message was already pushed to this device.
    Duplicate,
    /// `all_offline` policy and another device of the user is online.
    Presence,
    /// The effective push mode (`none`, or `mentions` without a mention) filters the message.
    PushMode,
    /// A do-not-disturb window or "mute until" applies.
    Dnd,
}

impl Rule {
    /// Every rule, in evaluation order.
    pub const ALL: &'static [Rule] =
        &[Rule::Chatroom, Rule::Kicked, Rule::NoToken, Rule::Duplicate, Rule::Presence, Rule::PushMode, Rule::Dnd];

    /// The trace and metric label form.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Chatroom => "chatroom",
            Rule::Kicked => "kicked",
            Rule::NoToken => "no_token",
            Rule::Duplicate => "duplicate",
            Rule::Presence => "presence",
            Rule::PushMode => "push_mode",
            Rule::Dnd => "dnd",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with the message for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send a push notification to this device.
    Push,
    /// The device is online: hold the message in flight until an ack or the ack timeout.
    Wait,
    /// No push; the first rule that stopped it.
    Stop(Rule),
}

/// The verdict for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDecision {
    /// The device the verdict is for.
    pub device: DeviceId,
    /// What to do for it.
    pub verdict: Verdict,
}

/// The outcome of the rules for one message and one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// One entry per device of the recipient, in input order.
    pub devices: Vec<DeviceDecision>,
    /// Whether the user's badge goes up: the user was offline for this message (a device is
    /// pushed, or only push mode or DND held the push back).
    pub counts_toward_badge: bool,
    /// Whether the message force-pushes this user (push mode and DND were skipped).
    pub forced: bool,
}

impl Decision {
    /// The devices to push, in input order.
    pub fn pushes(&self) -> impl Iterator<Item = &DeviceId> {
        self.with_verdict(Verdict::Push)
    }

    /// The online devices the message waits on (in flight until ack or ack timeout).
    pub fn waiting(&self) -> impl Iterator<Item = &DeviceId> {
        self.with_verdict(Verdict::Wait)
    }

    fn with_verdict(&self, verdict: Verdict) -> impl Iterator<Item = &DeviceId> {
        self.devices.iter().filter(move |d| d.verdict == verdict).map(|d| &d.device)
    }
}

/// Applies the push rules (product.md §2) to every device of `recipient`, in input order.
///
/// Per device, the first rule that stops wins: chatroom, kicked, online (→ `Wait`), no token,
/// duplicate, multi-device presence, push mode, DND; otherwise `Push`. Force push skips only push
/// mode and DND. Pure: `now` is the only notion of time.
pub fn decide(msg: &Message, recipient: &Recipient<'_>, cfg: &PolicyConfig, now: Timestamp) -> Decision {
    let forced = msg.push.force.applies_to(recipient.user);
    // The user-level rules do not depend on the device: evaluate them once.
    let user = UserRules {
        chatroom_blocked: msg.conversation.kind == ConversationKind::Chatroom && !cfg.push_chatrooms,
        other_device_online: cfg.multi_device == MultiDevicePolicy::AllOffline
            && recipient.devices.iter().any(|d| d.presence == Presence::Online),
        mode_blocks: !forced && !push_mode_allows(msg, recipient, cfg),
        dnd_blocks: !forced && dnd_applies(recipient, now),
    };

    let devices: Vec<DeviceDecision> =
        recipient.devices.iter().map(|d| DeviceDecision { device: d.id.clone(), verdict: user.verdict(d) }).collect();
    let counts_toward_badge =
        devices.iter().any(|d| matches!(d.verdict, Verdict::Push | Verdict::Stop(Rule::PushMode | Rule::Dnd)));
    Decision { devices, counts_toward_badge, forced }
}

/// The outcome of the rules that look at the user and the message, not at one device.
struct UserRules {
    chatroom_blocked: bool,
    other_device_online: bool,
    mode_blocks: bool,
    dnd_blocks: bool,
}

impl UserRules {
    fn verdict(&self, d: &DeviceView<'_>) -> Verdict {
        if self.chatroom_blocked {
            return Verdict::Stop(Rule::Chatroom);
        }
        match d.presence {
            Presence::Kicked => return Verdict::Stop(Rule::Kicked),
            // Online wins over a missing token: the message is held in flight and, if it falls
            // back, decided again with this device offline.
            Presence::Online => return Verdict::Wait,
            Presence::Offline => {}
        }
        if !d.has_token {
            Verdict::Stop(Rule::NoToken)
        } else if d.already_pushed {
            Verdict::Stop(Rule::Duplicate)
        } else if self.other_device_online {
            Verdict::Stop(Rule::Presence)
        } else if self.mode_blocks {
            Verdict::Stop(Rule::PushMode)
        } else if self.dnd_blocks {
            Verdict::Stop(Rule::Dnd)
        } else {
            Verdict::Push
        }
    }
}

/// The effective push mode (conversation, else user, else operator default) lets `msg` through.
fn push_mode_allows(msg: &Message, recipient: &Recipient<'_>, cfg: &PolicyConfig) -> bool {
    let mode = recipient
        .conversation_settings
        .and_then(|c| c.push_mode)
        .or(recipient.user_settings.push_mode)
        .unwrap_or(cfg.default_push_mode);
    match mode {
        PushMode::All => true,
        PushMode::None => false,
        // In a single conversation every message is addressed to the user.
        PushMode::Mentions => {
            msg.conversation.kind == ConversationKind::Single
                || msg.mention_all
                || msg.mentions.contains(recipient.user)
        }
    }
}

/// DND applies when the user-level or the conversation-level settings mute `now`.
fn dnd_applies(recipient: &Recipient<'_>, now: Timestamp) -> bool {
    let mutes = |s: &ChatSettings| {
        s.dnd.is_some_and(|w| in_dnd_window(w, recipient.timezone, now)) || s.dnd_until.is_some_and(|until| until > now)
    };
    mutes(recipient.user_settings) || recipient.conversation_settings.is_some_and(mutes)
}
