//! The [`Store`] contract, checked against both implementations: every test below is a plain
//! function over `&dyn Store`, and [`both!`] runs it once on a [`MemoryStore`] and once on an
//! [`EmbeddedStore`] in a fresh temporary directory. Tests that only make sense for a store
//! that persists (reopening the same directory) sit at the end, for the embedded store only.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::TimeZone;

use super::journal::SyncMode;
use super::{EmbeddedStore, Finish, Intake, MemoryStore, PresenceRecord, Recipients, Store, Swept};
use crate::model::{
    ChatSettings, Conversation, ConversationId, ConversationKind, CredentialName, Device, DeviceId, DndWindow, Force,
    Message, MessageId, MessageKind, Presence, PushMode, PushOptions, PushType, Sender, TemplateName, Timestamp, Token,
    UserId, VendorKind,
};
use crate::render::{LocalizedText, TemplateConfig};
use crate::trace::{AttemptTrace, DeviceTrace, Fallback, PushTrace, TraceEntry};

// ---- fixtures ----

/// A store under test, with the directory it lives in (embedded only; removed on drop, after
/// the store, which is declared first and so dropped first).
struct Fixture {
    store: Box<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Fixture {
    Fixture { store: Box::new(MemoryStore::new()), _dir: None }
}

fn open_embedded(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, SyncMode::Commit, Duration::from_millis(50)).expect("the embedded store opens")
}

fn embedded() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    Fixture { store: Box::new(open_embedded(dir.path())), _dir: Some(dir) }
}

/// Runs each named contract test on both stores, as `memory_store::<name>` and
/// `embedded_store::<name>`.
macro_rules! both {
    ($($name:ident),+ $(,)?) => {
        mod memory_store {
            $(
                #[test]
                fn $name() {
                    let f = super::memory();
                    super::$name(f.store.as_ref());
                }
            )+
        }
        mod embedded_store {
            $(
                #[test]
                fn $name() {
                    let f = super::embedded();
                    super::$name(f.store.as_ref());
                }
            )+
        }
    };
}

both!(
    every_record_kind_round_trips,
    records_never_leak_into_a_user_whose_id_extends_another,
    the_token_index_follows_devices_that_are_put_replaced_and_removed,
    removing_a_device_whose_token_moved_keeps_the_new_owner_indexed,
    an_accepted_message_is_new_once_then_a_duplicate,
    the_journal_lists_pending_recipients_until_each_completes,
    of_concurrent_accepts_of_one_id_exactly_one_is_new,
    upserting_a_trace_replaces_the_entry_of_its_message,
    traces_come_newest_first_and_only_the_newest_keep_survive,
    sweep_removes_what_is_older_than_the_cutoff_and_keeps_the_rest,
    a_swept_accepted_id_can_be_accepted_again,
    sync_resolves_ok_for_one_caller_and_for_many_at_once,
    a_sweep_keeps_the_id_of_a_message_still_pending,
    finishing_a_message_stores_its_trace_and_badge_and_completes_it,
    the_trace_of_a_reused_message_id_stays_findable_when_its_old_entry_is_evicted,
    the_trace_of_a_reused_message_id_stays_findable_when_its_old_entry_is_swept,
);

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn did(s: &str) -> DeviceId {
    DeviceId::parse(s).unwrap()
}

fn mid(s: &str) -> MessageId {
    MessageId::parse(s).unwrap()
}

fn cred(s: &str) -> CredentialName {
    CredentialName::parse(s).unwrap()
}

fn token(s: &str) -> Token {
    Token::parse_for(VendorKind::Fcm, s).unwrap()
}

/// A whole-millisecond instant `secs` seconds after a fixed epoch (the embedded store keeps
/// some instants in milliseconds).
fn at(secs: i64) -> Timestamp {
    chrono::Utc.timestamp_millis_opt(1_767_225_600_000 + secs * 1000).unwrap()
}

/// A device with every field set.
fn device(id: &str, credential: &str, tok: Option<&str>) -> Device {
    Device {
        id: did(id),
        credential: cred(credential),
        token: tok.map(token),
        token_registered_at: at(1),
        timezone: Some(chrono_tz::Europe::Berlin),
        locale: Some("zh-CN".into()),
    }
}

/// A group message with every field set, accepted at `accepted` seconds.
fn message(id: &str, to: &[&str], accepted: i64) -> Message {
    let mut data = BTreeMap::new();
    data.insert("deep_link".to_owned(), "im://c/1?x=ü".to_owned());
    Message {
        id: mid(id),
        from: Sender { id: uid("alice"), name: Some("Alice 🎉".into()) },
        conversation: Conversation {
            id: ConversationId::parse("c-1").unwrap(),
            kind: ConversationKind::Group,
            name: Some("Team 群".into()),
        },
        to: to.iter().map(|u| uid(u)).collect(),
        kind: MessageKind::Text,
        text: Some("hello\n世界".into()),
        mentions: vec![uid("bob")],
        mention_all: true,
        push: PushOptions {
            force: Force::Users(vec![uid("bob")]),
            title: Some("t".into()),
            body: Some("b".into()),
            template: Some(TemplateName::parse("detail").unwrap()),
            push_type: Some(PushType::Voip),
            collapse_id: Some("collapse-1".into()),
            ttl: Some(Duration::from_secs(3600)),
            data,
        },
        accepted_at: at(accepted),
    }
}

/// Settings with every field set.
fn settings(name: &str) -> ChatSettings {
    ChatSettings {
        push_mode: Some(PushMode::Mentions),
        dnd: Some(DndWindow::parse("22:00", "24:00").unwrap()),
        dnd_until: Some(at(86_400)),
        timezone: Some(chrono_tz::Asia::Tokyo),
        template: Some(TemplateName::parse("detail").unwrap()),
        display_name: Some(name.to_owned()),
    }
}

