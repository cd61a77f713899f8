//! Tests of the push rules: one table row per rule of product.md §2, a table of DND windows, and
//! proptest invariants over random recipients, settings and instants.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;
use crate::model::{
    ChatSettings, Conversation, ConversationId, ConversationKind, DeviceId, DndWindow, Force, Message, MessageId,
    MessageKind, MultiDevicePolicy, Presence, PushMode, PushOptions, Sender, Timestamp, UserId,
};

use Presence::{Kicked, Offline, Online};
use Verdict::{Push, Stop, Wait};

/// The recipient of every case.
const USER: &str = "alice";

fn uid(s: &str) -> UserId {
    UserId::parse(s).expect("test ids are valid literals")
}

fn utc(rfc3339: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(rfc3339).expect("test instants are valid literals").with_timezone(&Utc)
}

fn window(from: &str, to: &str) -> DndWindow {
    DndWindow::parse(from, to).expect("test windows are valid literals")
}

/// One offline device with a token, not yet pushed: the device that gets a push by default.
#[derive(Debug, Clone, Copy)]
struct Dev {
    presence: Presence,
    has_token: bool,
    already_pushed: bool,
}

const fn dev(presence: Presence) -> Dev {
    Dev { presence, has_token: true, already_pushed: false }
}

/// Everything `decide` looks at, owned, so that tables and proptest can build it by value.
#[derive(Debug, Clone)]
struct Case {
    devices: Vec<Dev>,
    user_settings: ChatSettings,
    conversation_settings: Option<ChatSettings>,
    timezone: Tz,
    kind: ConversationKind,
    mentions_user: bool,
    mentions_other: bool,
    mention_all: bool,
    force: Force,
    cfg: PolicyConfig,
    now: Timestamp,
}

impl Default for Case {
    /// One offline device, a group message, no settings, operator defaults, a plain Tuesday noon.
    fn default() -> Self {
        Self {
            devices: vec![dev(Offline)],
            user_settings: ChatSettings::default(),
            conversation_settings: None,
            timezone: Tz::UTC,
            kind: ConversationKind::Group,
            mentions_user: false,
            mentions_other: false,
            mention_all: false,
            force: Force::Nobody,
            cfg: PolicyConfig {
                multi_device: MultiDevicePolicy::AllOffline,
                push_chatrooms: false,
                default_push_mode: PushMode::All,
            },
            now: utc("2026-11-24T12:00:00Z"),
        }
    }
}

impl Case {
    fn message(&self) -> Message {
        let mut mentions = Vec::new();
        if self.mentions_other {
            mentions.push(uid("bob"));
        }
        if self.mentions_user {
            mentions.push(uid(USER));
        }
        Message {
            id: MessageId::parse("m1").expect("literal"),
            from: Sender { id: uid("carol"), name: None },
            conversation: Conversation {
                id: ConversationId::parse("c1").expect("literal"),
                kind: self.kind,
                name: None,
            },
            to: vec![uid(USER)],
            kind: MessageKind::Text,
            text: Some("hi".to_owned()),
            mentions,
            mention_all: self.mention_all,
            push: PushOptions { force: self.force.clone(), ..PushOptions::default() },
            accepted_at: self.now,
        }
    }

    fn device_ids(&self) -> Vec<DeviceId> {
        (0..self.devices.len()).map(|i| DeviceId::parse(&format!("d{i}")).expect("literal")).collect()
    }

    fn run(&self) -> Decision {
        let user = uid(USER);
        let ids = self.device_ids();
        let views: Vec<DeviceView<'_>> = self
            .devices
            .iter()
            .zip(&ids)
            .map(|(d, id)| DeviceView {
                id,
                presence: d.presence,
                has_token: d.has_token,
                already_pushed: d.already_pushed,
            })
            .collect();
        let recipient = Recipient {
            user: &user,
            devices: &views,
            user_settings: &self.user_settings,
            conversation_settings: self.conversation_settings.as_ref(),
            timezone: self.timezone,
        };
        decide(&self.message(), &recipient, &self.cfg, self.now)
    }

