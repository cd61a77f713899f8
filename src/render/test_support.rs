//! Builders shared by the render unit tests.

use crate::model::{
    Conversation, ConversationId, ConversationKind, Message, MessageId, MessageKind, PushOptions, Sender, TemplateName,
    Timestamp, UserId,
};
use crate::render::RenderContext;

/// The recipient every test renders for.
pub(crate) fn bob() -> &'static UserId {
    static BOB: std::sync::OnceLock<UserId> = std::sync::OnceLock::new();
    BOB.get_or_init(|| UserId::parse("bob").expect("valid id"))
}

/// 2023-11-14T22:13:20Z.
pub(crate) fn at() -> Timestamp {
    chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("valid instant")
}

/// A message from `alice` (no display name) in the single conversation `team-1`.
pub(crate) fn message(kind: MessageKind, text: Option<&str>) -> Message {
    Message {
        id: MessageId::parse("m-1").expect("valid id"),
        from: Sender { id: UserId::parse("alice").expect("valid id"), name: None },
        conversation: Conversation {
            id: ConversationId::parse("team-1").expect("valid id"),
            kind: ConversationKind::Single,
            name: None,
        },
        to: vec![bob().clone()],
        kind,
        text: text.map(str::to_owned),
        mentions: Vec::new(),
        mention_all: false,
        push: PushOptions::default(),
        accepted_at: at(),
    }
}

/// A context for `bob`.
pub(crate) fn ctx<'a>(message: &'a Message, locale: Option<&'a str>, badge: u32, count: u32) -> RenderContext<'a> {
    RenderContext { message, recipient: bob(), locale, badge, count }
}

/// A template name known to be valid.
pub(crate) fn name(s: &str) -> TemplateName {
    TemplateName::parse(s).expect("valid template name")
}