/// A trace entry with every field set, decided at `decided` seconds.
fn trace_entry(message_id: &str, decided: i64, decision: &str) -> TraceEntry {
    TraceEntry {
        message_id: mid(message_id),
        conversation_id: "c-1".into(),
        decided_at: at(decided),
        fallbacks: vec![Fallback { at: at(decided), cause: "ack_timeout".into() }],
        devices: vec![DeviceTrace {
            device: "phone".into(),
            decision: decision.to_owned(),
            push: Some(PushTrace {
                vendor: "fcm".into(),
                credential: "test-fcm".into(),
                token: "abcdef…wxyz".into(),
                title: "Alice".into(),
                body: "hello 世界".into(),
                badge: Some(3),
                push_type: "alert".into(),
                attempts: vec![AttemptTrace {
                    at: at(decided),
                    status: Some(200),
                    outcome: "delivered".into(),
                    reason: "ok".into(),
                }],
                outcome: Some("delivered".into()),
                reason: None,
                note: Some("note".into()),
            }),
        }],
        counted_in_badge: true,
    }
}

fn template(title: &str) -> TemplateConfig {
    let mut locales = BTreeMap::new();
    locales.insert("zh-CN".to_owned(), LocalizedText { title: Some("新消息".into()), body: None });
    TemplateConfig { title: title.to_owned(), body: "{sender_name}: {text}".into(), locales }
}

fn sorted_devices(store: &dyn Store, user: &str) -> Vec<Device> {
    let mut devices = store.devices(&uid(user)).unwrap();
    devices.sort_by(|a, b| a.id.cmp(&b.id));
    devices
}

/// The journal as (message id, sorted pending recipients), sorted by id.
fn pending_ids(store: &dyn Store) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = store
        .pending()
        .unwrap()
        .into_iter()
        .map(|(m, users)| {
            let mut users: Vec<String> = users.iter().map(|u| u.to_string()).collect();
            users.sort();
            (m.id.to_string(), users)
        })
        .collect();
    out.sort();
    out
}

fn trace_ids(store: &dyn Store, user: &str, limit: usize) -> Vec<String> {
    store.traces(&uid(user), limit).unwrap().iter().map(|t| t.message_id.to_string()).collect()
}

fn owner(store: &dyn Store, credential: &str, tok: &str) -> Option<(String, String)> {
    store.token_owner(&cred(credential), &token(tok)).unwrap().map(|(u, d)| (u.to_string(), d.to_string()))
}

fn some_owner(user: &str, device: &str) -> Option<(String, String)> {
    Some((user.to_owned(), device.to_owned()))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

// ---- contract tests, run on both stores ----

fn every_record_kind_round_trips(store: &dyn Store) {
    let bob = uid("bob");
    let conv = ConversationId::parse("c-1").unwrap();

    // Defaults before anything is written.
    assert!(store.devices(&bob).unwrap().is_empty());
    assert!(store.presences(&bob).unwrap().is_empty());
    assert_eq!(store.user_settings(&bob).unwrap(), ChatSettings::default());
    assert_eq!(store.conversation_settings(&bob, &conv).unwrap(), None);
    assert_eq!(store.badge(&bob).unwrap(), 0);
    assert!(store.templates().unwrap().is_empty());
    assert!(!store.was_pushed(&bob, &mid("m1"), &did("phone")).unwrap());
    assert!(store.traces(&bob, 10).unwrap().is_empty());
    assert!(store.pending().unwrap().is_empty());

    // Devices, including one without a token.
    let phone = device("phone", "test-fcm", Some("tok-phone:APA91b"));
    let tablet = device("tablet", "test-fcm", None);
    store.put_device(&bob, &phone).unwrap();
    store.put_device(&bob, &tablet).unwrap();
    assert_eq!(sorted_devices(store, "bob"), vec![phone.clone(), tablet.clone()]);
    assert_eq!(owner(store, "test-fcm", "tok-phone:APA91b"), some_owner("bob", "phone"));

    // Presence.
    let online = PresenceRecord { presence: Presence::Online, at: at(5) };
    let kicked = PresenceRecord { presence: Presence::Kicked, at: at(6) };
    store.put_presence(&bob, &did("phone"), online).unwrap();
    store.put_presence(&bob, &did("tablet"), kicked).unwrap();
    let mut presences = store.presences(&bob).unwrap();
    presences.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(presences, vec![(did("phone"), online), (did("tablet"), kicked)]);
    let offline = PresenceRecord { presence: Presence::Offline, at: at(7) };
    store.put_presence(&bob, &did("phone"), offline).unwrap();
    assert!(store.presences(&bob).unwrap().contains(&(did("phone"), offline)), "the last presence replaces");

    // Removing a device returns it and forgets its presence.
    assert_eq!(store.remove_device(&bob, &did("tablet")).unwrap(), Some(tablet.clone()));
    assert_eq!(store.remove_device(&bob, &did("tablet")).unwrap(), None);
    assert_eq!(sorted_devices(store, "bob"), vec![phone.clone()]);
    assert_eq!(store.presences(&bob).unwrap(), vec![(did("phone"), offline)]);

    // User and conversation settings.
    store.put_user_settings(&bob, &settings("Bob 🎉")).unwrap();
    assert_eq!(store.user_settings(&bob).unwrap(), settings("Bob 🎉"));
    store.put_user_settings(&bob, &ChatSettings::default()).unwrap();
    assert_eq!(store.user_settings(&bob).unwrap(), ChatSettings::default(), "settings are replaced whole");
    store.put_conversation_settings(&bob, &conv, &settings("in c-1")).unwrap();
    assert_eq!(store.conversation_settings(&bob, &conv).unwrap(), Some(settings("in c-1")));
    assert_eq!(store.conversation_settings(&bob, &ConversationId::parse("c-2").unwrap()).unwrap(), None);
    assert!(store.delete_conversation_settings(&bob, &conv).unwrap());
    assert!(!store.delete_conversation_settings(&bob, &conv).unwrap());
    assert_eq!(store.conversation_settings(&bob, &conv).unwrap(), None);

    // Badge.
    store.put_badge(&bob, 7).unwrap();
    assert_eq!(store.badge(&bob).unwrap(), 7);
    store.put_badge(&bob, u32::MAX).unwrap();
    assert_eq!(store.badge(&bob).unwrap(), u32::MAX);

    // Templates.
    store.put_template("welcome", &template("Hi")).unwrap();
    store.put_template("urgent", &template("Now")).unwrap();
    store.put_template("welcome", &template("Hello")).unwrap();
    let mut templates = store.templates().unwrap();
    templates.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(templates, vec![("urgent".to_owned(), template("Now")), ("welcome".to_owned(), template("Hello"))]);

    // Dedup.
    store.mark_pushed(&bob, &mid("m1"), &did("phone"), at(10)).unwrap();
    assert!(store.was_pushed(&bob, &mid("m1"), &did("phone")).unwrap());
    assert!(!store.was_pushed(&bob, &mid("m1"), &did("tablet")).unwrap());
    assert!(!store.was_pushed(&bob, &mid("m2"), &did("phone")).unwrap());
    assert!(!store.was_pushed(&uid("carol"), &mid("m1"), &did("phone")).unwrap());

    // The journal keeps the whole message.
    let m = message("m1", &["bob", "carol"], 10);
    assert_eq!(store.accept_message(&m).unwrap(), Intake::New);
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0, m);

    // Traces.
    let entry = trace_entry("m1", 10, "push");
    store.upsert_trace(&bob, &entry, 10).unwrap();
    assert_eq!(store.trace(&bob, &mid("m1")).unwrap(), Some(entry.clone()));
    assert_eq!(store.traces(&bob, 10).unwrap(), vec![entry]);
    assert_eq!(store.trace(&bob, &mid("m2")).unwrap(), None);
}

