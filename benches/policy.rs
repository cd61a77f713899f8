//! `policy::decide` throughput: one recipient with three devices, the common offline case and a
//! DND-window case (time-zone conversion included). Run: `cargo bench --bench policy`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use pushd::model::{
    ChatSettings, Conversation, ConversationId, ConversationKind, DeviceId, DndWindow, Message, MessageId, MessageKind,
    MultiDevicePolicy, Presence, PushMode, PushOptions, Sender, UserId,
};
use pushd::policy::{decide, DeviceView, PolicyConfig, Recipient};

fn message() -> Message {
    Message {
        id: MessageId::parse("m-1").unwrap(),
        from: Sender { id: UserId::parse("alice").unwrap(), name: Some("Alice".into()) },
        conversation: Conversation {
            id: ConversationId::parse("team").unwrap(),
            kind: ConversationKind::Group,
            name: Some("Team".into()),
        },
        to: vec![UserId::parse("bob").unwrap()],
        kind: MessageKind::Text,
        text: Some("hello".into()),
        mentions: vec![],
        mention_all: false,
        push: PushOptions::default(),
        accepted_at: chrono::Utc::now(),
    }
}

fn bench(c: &mut Criterion) {
    let msg = message();
    let user = UserId::parse("bob").unwrap();
    let ids: Vec<DeviceId> = ["phone", "pad", "web"].iter().map(|d| DeviceId::parse(d).unwrap()).collect();
    let devices: Vec<DeviceView<'_>> = ids
        .iter()
        .map(|id| DeviceView { id, presence: Presence::Offline, has_token: true, already_pushed: false })
        .collect();
    let cfg = PolicyConfig {
        multi_device: MultiDevicePolicy::AllOffline,
        push_chatrooms: false,
        default_push_mode: PushMode::All,
    };
    let now = chrono::Utc::now();
    let plain = ChatSettings::default();
    let dnd = ChatSettings { dnd: Some(DndWindow { from: 22 * 60, to: 8 * 60 }), ..ChatSettings::default() };

    let mut g = c.benchmark_group("policy_decide");
    g.throughput(Throughput::Elements(1));
    for (name, settings) in [("offline_push", &plain), ("dnd_window", &dnd)] {
        let r = Recipient {
            user: &user,
            devices: &devices,
            user_settings: settings,
            conversation_settings: None,
            timezone: chrono_tz::Asia::Shanghai,
        };
        g.bench_function(name, |b| b.iter(|| decide(black_box(&msg), black_box(&r), &cfg, now)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