    fn verdicts(&self) -> Vec<Verdict> {
        self.run().devices.iter().map(|d| d.verdict).collect()
    }

    // Builders for readable table rows.
    fn devices(mut self, devices: &[Dev]) -> Self {
        self.devices = devices.to_vec();
        self
    }
    fn any_offline(mut self) -> Self {
        self.cfg.multi_device = MultiDevicePolicy::AnyOffline;
        self
    }
    fn kind(mut self, kind: ConversationKind) -> Self {
        self.kind = kind;
        self
    }
    fn user_mode(mut self, mode: PushMode) -> Self {
        self.user_settings.push_mode = Some(mode);
        self
    }
    fn conversation(mut self, settings: ChatSettings) -> Self {
        self.conversation_settings = Some(settings);
        self
    }
    fn user_dnd(mut self, from: &str, to: &str) -> Self {
        self.user_settings.dnd = Some(window(from, to));
        self
    }
    fn user_dnd_until(mut self, until: &str) -> Self {
        self.user_settings.dnd_until = Some(utc(until));
        self
    }
    fn zone(mut self, tz: Tz) -> Self {
        self.timezone = tz;
        self
    }
    fn at(mut self, now: &str) -> Self {
        self.now = utc(now);
        self
    }
    fn force(mut self, force: Force) -> Self {
        self.force = force;
        self
    }
}

fn mode(mode: PushMode) -> ChatSettings {
    ChatSettings { push_mode: Some(mode), ..ChatSettings::default() }
}

struct Row {
    name: &'static str,
    case: Case,
    want: Vec<Verdict>,
    badge: bool,
}

fn row(name: &'static str, case: Case, want: &[Verdict], badge: bool) -> Row {
    Row { name, case, want: want.to_vec(), badge }
}