fn records_never_leak_into_a_user_whose_id_extends_another(store: &dyn Store) {
    let (bob, bobby) = (uid("bob"), uid("bobby"));
    let conv = ConversationId::parse("c").unwrap();
    store.put_device(&bobby, &device("phone", "test-fcm", Some("tok-bobby"))).unwrap();
    store.put_presence(&bobby, &did("phone"), PresenceRecord { presence: Presence::Online, at: at(1) }).unwrap();
    store.put_user_settings(&bobby, &settings("Bobby")).unwrap();
    store.put_conversation_settings(&bobby, &conv, &settings("Bobby in c")).unwrap();
    store.put_badge(&bobby, 3).unwrap();
    store.mark_pushed(&bobby, &mid("m1"), &did("phone"), at(1)).unwrap();
    store.upsert_trace(&bobby, &trace_entry("m1", 1, "push"), 10).unwrap();

    assert!(store.devices(&bob).unwrap().is_empty());
    assert!(store.presences(&bob).unwrap().is_empty());
    assert_eq!(store.user_settings(&bob).unwrap(), ChatSettings::default());
    assert_eq!(store.conversation_settings(&bob, &conv).unwrap(), None);
    assert_eq!(store.badge(&bob).unwrap(), 0);
    assert!(!store.was_pushed(&bob, &mid("m1"), &did("phone")).unwrap());
    assert!(store.traces(&bob, 10).unwrap().is_empty());
    assert_eq!(store.trace(&bob, &mid("m1")).unwrap(), None);

    // And the shorter id's records stay out of the longer one's.
    store.put_device(&bob, &device("tablet", "test-fcm", Some("tok-bob"))).unwrap();
    store.upsert_trace(&bob, &trace_entry("m2", 2, "push"), 10).unwrap();
    assert_eq!(sorted_devices(store, "bobby"), vec![device("phone", "test-fcm", Some("tok-bobby"))]);
    assert_eq!(trace_ids(store, "bobby", 10), ["m1"]);
    assert_eq!(trace_ids(store, "bob", 10), ["m2"]);
}

fn the_token_index_follows_devices_that_are_put_replaced_and_removed(store: &dyn Store) {
    let bob = uid("bob");
    store.put_device(&bob, &device("phone", "test-fcm", Some("tok-1"))).unwrap();
    assert_eq!(owner(store, "test-fcm", "tok-1"), some_owner("bob", "phone"));
    assert_eq!(owner(store, "other-fcm", "tok-1"), None, "the index is per credential");

    // A new token replaces the old one in the index.
    store.put_device(&bob, &device("phone", "test-fcm", Some("tok-2"))).unwrap();
    assert_eq!(owner(store, "test-fcm", "tok-1"), None);
    assert_eq!(owner(store, "test-fcm", "tok-2"), some_owner("bob", "phone"));

    // The same token under another credential moves in the index.
    store.put_device(&bob, &device("phone", "other-fcm", Some("tok-2"))).unwrap();
    assert_eq!(owner(store, "test-fcm", "tok-2"), None);
    assert_eq!(owner(store, "other-fcm", "tok-2"), some_owner("bob", "phone"));

    // Putting the device again unchanged keeps it indexed.
    store.put_device(&bob, &device("phone", "other-fcm", Some("tok-2"))).unwrap();
    assert_eq!(owner(store, "other-fcm", "tok-2"), some_owner("bob", "phone"));

    // A device whose token died leaves the index.
    store.put_device(&bob, &device("phone", "other-fcm", None)).unwrap();
    assert_eq!(owner(store, "other-fcm", "tok-2"), None);

    // Removing a device removes its token.
    store.put_device(&bob, &device("phone", "test-fcm", Some("tok-3"))).unwrap();
    assert_eq!(owner(store, "test-fcm", "tok-3"), some_owner("bob", "phone"));
    store.remove_device(&bob, &did("phone")).unwrap();
    assert_eq!(owner(store, "test-fcm", "tok-3"), None);

    // A token moving to another device of the same user, then to another user, follows.
    store.put_device(&bob, &device("phone", "test-fcm", Some("tok-4"))).unwrap();
    store.put_device(&bob, &device("tablet", "test-fcm", Some("tok-4"))).unwrap();
    assert_eq!(owner(store, "test-fcm", "tok-4"), some_owner("bob", "tablet"));
    store.put_device(&uid("carol"), &device("pixel", "test-fcm", Some("tok-4"))).unwrap();
    assert_eq!(owner(store, "test-fcm", "tok-4"), some_owner("carol", "pixel"));
}

