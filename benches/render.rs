//! Rendering throughput: templates (`default`, `detail` with a text preview, a custom one with a
//! locale override), `build_push`, and `fit` (shortening to the vendor's limit on character
//! boundaries, for APNs and FCM, with text that fits and text that must be cut), plus
//! `truncate_chars` on CJK text. Run: `cargo bench --bench render`.

use std::collections::{BTreeMap, HashMap};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use pushd::config::Loader;
use pushd::model::{
    Conversation, ConversationId, ConversationKind, Message, MessageId, MessageKind, PushOptions, Sender, TemplateName,
    UserId,
};
use pushd::provider::Vendor;
use pushd::render::{build_push, fit, truncate_chars, RenderContext, Templates};

fn demo_file(name: &str) -> String {
    format!("{}/config/demo/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Templates and the APNs and FCM vendors as configured from TOML (demo keys).
fn setup() -> (Templates, std::sync::Arc<dyn Vendor>, std::sync::Arc<dyn Vendor>) {
    let toml = format!(
        r#"
        [api]
        keys = ["bench-key"]
        [templates.greeting]
        title = "{{sender_name}}"
        body = "{{sender_name}}: {{text}} ({{count}} new)"
        [templates.greeting.locales.zh-CN]
        body = "{{sender_name}}：{{text}}（{{count}} 条新消息）"
        [credentials.bench-apns]
        vendor = "apns"
        endpoint = "https://127.0.0.1:9"
        topic = "com.example.im"
        key_file = "{apns}"
        key_id = "KEY1234567"
        team_id = "TEAM123456"
        [credentials.bench-fcm]
        vendor = "fcm"
        endpoint = "https://127.0.0.1:9"
        service_account_file = "{fcm}"
        token_uri = "https://127.0.0.1:9/token"
        "#,
        apns = demo_file("apns-demo-key.p8"),
        fcm = demo_file("fcm-service-account.json"),
    );
    let settings = Loader::new()
        .layer_str("bench", &toml)
        .and_then(|l| l.layer_env(&HashMap::new()).settings())
        .unwrap_or_else(|e| panic!("{e}"));
    let templates = Templates::new(settings.render.clone(), &settings.templates).expect("templates load");
    let vendor =
        |name: &str| settings.credentials.iter().find(|c| c.name.as_str() == name).expect("credential").vendor.clone();
    (templates, vendor("bench-apns"), vendor("bench-fcm"))
}

fn message(text: &str) -> Message {
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
        text: Some(text.into()),
        mentions: vec![],
        mention_all: false,
        push: PushOptions { data: BTreeMap::from([("room".into(), "42".into())]), ..PushOptions::default() },
        accepted_at: chrono::Utc::now(),
    }
}

fn bench(c: &mut Criterion) {
    let (templates, apns, fcm) = setup();
    let bob = UserId::parse("bob").unwrap();
    let short = message("Are we still on for lunch at noon?");
    // 6000 chars of mixed CJK and emoji: several times any vendor's limit in bytes.
    let long_text: String = "午饭还去吗？🍜 Lunch at noon? ".repeat(300);
    let long = message(&long_text);
    let default = TemplateName::parse("default").unwrap();
    let detail = TemplateName::parse("detail").unwrap();
    let greeting = TemplateName::parse("greeting").unwrap();
    let now = chrono::Utc::now();
    let ctx = |m, locale| RenderContext { message: m, recipient: &bob, locale, badge: 7, count: 7 };

    let mut g = c.benchmark_group("render");
    g.throughput(Throughput::Elements(1));
    g.bench_function("template_default", |b| {
        b.iter(|| templates.render_for(black_box(&short), &ctx(&short, Some("en")), None, &default))
    });
    g.bench_function("template_detail_preview", |b| {
        b.iter(|| templates.render_for(black_box(&long), &ctx(&long, Some("en")), Some(&detail), &default))
    });
    g.bench_function("template_custom_zh_cn", |b| {
        b.iter(|| templates.render_for(black_box(&short), &ctx(&short, Some("zh-CN")), Some(&greeting), &default))
    });
    g.bench_function("build_push", |b| {
        b.iter_batched(
            || templates.render_for(&short, &ctx(&short, Some("en")), Some(&detail), &default),
            |rendered| build_push(black_box(&short), rendered, 7, now),
            BatchSize::SmallInput,
        )
    });
    for (name, vendor) in [("apns", &apns), ("fcm", &fcm)] {
        let fitting =
            build_push(&short, templates.render_for(&short, &ctx(&short, None), Some(&detail), &default), 7, now);
        let mut too_long = fitting.clone();
        too_long.body = long_text.clone();
        g.bench_function(format!("fit_{name}_fits"), |b| {
            b.iter_batched(|| fitting.clone(), |mut p| fit(&mut p, vendor.as_ref()), BatchSize::SmallInput)
        });
        g.bench_function(format!("fit_{name}_truncates_6000_chars"), |b| {
            b.iter_batched(|| too_long.clone(), |mut p| fit(&mut p, vendor.as_ref()), BatchSize::SmallInput)
        });
    }
    g.bench_function("truncate_chars_cjk_100", |b| b.iter(|| truncate_chars(black_box(&long_text), 100)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