fn table() -> Vec<Row> {
    let base = Case::default;
    let no_token = Dev { has_token: false, ..dev(Offline) };
    let pushed = Dev { already_pushed: true, ..dev(Offline) };
    vec![
        row("an offline device with a token is pushed", base(), &[Push], true),
        // Presence and multi-device policy.
        row(
            "all_offline: one online device stops every offline device",
            base().devices(&[dev(Online), dev(Offline)]),
            &[Wait, Stop(Rule::Presence)],
            false,
        ),
        row(
            "any_offline: offline devices are pushed while another is online",
            base().any_offline().devices(&[dev(Online), dev(Offline)]),
            &[Wait, Push],
            true,
        ),
        row(
            "all_offline: every offline device is pushed",
            base().devices(&[dev(Offline), dev(Offline)]),
            &[Push, Push],
            true,
        ),
        row(
            "a kicked device is never pushed, the others are",
            base().devices(&[dev(Kicked), dev(Offline)]),
            &[Stop(Rule::Kicked), Push],
            true,
        ),
        row(
            "a kicked device is not pushed under any_offline either",
            base().any_offline().devices(&[dev(Kicked), dev(Online)]),
            &[Stop(Rule::Kicked), Wait],
            false,
        ),
        row(
            "an online device waits even without a token",
            base().devices(&[Dev { presence: Online, ..no_token }]),
            &[Wait],
            false,
        ),
        row(
            "an offline device without a token is not pushed",
            base().devices(&[no_token]),
            &[Stop(Rule::NoToken)],
            false,
        ),
        row(
            "a device already pushed for this message is not pushed again",
            base().devices(&[pushed, dev(Offline)]),
            &[Stop(Rule::Duplicate), Push],
            true,
        ),
        // Chatrooms.
        row(
            "chatroom messages are not pushed by default, whatever the device",
            base().kind(ConversationKind::Chatroom).devices(&[dev(Offline), dev(Online), dev(Kicked)]),
            &[Stop(Rule::Chatroom); 3],
            false,
        ),
        row(
            "chatroom messages are not pushed even when forced",
            base().kind(ConversationKind::Chatroom).force(Force::Everyone),
            &[Stop(Rule::Chatroom)],
            false,
        ),
        row(
            "chatroom messages are pushed when the operator enables it",
            Case { cfg: PolicyConfig { push_chatrooms: true, ..base().cfg }, ..base() }
                .kind(ConversationKind::Chatroom),
            &[Push],
            true,
        ),
        // Push mode.
        row(
            "user push mode none stops the push but counts toward the badge",
            base().user_mode(PushMode::None),
            &[Stop(Rule::PushMode)],
            true,
        ),
        row(
            "operator default push mode none applies when the user set nothing",
            Case { cfg: PolicyConfig { default_push_mode: PushMode::None, ..base().cfg }, ..base() },
            &[Stop(Rule::PushMode)],
            true,
        ),
        row(
            "user push mode wins over the operator default",
            Case { cfg: PolicyConfig { default_push_mode: PushMode::None, ..base().cfg }, ..base() }
                .user_mode(PushMode::All),
            &[Push],
            true,
        ),
        row(
            "conversation push mode all wins over user push mode none",
            base().user_mode(PushMode::None).conversation(mode(PushMode::All)),
            &[Push],
            true,
        ),
        row(
            "conversation push mode none wins over user push mode all",
            base().user_mode(PushMode::All).conversation(mode(PushMode::None)),
            &[Stop(Rule::PushMode)],
            true,
        ),
        row(
            "conversation settings without a push mode fall back to the user's",
            base().user_mode(PushMode::None).conversation(ChatSettings::default()),
            &[Stop(Rule::PushMode)],
            true,
        ),
        row(
            "mentions mode stops an unmentioned group message",
            Case { mentions_other: true, ..base() }.user_mode(PushMode::Mentions),
            &[Stop(Rule::PushMode)],
            true,
        ),
        row(
            "mentions mode pushes a group message that mentions the user",
            Case { mentions_user: true, ..base() }.user_mode(PushMode::Mentions),
            &[Push],
            true,
        ),
        row(
            "mentions mode pushes a group message that mentions everyone",
            Case { mention_all: true, ..base() }.user_mode(PushMode::Mentions),
            &[Push],
            true,
        ),
        row(
            "mentions mode pushes every single-conversation message",
            base().kind(ConversationKind::Single).user_mode(PushMode::Mentions),
            &[Push],
            true,
        ),
        // Do not disturb.
        row(
            "DND window across midnight stops a push inside it",
            base().user_dnd("22:00", "08:00").at("2026-11-24T23:30:00Z"),
            &[Stop(Rule::Dnd)],
            true,
        ),
        row(
            "DND window across midnight stops a push after midnight",
            base().user_dnd("22:00", "08:00").at("2026-11-24T07:59:00Z"),
            &[Stop(Rule::Dnd)],
            true,
        ),
        row(
            "DND window across midnight lets a push outside it through",
            base().user_dnd("22:00", "08:00").at("2026-11-24T08:00:00Z"),
            &[Push],
            true,
        ),
        row(
            "DND window is read in the user's zone",
            // 13:30 UTC is 22:30 in Tokyo: inside, though outside in UTC terms.
            base().user_dnd("22:00", "08:00").zone(chrono_tz::Asia::Tokyo).at("2026-11-24T13:30:00Z"),
            &[Stop(Rule::Dnd)],
            true,
        ),
        row("DND window with from equal to to is all day", base().user_dnd("09:15", "09:15"), &[Stop(Rule::Dnd)], true),
        row(
            "DND window 00:00-24:00 is all day, up to the last minute",
            base().user_dnd("00:00", "24:00").at("2026-11-24T23:59:59Z"),
            &[Stop(Rule::Dnd)],
            true,
        ),
        row(
            "DND on the spring-forward day in New York uses daylight time after the switch",
            // 2026-03-08: 02:00 EST jumps to 03:00 EDT. 07:30 UTC is 03:30 EDT (02:30 if the
            // zone's standard offset were wrongly kept), outside 01:00–03:00.
            base().user_dnd("01:00", "03:00").zone(chrono_tz::America::New_York).at("2026-03-08T07:30:00Z"),
            &[Push],
            true,
        ),
        row(
            "DND on the spring-forward day in New York still applies before the switch",
            // 06:30 UTC is 01:30 EST.
            base().user_dnd("01:00", "03:00").zone(chrono_tz::America::New_York).at("2026-03-08T06:30:00Z"),
            &[Stop(Rule::Dnd)],
            true,
        ),
        row(
            "DND on the fall-back day in Berlin covers both passes of the repeated hour",
            // 2026-10-25: 03:00 CEST falls back to 02:00 CET. 01:30 UTC is 02:30 CET, the second
            // pass; with the summer offset it would read 03:30, outside 02:00–03:00.
            base().user_dnd("02:00", "03:00").zone(chrono_tz::Europe::Berlin).at("2026-10-25T01:30:00Z"),
            &[Stop(Rule::Dnd)],
            true,
        ),
        row("DND until a past instant no longer applies", base().user_dnd_until("2026-11-24T11:59:59Z"), &[Push], true),
        row(
            "DND until a future instant stops the push",
            base().user_dnd_until("2026-11-24T12:30:00Z"),
            &[Stop(Rule::Dnd)],
            true,
        ),
        row(
            "conversation DND window stops the push though the user has none",
            base().conversation(ChatSettings { dnd: Some(window("11:00", "13:00")), ..ChatSettings::default() }),
            &[Stop(Rule::Dnd)],
            true,
        ),
        row(
            "conversation DND until stops the push though the user has none",
            base()
                .conversation(ChatSettings { dnd_until: Some(utc("2026-11-25T00:00:00Z")), ..ChatSettings::default() }),
            &[Stop(Rule::Dnd)],
            true,
        ),
        row(
            "push mode is reported before DND",
            base().user_mode(PushMode::None).user_dnd("00:00", "24:00"),
            &[Stop(Rule::PushMode)],
            true,
        ),
        // Force push.
        row("force overrides DND", base().user_dnd("00:00", "24:00").force(Force::Everyone), &[Push], true),
        row(
            "force overrides push mode none",
            base().conversation(mode(PushMode::None)).force(Force::Users(vec![uid(USER)])),
            &[Push],
            true,
        ),
        row(
            "force overrides mentions mode",
            base().user_mode(PushMode::Mentions).force(Force::Everyone),
            &[Push],
            true,
        ),
        row(
            "force for other users does not override DND",
            base().user_dnd("00:00", "24:00").force(Force::Users(vec![uid("bob")])),
            &[Stop(Rule::Dnd)],
            true,
        ),
        row(
            "force does not override presence, kicked, token or duplicate",
            base().user_mode(PushMode::None).force(Force::Everyone).devices(&[
                dev(Online),
                dev(Kicked),
                no_token,
                pushed,
                dev(Offline),
            ]),
            &[Wait, Stop(Rule::Kicked), Stop(Rule::NoToken), Stop(Rule::Duplicate), Stop(Rule::Presence)],
            false,
        ),
        // Badge counting.
        row("a user with no devices has nothing pushed and no badge", base().devices(&[]), &[], false),
        row(
            "a user who is online gets no badge",
            base().any_offline().devices(&[dev(Online), no_token]),
            &[Wait, Stop(Rule::NoToken)],
            false,
        ),
        row(
            "DND on one device still counts toward the badge though the other is a duplicate",
            base().user_dnd("00:00", "24:00").devices(&[pushed, dev(Offline)]),
            &[Stop(Rule::Duplicate), Stop(Rule::Dnd)],
            true,
        ),
    ]
}