fn removing_a_device_whose_token_moved_keeps_the_new_owner_indexed(store: &dyn Store) {
    let (bob, carol) = (uid("bob"), uid("carol"));
    // The token moves from bob's phone to carol's phone (the handset changed hands).
    store.put_device(&bob, &device("phone", "test-fcm", Some("tok-shared"))).unwrap();
    store.put_device(&carol, &device("phone", "test-fcm", Some("tok-shared"))).unwrap();
    assert_eq!(owner(store, "test-fcm", "tok-shared"), some_owner("carol", "phone"));

    // bob's stale device still names the token; removing it must not unindex carol's.
    assert_eq!(store.remove_device(&bob, &did("phone")).unwrap().and_then(|d| d.token), Some(token("tok-shared")));
    assert_eq!(owner(store, "test-fcm", "tok-shared"), some_owner("carol", "phone"));

    // Nor must replacing a stale device's token.
    store.put_device(&bob, &device("tablet", "test-fcm", Some("tok-moving"))).unwrap();
    store.put_device(&bob, &device("phone", "test-fcm", Some("tok-moving"))).unwrap();
    store.put_device(&bob, &device("tablet", "test-fcm", Some("tok-new"))).unwrap();
    assert_eq!(owner(store, "test-fcm", "tok-moving"), some_owner("bob", "phone"));
    assert_eq!(owner(store, "test-fcm", "tok-new"), some_owner("bob", "tablet"));
    store.put_device(&bob, &device("tablet", "test-fcm", None)).unwrap();
    assert_eq!(owner(store, "test-fcm", "tok-moving"), some_owner("bob", "phone"));
}

fn an_accepted_message_is_new_once_then_a_duplicate(store: &dyn Store) {
    let m = message("m1", &["bob"], 10);
    assert_eq!(store.accept_message(&m).unwrap(), Intake::New);
    assert_eq!(store.accept_message(&m).unwrap(), Intake::Duplicate);

    // A retry with other content is still a duplicate and writes nothing.
    let mut retry = message("m1", &["carol", "dave"], 20);
    retry.text = Some("changed".into());
    assert_eq!(store.accept_message(&retry).unwrap(), Intake::Duplicate);
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0], (m, vec![uid("bob")]));

    // Still a duplicate once completed: the accepted id outlives the journal entry.
    store.complete(&mid("m1"), &uid("bob"), Recipients::Several).unwrap();
    assert!(store.pending().unwrap().is_empty());
    assert_eq!(store.accept_message(&message("m1", &["bob"], 30)).unwrap(), Intake::Duplicate);
    assert!(store.pending().unwrap().is_empty());
}

fn the_journal_lists_pending_recipients_until_each_completes(store: &dyn Store) {
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(store.accept_message(&message("m1", &["bob", "carol", "dave"], 10)).unwrap(), Intake::New);
    assert_eq!(store.accept_message(&message("m2", &["bob"], 11)).unwrap(), Intake::New);
    // An id that extends another's must not be confused with it.
    assert_eq!(store.accept_message(&message("m1x", &["carol"], 12)).unwrap(), Intake::New);
    assert_eq!(
        pending_ids(store),
        vec![
            ("m1".into(), strs(&["bob", "carol", "dave"])),
            ("m1x".into(), strs(&["carol"])),
            ("m2".into(), strs(&["bob"])),
        ]
    );

    store.complete(&mid("m1"), &uid("carol"), Recipients::Several).unwrap();
    assert_eq!(
        pending_ids(store),
        vec![("m1".into(), strs(&["bob", "dave"])), ("m1x".into(), strs(&["carol"])), ("m2".into(), strs(&["bob"])),]
    );

    // Completing twice, for a user who is not a recipient, or an unknown message changes nothing.
    store.complete(&mid("m1"), &uid("carol"), Recipients::Several).unwrap();
    store.complete(&mid("m1"), &uid("zed"), Recipients::Several).unwrap();
    store.complete(&mid("nope"), &uid("bob"), Recipients::Several).unwrap();
    assert_eq!(pending_ids(store).len(), 3);
    assert_eq!(pending_ids(store)[0], ("m1".into(), strs(&["bob", "dave"])));

    // The entry disappears when the last recipient completes; the others stay.
    store.complete(&mid("m1"), &uid("bob"), Recipients::Several).unwrap();
    store.complete(&mid("m1"), &uid("dave"), Recipients::Several).unwrap();
    assert_eq!(pending_ids(store), vec![("m1x".into(), strs(&["carol"])), ("m2".into(), strs(&["bob"]))]);
    // A message to its completing recipient alone goes without looking for other marks.
    store.complete(&mid("m2"), &uid("bob"), Recipients::Only).unwrap();
    assert_eq!(pending_ids(store), vec![("m1x".into(), strs(&["carol"]))]);
    store.complete(&mid("m1x"), &uid("carol"), Recipients::Several).unwrap();
    assert!(store.pending().unwrap().is_empty());
}

fn of_concurrent_accepts_of_one_id_exactly_one_is_new(store: &dyn Store) {
    let m = message("m-race", &["bob"], 10);
    let answers: Vec<Intake> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| store.accept_message(&m).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers.iter().filter(|a| **a == Intake::New).count(), 1, "{answers:?}");
    assert_eq!(store.pending().unwrap().len(), 1);
}

