//! From a message and its rendered text to the vendor-neutral [`VendorPush`] for one recipient:
//! push type, priority, sound, badge, grouping, expiry and deep-link data.
//!
//! Not here: the wire format (each `provider` module) and the size limit (`fit`).

use crate::model::{Message, PushType, Timestamp};
use crate::provider::{Priority, VendorPush};

use super::Rendered;

/// Deep-link data key for the message id; wins over a custom key of the same name.
pub const DATA_MESSAGE: &str = "msg";
/// Deep-link data key for the conversation id; wins over a custom key of the same name.
pub const DATA_CONVERSATION: &str = "conv";
/// Deep-link data key for the sender id; wins over a custom key of the same name.
pub const DATA_SENDER: &str = "sender";

/// Builds the vendor-neutral push for one recipient from the message and rendered text.
///
/// Push type from the message (default alert); priority high for alert and VoIP, normal for
/// silent; sound `"default"` and `badge` for alerts only; no title or body on a silent push;
/// `thread_id` = conversation id; data = the message's `push.data` plus `msg`, `conv`, `from`,
/// which win over custom keys so a gateway cannot point a deep link elsewhere.
pub fn build_push(message: &Message, rendered: Rendered, badge: u32, now: Timestamp) -> VendorPush {
    let push_type = message.push.push_type.unwrap_or(PushType::Alert);
    let alert = push_type == PushType::Alert;
    let (title, body) =
        if push_type == PushType::Silent { Default::default() } else { (rendered.title, rendered.body) };
    let mut data = message.push.data.clone();
    data.insert(DATA_MESSAGE.to_owned(), message.id.as_str().to_owned());
    data.insert(DATA_CONVERSATION.to_owned(), message.conversation.id.as_str().to_owned());
    data.insert(DATA_SENDER.to_owned(), message.from.id.as_str().to_owned());
    VendorPush {
        push_type,
        title,
        body,
        badge: alert.then_some(badge),
        sound: alert.then(|| "default".to_owned()),
        priority: match push_type {
            PushType::Alert | PushType::Voip => Priority::High,
            // Background pushes are throttled by APNs when sent at high priority.
            PushType::Silent => Priority::Normal,
        },
        collapse_id: message.push.collapse_id.clone(),
        ttl: message.push.ttl,
        created_at: now,
        thread_id: Some(message.conversation.id.as_str().to_owned()),
        data,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::model::MessageKind;
    use crate::render::test_support::{at, message};

    fn rendered() -> Rendered {
        Rendered { title: "Alice".to_owned(), body: "hi".to_owned() }
    }

    #[test]
    fn alert_push_carries_text_badge_sound_and_high_priority() {
        let mut msg = message(MessageKind::Text, Some("hi"));
        msg.push.collapse_id = Some("c-1".to_owned());
        msg.push.ttl = Some(Duration::from_secs(60));
        let push = build_push(&msg, rendered(), 4, at());
        assert_eq!(push.push_type, PushType::Alert);
        assert_eq!((push.title.as_str(), push.body.as_str()), ("Alice", "hi"));
        assert_eq!(push.badge, Some(4));
        assert_eq!(push.sound.as_deref(), Some("default"));
        assert_eq!(push.priority, Priority::High);
        assert_eq!(push.collapse_id.as_deref(), Some("c-1"));
        assert_eq!(push.ttl, Some(Duration::from_secs(60)));
        assert_eq!(push.created_at, at());
        assert_eq!(push.thread_id.as_deref(), Some("team-1"));
    }

    #[test]
    fn silent_push_has_no_text_badge_or_sound_and_normal_priority() {
        let mut msg = message(MessageKind::Text, Some("hi"));
        msg.push.push_type = Some(PushType::Silent);
        let push = build_push(&msg, rendered(), 4, at());
        assert_eq!((push.title.as_str(), push.body.as_str()), ("", ""));
        assert_eq!((push.badge, push.sound), (None, None));
        assert_eq!(push.priority, Priority::Normal);
        assert_eq!(push.data["msg"], "m-1");
    }

    #[test]
    fn voip_push_is_high_priority_with_text_but_no_badge_or_sound() {
        let mut msg = message(MessageKind::Call, None);
        msg.push.push_type = Some(PushType::Voip);
        let push = build_push(&msg, rendered(), 4, at());
        assert_eq!(push.priority, Priority::High);
        assert_eq!(push.title, "Alice");
        assert_eq!((push.badge, push.sound), (None, None));
    }

    #[test]
    fn fixed_data_keys_win_over_custom_data() {
        let mut msg = message(MessageKind::Text, Some("hi"));
        msg.push.data = BTreeMap::from([
            ("msg".to_owned(), "forged".to_owned()),
            ("sender".to_owned(), "mallory".to_owned()),
            ("route".to_owned(), "/chat/team-1".to_owned()),
        ]);
        let push = build_push(&msg, rendered(), 0, at());
        let expected: BTreeMap<String, String> =
            [("msg", "m-1"), ("conv", "team-1"), ("sender", "alice"), ("route", "/chat/team-1")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(push.data, expected);
    }
}