#[test]
fn every_table_row_gets_its_expected_verdicts_and_badge() {
    let mut failures = Vec::new();
    for r in table() {
        let decision = r.case.run();
        let got: Vec<Verdict> = decision.devices.iter().map(|d| d.verdict).collect();
        if got != r.want || decision.counts_toward_badge != r.badge {
            failures.push(format!(
                "{}: want {:?} badge {}, got {:?} badge {}",
                r.name, r.want, r.badge, got, decision.counts_toward_badge
            ));
        }
    }
    assert!(failures.is_empty(), "{} row(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_table_exercises_every_rule_and_names_rows_uniquely() {
    let rows = table();
    for rule in Rule::ALL {
        assert!(rows.iter().any(|r| r.want.contains(&Stop(*rule))), "no table row stops on {rule}");
    }
    let mut names: Vec<&str> = rows.iter().map(|r| r.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "duplicate row names");
}

#[test]
fn forced_is_set_only_for_the_users_the_message_forces() {
    assert!(Case::default().force(Force::Everyone).run().forced);
    assert!(Case::default().force(Force::Users(vec![uid(USER)])).run().forced);
    assert!(!Case::default().force(Force::Users(vec![uid("bob")])).run().forced);
    assert!(!Case::default().run().forced);
}

#[test]
fn pushes_and_waiting_list_devices_in_input_order() {
    let d = Case::default().any_offline().devices(&[dev(Offline), dev(Online), dev(Offline), dev(Online)]).run();
    let pushes: Vec<&str> = d.pushes().map(DeviceId::as_str).collect();
    let waiting: Vec<&str> = d.waiting().map(DeviceId::as_str).collect();
    assert_eq!(pushes, ["d0", "d2"]);
    assert_eq!(waiting, ["d1", "d3"]);
}

#[test]
fn rule_labels_are_the_trace_vocabulary() {
    let labels: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels, ["chatroom", "kicked", "no_token", "duplicate", "presence", "push_mode", "dnd"]);
    assert_eq!(Rule::PushMode.to_string(), "push_mode");
}