fn finishing_a_message_stores_its_trace_and_badge_and_completes_it(store: &dyn Store) {
    let (bob, carol) = (uid("bob"), uid("carol"));
    assert_eq!(store.accept_message(&message("m1", &["bob", "carol"], 10)).unwrap(), Intake::New);
    store.upsert_trace(&bob, &trace_entry("m0", 9, "push"), 2).unwrap();
    let entry = trace_entry("m1", 11, "push");
    let finish =
        Finish { trace: Some(&entry), trace_new: true, keep: 2, badge: Some(3), recipients: Recipients::Several };
    store.finish(&bob, &mid("m1"), finish).unwrap();
    assert_eq!(store.trace(&bob, &mid("m1")).unwrap(), Some(entry.clone()));
    assert_eq!(trace_ids(store, "bob", 10), ["m1", "m0"]);
    assert_eq!(store.badge(&bob).unwrap(), 3);
    assert_eq!(pending_ids(store), vec![("m1".to_owned(), vec!["carol".to_owned()])]);

    // Finishing again replaces the trace in place; `keep` still holds.
    let later = trace_entry("m1", 12, "acked");
    let again = Finish { trace: Some(&later), trace_new: false, keep: 2, badge: None, recipients: Recipients::Several };
    store.finish(&bob, &mid("m1"), again).unwrap();
    assert_eq!(trace_ids(store, "bob", 10), ["m1", "m0"]);
    assert_eq!(store.trace(&bob, &mid("m1")).unwrap(), Some(later));
    assert_eq!(store.badge(&bob).unwrap(), 3, "no badge given: the stored one stays");

    // Neither trace nor badge: only the completion, which removes the message.
    let bare = Finish { trace: None, trace_new: false, keep: 2, badge: None, recipients: Recipients::Several };
    store.finish(&carol, &mid("m1"), bare).unwrap();
    assert!(store.pending().unwrap().is_empty());
    assert!(store.traces(&carol, 10).unwrap().is_empty());
    assert_eq!(store.badge(&carol).unwrap(), 0);
}

/// A message id accepted again after its first use expired, finished as new (`trace_new`):
/// the store may keep the old entry beside the new one, but `trace` finds the new one.
fn finish_reused_id(store: &dyn Store, bob: &UserId) -> TraceEntry {
    store.upsert_trace(bob, &trace_entry("m1", 1, "push"), 3).unwrap();
    let newer = trace_entry("m1", 50, "acked");
    let finish = Finish { trace: Some(&newer), trace_new: true, keep: 3, badge: None, recipients: Recipients::Only };
    store.finish(bob, &mid("m1"), finish).unwrap();
    assert_eq!(store.trace(bob, &mid("m1")).unwrap(), Some(newer.clone()));
    newer
}

fn the_trace_of_a_reused_message_id_stays_findable_when_its_old_entry_is_evicted(store: &dyn Store) {
    let bob = uid("bob");
    let newer = finish_reused_id(store, &bob);
    // Two more: with `keep` 3, the oldest entry goes (if the store kept two for m1).
    store.upsert_trace(&bob, &trace_entry("m2", 51, "push"), 3).unwrap();
    store.upsert_trace(&bob, &trace_entry("m3", 52, "push"), 3).unwrap();
    assert_eq!(store.trace(&bob, &mid("m1")).unwrap(), Some(newer));
    assert_eq!(trace_ids(store, "bob", 10), ["m3", "m2", "m1"]);
}

fn the_trace_of_a_reused_message_id_stays_findable_when_its_old_entry_is_swept(store: &dyn Store) {
    let bob = uid("bob");
    let newer = finish_reused_id(store, &bob);
    store.sweep(at(10)).unwrap();
    assert_eq!(store.trace(&bob, &mid("m1")).unwrap(), Some(newer));
    assert_eq!(trace_ids(store, "bob", 10), ["m1"]);
}

fn upserting_a_trace_replaces_the_entry_of_its_message(store: &dyn Store) {
    let bob = uid("bob");
    store.upsert_trace(&bob, &trace_entry("m1", 1, "wait"), 10).unwrap();
    store.upsert_trace(&bob, &trace_entry("m2", 2, "push"), 10).unwrap();
    let updated = trace_entry("m1", 3, "acked");
    store.upsert_trace(&bob, &updated, 10).unwrap();

    assert_eq!(store.trace(&bob, &mid("m1")).unwrap(), Some(updated.clone()));
    let all = store.traces(&bob, 10).unwrap();
    assert_eq!(all.len(), 2, "an upsert added a second entry for m1: {all:?}");
    assert_eq!(all.iter().filter(|t| t.message_id == mid("m1")).collect::<Vec<_>>(), vec![&updated]);
    // Replacing an entry keeps its place: it is as old as its message.
    assert_eq!(trace_ids(store, "bob", 10), ["m2", "m1"]);
}

fn traces_come_newest_first_and_only_the_newest_keep_survive(store: &dyn Store) {
    let bob = uid("bob");
    let keep = 3;
    for i in 1..=5 {
        store.upsert_trace(&bob, &trace_entry(&format!("m{i}"), i, "push"), keep).unwrap();
    }
    assert_eq!(trace_ids(store, "bob", 10), ["m5", "m4", "m3"]);
    assert_eq!(trace_ids(store, "bob", 2), ["m5", "m4"], "limit");
    assert!(trace_ids(store, "bob", 0).is_empty());
    for i in 3..=5 {
        let id = format!("m{i}");
        assert_eq!(store.trace(&bob, &mid(&id)).unwrap(), Some(trace_entry(&id, i, "push")), "{id} survives");
    }
    for gone in ["m1", "m2"] {
        assert_eq!(store.trace(&bob, &mid(gone)).unwrap(), None, "{gone} was evicted");
    }

    // Replacing a surviving entry does not evict anything; a new one evicts the oldest.
    store.upsert_trace(&bob, &trace_entry("m3", 3, "acked"), keep).unwrap();
    assert_eq!(trace_ids(store, "bob", 10), ["m5", "m4", "m3"]);
    store.upsert_trace(&bob, &trace_entry("m6", 6, "push"), keep).unwrap();
    assert_eq!(trace_ids(store, "bob", 10), ["m6", "m5", "m4"]);
    assert_eq!(store.trace(&bob, &mid("m3")).unwrap(), None);

    // An evicted message coming back is a new entry, the newest.
    store.upsert_trace(&bob, &trace_entry("m1", 7, "push"), keep).unwrap();
    assert_eq!(trace_ids(store, "bob", 10), ["m1", "m6", "m5"]);
    assert_eq!(store.trace(&bob, &mid("m1")).unwrap(), Some(trace_entry("m1", 7, "push")));

    // Another user's traces are kept separately.
    store.upsert_trace(&uid("carol"), &trace_entry("m9", 9, "push"), keep).unwrap();
    assert_eq!(trace_ids(store, "bob", 10), ["m1", "m6", "m5"]);
    assert_eq!(trace_ids(store, "carol", 10), ["m9"]);
}

fn sweep_removes_what_is_older_than_the_cutoff_and_keeps_the_rest(store: &dyn Store) {
    let (bob, phone) = (uid("bob"), did("phone"));
    store.mark_pushed(&bob, &mid("old"), &phone, at(100)).unwrap();
    store.mark_pushed(&bob, &mid("edge"), &phone, at(200)).unwrap();
    store.mark_pushed(&bob, &mid("new"), &phone, at(300)).unwrap();
    store.mark_pushed(&uid("carol"), &mid("old"), &phone, at(150)).unwrap();
    for (id, t) in [("old", 100), ("edge", 200), ("new", 300)] {
        assert_eq!(store.accept_message(&message(id, &["bob"], t)).unwrap(), Intake::New);
        store.complete(&mid(id), &bob, Recipients::Several).unwrap();
        store.upsert_trace(&bob, &trace_entry(id, t, "push"), 10).unwrap();
    }
    store.upsert_trace(&uid("carol"), &trace_entry("old", 150, "push"), 10).unwrap();

    let swept = store.sweep(at(200)).unwrap();
    assert_eq!(swept, Swept { dedup: 2, accepted_ids: 1, traces: 2 });

    // Dedup records.
    assert!(!store.was_pushed(&bob, &mid("old"), &phone).unwrap());
    assert!(!store.was_pushed(&uid("carol"), &mid("old"), &phone).unwrap());
    assert!(store.was_pushed(&bob, &mid("edge"), &phone).unwrap(), "a record at the cutoff is not before it");
    assert!(store.was_pushed(&bob, &mid("new"), &phone).unwrap());
    // Accepted ids: the newer ones are still duplicates.
    assert_eq!(store.accept_message(&message("edge", &["bob"], 400)).unwrap(), Intake::Duplicate);
    assert_eq!(store.accept_message(&message("new", &["bob"], 400)).unwrap(), Intake::Duplicate);
    // Traces: gone from both the lookup and the listing.
    assert_eq!(store.trace(&bob, &mid("old")).unwrap(), None);
    assert_eq!(store.trace(&uid("carol"), &mid("old")).unwrap(), None);
    assert_eq!(store.trace(&bob, &mid("edge")).unwrap(), Some(trace_entry("edge", 200, "push")));
    assert_eq!(trace_ids(store, "bob", 10), ["new", "edge"]);
    assert!(store.traces(&uid("carol"), 10).unwrap().is_empty());

    // Sweeping again finds nothing more; newer traces keep their order after a sweep.
    assert_eq!(store.sweep(at(200)).unwrap(), Swept::default());
    store.upsert_trace(&bob, &trace_entry("newest", 500, "push"), 10).unwrap();
    assert_eq!(trace_ids(store, "bob", 10), ["newest", "new", "edge"]);
}

fn a_swept_accepted_id_can_be_accepted_again(store: &dyn Store) {
    let bob = uid("bob");
    assert_eq!(store.accept_message(&message("m1", &["bob"], 100)).unwrap(), Intake::New);
    store.complete(&mid("m1"), &bob, Recipients::Several).unwrap();
    assert_eq!(store.accept_message(&message("m1", &["bob"], 150)).unwrap(), Intake::Duplicate);

    assert_eq!(store.sweep(at(200)).unwrap().accepted_ids, 1);
    let again = message("m1", &["bob", "carol"], 300);
    assert_eq!(store.accept_message(&again).unwrap(), Intake::New);
    assert_eq!(store.pending().unwrap(), vec![(again.clone(), vec![uid("bob"), uid("carol")])]);
    assert_eq!(store.accept_message(&again).unwrap(), Intake::Duplicate);
}

fn sync_resolves_ok_for_one_caller_and_for_many_at_once(store: &dyn Store) {
    store.put_badge(&uid("bob"), 1).unwrap();
    block_on(store.sync()).expect("sync");
    for i in 0..20 {
        store.put_badge(&uid(&format!("u{i}")), i).unwrap();
    }
    let waits: Vec<_> = (0..20).map(|_| store.sync()).collect();
    for result in block_on(futures_util::future::join_all(waits)) {
        result.expect("sync");
    }
    assert_eq!(store.badge(&uid("u19")).unwrap(), 19);
}

// ---- the embedded store persists ----