#[test]
fn dnd_windows_match_the_wall_clock_of_the_zone() {
    use chrono_tz::{America, Asia, Australia, Europe};
    // (name, from, to, zone, instant, inside). One row a line: the table reads as a table.
    #[rustfmt::skip]
    let rows: &[(&str, &str, &str, Tz, &str, bool)] = &[
        ("start minute is inside", "22:00", "08:00", Tz::UTC, "2026-01-01T22:00:00Z", true),
        ("end minute is outside", "22:00", "08:00", Tz::UTC, "2026-01-01T08:00:00Z", false),
        ("midday is outside a night window", "22:00", "08:00", Tz::UTC, "2026-01-01T12:00:00Z", false),
        ("just before midnight is inside", "22:00", "08:00", Tz::UTC, "2026-01-01T23:59:59Z", true),
        ("midnight is inside", "22:00", "08:00", Tz::UTC, "2026-01-02T00:00:00Z", true),
        ("same-day window includes its start", "09:00", "17:00", Tz::UTC, "2026-01-01T09:00:00Z", true),
        ("same-day window excludes its end", "09:00", "17:00", Tz::UTC, "2026-01-01T17:00:00Z", false),
        ("from equal to to is all day", "08:00", "08:00", Tz::UTC, "2026-01-01T03:00:00Z", true),
        ("00:00-24:00 covers midnight", "00:00", "24:00", Tz::UTC, "2026-01-01T00:00:00Z", true),
        ("00:00-24:00 covers the last minute", "00:00", "24:00", Tz::UTC, "2026-01-01T23:59:00Z", true),
        ("an evening window to 24:00 ends at midnight", "20:00", "24:00", Tz::UTC, "2026-01-02T00:00:00Z", false),
        ("an evening window to 24:00 covers 23:59", "20:00", "24:00", Tz::UTC, "2026-01-01T23:59:00Z", true),
        ("Kolkata: 16:45 UTC reads 22:15 IST", "22:00", "22:30", Asia::Kolkata, "2026-01-01T16:45:00Z", true),
        ("Kolkata: 16:29 UTC reads 21:59 IST", "22:00", "22:30", Asia::Kolkata, "2026-01-01T16:29:00Z", false),
        // New York spring forward 2026-03-08 07:00 UTC: 02:00 EST -> 03:00 EDT.
        ("NY: 01:59 EST before the switch", "01:00", "02:00", America::New_York, "2026-03-08T06:59:00Z", true),
        ("NY: 03:00 EDT right after the switch", "03:00", "04:00", America::New_York, "2026-03-08T07:00:00Z", true),
        ("NY: the skipped hour never happens", "02:00", "03:00", America::New_York, "2026-03-08T07:00:00Z", false),
        // Berlin spring forward 2026-03-29 01:00 UTC: 02:00 CET -> 03:00 CEST.
        ("Berlin: 01:30 UTC reads 03:30 CEST", "03:00", "04:00", Europe::Berlin, "2026-03-29T01:30:00Z", true),
        // Berlin fall back 2026-10-25 01:00 UTC: 03:00 CEST -> 02:00 CET; 02:xx happens twice.
        ("Berlin: first 02:30 (CEST)", "02:00", "03:00", Europe::Berlin, "2026-10-25T00:30:00Z", true),
        ("Berlin: second 02:30 (CET)", "02:00", "03:00", Europe::Berlin, "2026-10-25T01:30:00Z", true),
        ("Berlin: 03:00 CET is past the window", "02:00", "03:00", Europe::Berlin, "2026-10-25T02:00:00Z", false),
        // Lord Howe shifts by 30 minutes: 2026-04-05 02:00 LHDT (+11) -> 01:30 LHST (+10:30).
        ("Lord Howe: 01:45 after a half-hour fall back", "01:30", "02:00", Australia::Lord_Howe, "2026-04-04T15:15:00Z", true),
    ];
    let failures: Vec<&str> = rows
        .iter()
        .filter(|(_, from, to, tz, at, inside)| in_dnd_window(window(from, to), *tz, utc(at)) != *inside)
        .map(|r| r.0)
        .collect();
    assert!(failures.is_empty(), "wrong rows: {failures:?}");
}

// ---- proptest invariants ----

fn presence() -> impl Strategy<Value = Presence> {
    prop::sample::select(Presence::ALL.to_vec())
}

fn device() -> impl Strategy<Value = Dev> {
    (presence(), any::<bool>(), any::<bool>()).prop_map(|(presence, has_token, already_pushed)| Dev {
        presence,
        has_token,
        already_pushed,
    })
}

fn zone() -> impl Strategy<Value = Tz> {
    use chrono_tz::{America, Asia, Australia, Europe, Pacific};
    prop::sample::select(vec![
        Tz::UTC,
        Europe::Berlin,
        America::New_York,
        Asia::Kolkata,
        Australia::Lord_Howe,
        Pacific::Chatham,
    ])
}

/// Any instant from 2020 to 2035, to the second.
fn instant() -> impl Strategy<Value = Timestamp> {
    (1_577_836_800i64..2_051_222_400).prop_map(|s| {
        // The range is far inside chrono's representable range.
        Utc.timestamp_opt(s, 0).single().expect("in range")
    })
}

fn dnd_window() -> impl Strategy<Value = DndWindow> {
    (0u16..1440, 0u16..=1440).prop_map(|(from, to)| DndWindow { from, to })
}

/// Settings relative to `now`: a mute-until offset in minutes, so past and future both occur.
fn settings() -> impl Strategy<Value = (Option<PushMode>, Option<DndWindow>, Option<i64>)> {
    (
        prop::option::of(prop::sample::select(PushMode::ALL.to_vec())),
        prop::option::of(dnd_window()),
        prop::option::of(-120i64..120),
    )
}

fn to_settings(
    (push_mode, dnd, until): (Option<PushMode>, Option<DndWindow>, Option<i64>),
    now: Timestamp,
) -> ChatSettings {
    ChatSettings {
        push_mode,
        dnd,
        dnd_until: until.map(|m| now + chrono::Duration::minutes(m)),
        ..ChatSettings::default()
    }
}

fn force() -> impl Strategy<Value = Force> {
    prop_oneof![
        Just(Force::Nobody),
        Just(Force::Everyone),
        Just(Force::Users(vec![uid(USER)])),
        Just(Force::Users(vec![uid("bob")])),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(device(), 0..5),
        settings(),
        prop::option::of(settings()),
        zone(),
        prop::sample::select(ConversationKind::ALL.to_vec()),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        force(),
        (
            prop::sample::select(MultiDevicePolicy::ALL.to_vec()),
            any::<bool>(),
            prop::sample::select(PushMode::ALL.to_vec()),
        ),
        instant(),
    )
        .prop_map(|(devices, user, conversation, timezone, kind, mentions, force, cfg, now)| Case {
            devices,
            user_settings: to_settings(user, now),
            conversation_settings: conversation.map(|c| to_settings(c, now)),
            timezone,
            kind,
            mentions_user: mentions.0,
            mentions_other: mentions.1,
            mention_all: mentions.2,
            force,
            cfg: PolicyConfig { multi_device: cfg.0, push_chatrooms: cfg.1, default_push_mode: cfg.2 },
            now,
        })
}