#[test]
fn every_record_kind_survives_reopening_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let (bob, carol) = (uid("bob"), uid("carol"));
    let conv = ConversationId::parse("c-1").unwrap();
    let phone = device("phone", "test-fcm", Some("tok-phone"));
    let tablet = device("tablet", "test-fcm", None);
    let online = PresenceRecord { presence: Presence::Kicked, at: at(5) };
    let m1 = message("m1", &["bob", "carol"], 10);
    let m2 = message("m2", &["bob"], 11);
    {
        let store = open_embedded(dir.path());
        store.put_device(&bob, &phone).unwrap();
        store.put_device(&bob, &tablet).unwrap();
        store.put_presence(&bob, &did("phone"), online).unwrap();
        store.put_user_settings(&bob, &settings("Bob")).unwrap();
        store.put_conversation_settings(&bob, &conv, &settings("in c-1")).unwrap();
        store.put_badge(&bob, 42).unwrap();
        store.put_template("welcome", &template("Hi")).unwrap();
        store.mark_pushed(&bob, &mid("m0"), &did("phone"), at(9)).unwrap();
        for i in 1..=4 {
            store.upsert_trace(&bob, &trace_entry(&format!("t{i}"), i, "push"), 3).unwrap();
        }
        assert_eq!(store.accept_message(&m1).unwrap(), Intake::New);
        assert_eq!(store.accept_message(&m2).unwrap(), Intake::New);
        store.complete(&mid("m1"), &carol, Recipients::Several).unwrap();
        store.complete(&mid("m2"), &bob, Recipients::Several).unwrap();
        block_on(store.sync()).expect("sync");
    }

    let store = open_embedded(dir.path());
    assert_eq!(sorted_devices(&store, "bob"), vec![phone, tablet]);
    assert_eq!(owner(&store, "test-fcm", "tok-phone"), some_owner("bob", "phone"));
    assert_eq!(store.presences(&bob).unwrap(), vec![(did("phone"), online)]);
    assert_eq!(store.user_settings(&bob).unwrap(), settings("Bob"));
    assert_eq!(store.conversation_settings(&bob, &conv).unwrap(), Some(settings("in c-1")));
    assert_eq!(store.badge(&bob).unwrap(), 42);
    assert_eq!(store.templates().unwrap(), vec![("welcome".to_owned(), template("Hi"))]);
    assert!(store.was_pushed(&bob, &mid("m0"), &did("phone")).unwrap());
    assert_eq!(trace_ids(&store, "bob", 10), ["t4", "t3", "t2"]);
    assert_eq!(store.trace(&bob, &mid("t2")).unwrap(), Some(trace_entry("t2", 2, "push")));
    assert_eq!(store.trace(&bob, &mid("t1")).unwrap(), None);
    // The journal: m1 still pending for bob only; m2 done; both ids remembered.
    assert_eq!(store.pending().unwrap(), vec![(m1.clone(), vec![bob.clone()])]);
    assert_eq!(store.accept_message(&m1).unwrap(), Intake::Duplicate);
    assert_eq!(store.accept_message(&m2).unwrap(), Intake::Duplicate);

    // Writing after a reopen continues where the store left off.
    store.upsert_trace(&bob, &trace_entry("t5", 5, "push"), 3).unwrap();
    assert_eq!(trace_ids(&store, "bob", 10), ["t5", "t4", "t3"]);
    store.complete(&mid("m1"), &bob, Recipients::Several).unwrap();
    assert!(store.pending().unwrap().is_empty());
}

#[test]
fn writes_survive_dropping_the_embedded_store_without_an_explicit_sync() {
    let dir = tempfile::tempdir().unwrap();
    let bob = uid("bob");
    {
        let store = open_embedded(dir.path());
        store.put_badge(&bob, 9).unwrap();
        store.put_template("urgent", &template("Now")).unwrap();
        assert_eq!(store.accept_message(&message("m1", &["bob"], 1)).unwrap(), Intake::New);
        // A finish is one write batch, left buffered like the others until the sync thread.
        assert_eq!(store.accept_message(&message("m2", &["bob"], 2)).unwrap(), Intake::New);
        let entry = trace_entry("m2", 3, "push");
        let finish =
            Finish { trace: Some(&entry), trace_new: true, keep: 10, badge: Some(10), recipients: Recipients::Only };
        store.finish(&bob, &mid("m2"), finish).unwrap();
    }
    let store = open_embedded(dir.path());
    assert_eq!(store.badge(&bob).unwrap(), 10);
    assert_eq!(store.templates().unwrap(), vec![("urgent".to_owned(), template("Now"))]);
    assert_eq!(pending_ids(&store), vec![("m1".to_owned(), vec!["bob".to_owned()])]);
    assert_eq!(trace_ids(&store, "bob", 10), ["m2"]);
}

#[test]
fn a_sweep_survives_reopening_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let bob = uid("bob");
    {
        let store = open_embedded(dir.path());
        store.mark_pushed(&bob, &mid("old"), &did("phone"), at(1)).unwrap();
        store.mark_pushed(&bob, &mid("new"), &did("phone"), at(300)).unwrap();
        store.upsert_trace(&bob, &trace_entry("old", 1, "push"), 10).unwrap();
        store.upsert_trace(&bob, &trace_entry("new", 300, "push"), 10).unwrap();
        assert_eq!(store.accept_message(&message("old", &["bob"], 1)).unwrap(), Intake::New);
        // Done, so its id may expire (a pending message keeps it).
        store.complete(&mid("old"), &bob, Recipients::Several).unwrap();
        assert_eq!(store.sweep(at(200)).unwrap(), Swept { dedup: 1, accepted_ids: 1, traces: 1 });
        block_on(store.sync()).expect("sync");
    }
    let store = open_embedded(dir.path());
    assert!(!store.was_pushed(&bob, &mid("old"), &did("phone")).unwrap());
    assert!(store.was_pushed(&bob, &mid("new"), &did("phone")).unwrap());
    assert_eq!(trace_ids(&store, "bob", 10), ["new"]);
    assert_eq!(store.trace(&bob, &mid("old")).unwrap(), None);
}