fn effective_mode(c: &Case) -> PushMode {
    c.conversation_settings
        .as_ref()
        .and_then(|s| s.push_mode)
        .or(c.user_settings.push_mode)
        .unwrap_or(c.cfg.default_push_mode)
}

proptest! {
    #[test]
    fn a_kicked_device_is_never_pushed(c in case()) {
        for (d, v) in c.devices.iter().zip(c.verdicts()) {
            if d.presence == Kicked {
                prop_assert!(matches!(v, Stop(Rule::Kicked | Rule::Chatroom)), "{v:?}");
            }
        }
    }

    #[test]
    fn force_never_pushes_an_online_kicked_or_tokenless_device(c in case()) {
        let c = c.force(Force::Everyone);
        for (d, v) in c.devices.iter().zip(c.verdicts()) {
            if d.presence != Offline || !d.has_token {
                prop_assert_ne!(v, Push, "{:?}", d);
            }
        }
    }

    #[test]
    fn force_only_lifts_push_mode_and_dnd(c in case()) {
        let plain = c.clone().force(Force::Nobody).verdicts();
        let forced = c.force(Force::Everyone).verdicts();
        for (p, f) in plain.iter().zip(&forced) {
            if p != f {
                prop_assert!(matches!(p, Stop(Rule::PushMode | Rule::Dnd)) && *f == Push, "{p:?} -> {f:?}");
            }
        }
    }

    #[test]
    fn under_all_offline_one_online_device_means_nobody_is_pushed(c in case(), at in 0usize..5) {
        let mut c = c;
        c.cfg.multi_device = MultiDevicePolicy::AllOffline;
        let at = at.min(c.devices.len());
        c.devices.insert(at, dev(Online));
        let d = c.run();
        prop_assert_eq!(d.pushes().count(), 0);
        prop_assert!(!d.counts_toward_badge);
    }

    #[test]
    fn the_same_input_always_gives_the_same_decision(c in case()) {
        prop_assert_eq!(c.run(), c.clone().run());
    }

    #[test]
    fn nothing_is_pushed_in_mode_none_unless_forced(c in case()) {
        let d = c.run();
        if effective_mode(&c) == PushMode::None && !d.forced {
            prop_assert_eq!(d.pushes().count(), 0);
        }
    }

    #[test]
    fn every_device_gets_one_decision_in_input_order(c in case()) {
        let d = c.run();
        let ids: Vec<DeviceId> = d.devices.iter().map(|x| x.device.clone()).collect();
        prop_assert_eq!(ids, c.device_ids());
    }

    #[test]
    fn the_badge_counts_exactly_when_the_user_was_offline_for_the_message(c in case()) {
        let d = c.run();
        let offline_for_it = d.devices.iter().any(|x| matches!(x.verdict, Push | Stop(Rule::PushMode | Rule::Dnd)));
        prop_assert_eq!(d.counts_toward_badge, offline_for_it);
        prop_assert_eq!(d.forced, c.force.applies_to(&uid(USER)));
    }

    #[test]
    fn an_all_day_window_always_applies(from in 0u16..1440, tz in zone(), now in instant()) {
        let same = DndWindow { from, to: from };
        let whole_day = DndWindow { from: 0, to: 1440 };
        prop_assert!(in_dnd_window(same, tz, now), "{:?}", same);
        prop_assert!(in_dnd_window(whole_day, tz, now), "{:?}", whole_day);
    }

    #[test]
    fn a_window_and_its_complement_split_the_day(a in 0u16..1440, b in 0u16..1440, tz in zone(), now in instant()) {
        prop_assume!(a != b);
        let inside = in_dnd_window(DndWindow { from: a, to: b }, tz, now);
        let outside = in_dnd_window(DndWindow { from: b, to: a }, tz, now);
        prop_assert!(inside != outside);
    }
}