#[test]
fn traces_stored_before_the_trace_counters_existed_go_on_in_order() {
    let f = embedded_fixture();
    let (store, bob) = (&f.0, uid("bob"));
    let keep = 3;
    for i in 1..=3 {
        store.upsert_trace(&bob, &trace_entry(&format!("m{i}"), i, "push"), keep).unwrap();
    }
    // As a store written by an earlier pushd has them: entries and index, no counters.
    store.forget_trace_counters(&bob);
    store.upsert_trace(&bob, &trace_entry("m4", 4, "push"), keep).unwrap();
    assert_eq!(trace_ids(store, "bob", 10), ["m4", "m3", "m2"]);
    assert_eq!(store.trace(&bob, &mid("m1")).unwrap(), None, "the oldest was evicted");
    store.upsert_trace(&bob, &trace_entry("m5", 5, "push"), keep).unwrap();
    assert_eq!(trace_ids(store, "bob", 10), ["m5", "m4", "m3"]);
    // A user whose every entry was swept starts over without counters too.
    store.forget_trace_counters(&bob);
    assert_eq!(store.sweep(at(10)).unwrap().traces, 3);
    store.upsert_trace(&bob, &trace_entry("m6", 11, "push"), keep).unwrap();
    assert_eq!(trace_ids(store, "bob", 10), ["m6"]);
}

#[test]
fn a_one_to_one_message_with_the_mark_of_an_earlier_version_replays_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let bob = uid("bob");
    {
        let store = open_embedded(dir.path());
        assert_eq!(store.accept_message(&message("old", &["bob"], 1)).unwrap(), Intake::New);
        store.add_pending_mark(&mid("old"), &bob);
        assert_eq!(store.accept_message(&message("new", &["bob"], 2)).unwrap(), Intake::New);
        assert_eq!(store.journal_len(), 3, "the earlier mark, and two entries: a 1:1 message has no mark of its own");
    }
    let store = open_embedded(dir.path());
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(pending_ids(&store), vec![("new".into(), strs(&["bob"])), ("old".into(), strs(&["bob"]))]);
    // A replayed message completes as `Several` (its mark may exist); nothing is left behind.
    store.complete(&mid("old"), &bob, Recipients::Several).unwrap();
    store.complete(&mid("new"), &bob, Recipients::Several).unwrap();
    assert!(store.pending().unwrap().is_empty());
    assert_eq!(store.journal_len(), 0);
}

#[test]
fn traces_of_an_earlier_version_are_read_replaced_evicted_and_swept() {
    let (store, _dir) = embedded_fixture();
    let bob = uid("bob");
    for i in 1..=3 {
        store.add_legacy_trace(&bob, i as u64 - 1, &trace_entry(&format!("m{i}"), 100 + i, "push"));
    }
    assert_eq!(trace_ids(&store, "bob", 10), ["m3", "m2", "m1"]);
    // Replacing, evicting and finding go by the entries themselves, JSON or not.
    store.upsert_trace(&bob, &trace_entry("m2", 110, "acked"), 3).unwrap();
    store.upsert_trace(&bob, &trace_entry("m4", 111, "push"), 3).unwrap();
    assert_eq!(trace_ids(&store, "bob", 10), ["m4", "m3", "m2"]);
    assert_eq!(store.trace(&bob, &mid("m2")).unwrap(), Some(trace_entry("m2", 110, "acked")));
    assert_eq!(store.trace(&bob, &mid("m1")).unwrap(), None);
    assert_eq!(store.traces_len(), 3 + 3 + 1, "three entries, three index keys, the counters");
    // The sweep takes the index keys, whatever their age, and leaves the newer entries.
    let swept = store.sweep(at(105)).unwrap();
    assert_eq!(swept.traces, 1, "m3 (decided at 103)");
    assert_eq!(trace_ids(&store, "bob", 10), ["m4", "m2"]);
    assert_eq!(store.traces_len(), 2 + 1);
}

/// An embedded store in a fresh directory (removed on drop, after the store).
fn embedded_fixture() -> (EmbeddedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    (open_embedded(dir.path()), dir)
}

fn a_sweep_keeps_the_id_of_a_message_still_pending(store: &dyn Store) {
    let m = message("pending-1", &["bob", "carol"], 1_000);
    assert_eq!(store.accept_message(&m).unwrap(), Intake::New);
    store.complete(&m.id, &uid("bob"), Recipients::Several).unwrap();
    store.sweep(m.accepted_at + chrono::Duration::days(10)).unwrap();
    assert_eq!(store.accept_message(&m).unwrap(), Intake::Duplicate, "still pending for carol");
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1, vec![uid("carol")]);
}

#[test]
fn an_embedded_store_that_can_no_longer_write_reports_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_embedded(dir.path());
    assert!(store.health().is_ok());
    // The keyspaces' folder vanishes (a disk gone bad, an operator's mistake): the next
    // memtable flush, past 8 MiB of traces, fails in fjall's worker, which poisons the store.
    std::fs::remove_dir_all(dir.path().join("keyspaces")).expect("remove keyspaces");
    let bob = uid("bob");
    let mut entry = trace_entry("m", 1, "push");
    entry.conversation_id = "x".repeat(64 * 1024);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while store.health().is_ok() {
        assert!(std::time::Instant::now() < deadline, "the store still says healthy after {n} writes");
        entry.message_id = mid(&format!("m{n}"));
        // Writes fail too once the store is poisoned; the loop then ends on health.
        let _ = store.upsert_trace(&bob, &entry, 100_000);
        n += 1;
        if n > 2_000 {
            // Past 128 MiB written, wait for the flush worker instead of writing more.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let e = store.health().expect_err("unhealthy");
    assert!(e.to_string().contains("store failed"), "{e}");
    assert!(store.upsert_trace(&bob, &entry, 100_000).is_err(), "writes are refused too");
}
