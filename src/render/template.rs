//! Notification templates: the built-ins `default` and `detail`, and the operator's custom ones.
//!
//! A custom template's text is parsed once, at load or [`Templates::upsert`], into literal and
//! placeholder segments, so an unknown placeholder is a config error and never a surprise at
//! push time. Rendering then only fills values in.
//!
//! Not here: choosing between a message's text and a template is [`Templates::render_for`];
//! the push built from the result is `push`; sizes are `fit`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::texts::{locale_candidates, lookup_with_fallback, RenderTexts};
use super::{truncate_chars, RenderContext, Rendered};
use crate::model::{ConversationKind, Message, MessageKind, TemplateName};

/// Name of the built-in template: app name and "You have a new message".
pub const DEFAULT_TEMPLATE: &str = "default";
/// Name of the built-in template: sender (or "Alice in Team") and a preview of the message.
pub const DETAIL_TEMPLATE: &str = "detail";

/// An operator-defined template (`[templates.<name>]`).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// Title text with placeholders (`{sender_name}`); `{{` and `}}` stand for braces.
    pub title: String,
    /// Body text with placeholders.
    pub body: String,
    /// Per-locale overrides (`zh`, `zh-CN`); a missing field falls back to the next locale,
    /// then to `title`/`body`.
    #[serde(default)]
    pub locales: BTreeMap<String, LocalizedText>,
}

/// A per-locale override of a custom template's title and/or body.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalizedText {
    /// Title for this locale, if it differs.
    pub title: Option<String>,
    /// Body for this locale, if it differs.
    pub body: Option<String>,
}

/// A template that cannot be loaded. `template` names the template and the field
/// (`welcome.title`, `welcome.locales.zh.body`, `detail.group_title.en`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{name}` that is not one of the known placeholders.
    #[error("template {template}: unknown placeholder {{{placeholder}}}")]
    UnknownPlaceholder { template: String, placeholder: String },
    /// Custom templates may not take a built-in's name (`default`, `detail`), nor a name that is
    /// not a valid template name.
    #[error("template {0}: name reserved for a built-in or not a valid template name")]
    Reserved(String),
    /// A `{` without its `}` (write `{{` for a literal brace).
    #[error("template {template}: unclosed '{{' (write '{{{{' for a literal brace)")]
    Unclosed { template: String },
}

/// The values a template may refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    /// Sender id.
    Sender,
    /// Sender display name, else id.
    SenderName,
    /// Conversation id.
    Conversation,
    /// Conversation name; in a single chat without one the sender's name; else the id.
    ConversationName,
    /// The preview: text truncated to `preview_chars`, or the kind's label.
    Text,
    /// The kind's wire name (`image`).
    Kind,
    /// The recipient's badge.
    Badge,
    /// Offline messages in this conversation.
    Count,
}

impl Placeholder {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "sender" => Self::Sender,
            "sender_name" => Self::SenderName,
            "conversation" => Self::Conversation,
            "conversation_name" => Self::ConversationName,
            "text" => Self::Text,
            "kind" => Self::Kind,
            "badge" => Self::Badge,
            "count" => Self::Count,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Value(Placeholder),
}

/// A parsed template text.
#[derive(Debug, Clone, PartialEq)]
struct Pattern(Vec<Segment>);

impl Pattern {
    /// Parses `text`; `path` names it in errors.
    fn parse(text: &str, path: &str) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(TemplateError::Unclosed { template: path.to_owned() }),
                        }
                    }
                    let placeholder = Placeholder::parse(&name).ok_or_else(|| TemplateError::UnknownPlaceholder {
                        template: path.to_owned(),
                        placeholder: name,
                    })?;
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Value(placeholder));
                }
                // A lone `}` cannot be mistaken for anything: keep it as written.
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Self(segments))
    }

    fn render(&self, values: &Values<'_>) -> String {
        let mut out = String::new();
        for segment in &self.0 {
            match segment {
                Segment::Literal(s) => out.push_str(s),
                Segment::Value(p) => out.push_str(&values.get(*p)),
            }
        }
        out
    }
}

/// A custom template, parsed.
#[derive(Debug, Clone, PartialEq)]
struct Custom {
    title: Pattern,
    body: Pattern,
    locales: BTreeMap<String, LocalizedPatterns>,
}

#[derive(Debug, Clone, PartialEq)]
struct LocalizedPatterns {
    title: Option<Pattern>,
    body: Option<Pattern>,
}

impl Custom {
    /// Parses every text of `config`, collecting all errors.
    fn parse(name: &str, config: &TemplateConfig) -> Result<Self, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let mut parse = |text: &str, path: String| Pattern::parse(text, &path).map_err(|e| errors.push(e)).ok();
        let title = parse(&config.title, format!("{name}.title"));
        let body = parse(&config.body, format!("{name}.body"));
        let mut locales = BTreeMap::new();
        for (locale, text) in &config.locales {
            let mut localized = |field: &Option<String>, which: &str| {
                field.as_deref().and_then(|t| parse(t, format!("{name}.locales.{locale}.{which}")))
            };
            let title = localized(&text.title, "title");
            let body = localized(&text.body, "body");
            locales.insert(locale.clone(), LocalizedPatterns { title, body });
        }
        match (title, body) {
            (Some(title), Some(body)) if errors.is_empty() => Ok(Self { title, body, locales }),
            _ => Err(errors),
        }
    }

    /// Title and body for `locale`, each field falling back on its own.
    fn render(&self, values: &Values<'_>) -> Rendered {
        let localized = |pick: fn(&LocalizedPatterns) -> Option<&Pattern>| {
            locale_candidates(values.ctx.locale).find_map(|key| self.locales.get(key.as_ref()).and_then(pick))
        };
        let title = localized(|l| l.title.as_ref()).unwrap_or(&self.title);
        let body = localized(|l| l.body.as_ref()).unwrap_or(&self.body);
        Rendered { title: title.render(values), body: body.render(values) }
    }
}

/// The values of one rendering, computed on demand.
struct Values<'a> {
    ctx: &'a RenderContext<'a>,
    texts: &'a RenderTexts,
}

impl Values<'_> {
    fn message(&self) -> &Message {
        self.ctx.message
    }

    fn get(&self, p: Placeholder) -> Cow<'_, str> {
        let msg = self.message();
        match p {
            Placeholder::Sender => Cow::Borrowed(msg.from.id.as_str()),
            Placeholder::SenderName => Cow::Borrowed(self.sender_name()),
            Placeholder::Conversation => Cow::Borrowed(msg.conversation.id.as_str()),
            Placeholder::ConversationName => Cow::Borrowed(self.conversation_name()),
            Placeholder::Text => self.preview(),
            Placeholder::Kind => Cow::Borrowed(msg.kind.as_str()),
            Placeholder::Badge => Cow::Owned(self.ctx.badge.to_string()),
            Placeholder::Count => Cow::Owned(self.ctx.count.to_string()),
        }
    }

    fn sender_name(&self) -> &str {
        let from = &self.message().from;
        non_empty(from.name.as_deref()).unwrap_or(from.id.as_str())
    }

    fn conversation_name(&self) -> &str {
        let conversation = &self.message().conversation;
        match non_empty(conversation.name.as_deref()) {
            Some(name) => name,
            // A one-to-one chat is named after the other party, as chat lists show it.
            None if conversation.kind == ConversationKind::Single => self.sender_name(),
            None => conversation.id.as_str(),
        }
    }

    /// The text truncated to `preview_chars` for a text message, else the kind's label.
    fn preview(&self) -> Cow<'_, str> {
        let msg = self.message();
        match non_empty(msg.text.as_deref()) {
            Some(text) if msg.kind == MessageKind::Text => Cow::Owned(truncate_chars(text, self.texts.preview_chars)),
            _ => Cow::Borrowed(self.texts.kind_label(msg.kind, self.ctx.locale)),
        }
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.trim().is_empty())
}

/// Every template pushd can render: the built-ins `default` and `detail`, and the operator's
/// custom ones, all parsed.
#[derive(Debug, Clone)]
pub struct Templates {
    texts: RenderTexts,
    /// `texts.group_title`, parsed, per locale.
    group_titles: BTreeMap<String, Pattern>,
    group_title_builtin: Pattern,
    custom: BTreeMap<TemplateName, Custom>,
}

impl Templates {
    /// Names of the custom templates (the built-ins `default` and `detail` always exist).
    pub fn custom_names(&self) -> impl Iterator<Item = &TemplateName> {
        self.custom.keys()
    }

    /// Parses the operator's texts and custom templates; returns every problem found, not just
    /// the first.
    pub fn new(texts: RenderTexts, custom: &BTreeMap<String, TemplateConfig>) -> Result<Self, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let mut group_titles = BTreeMap::new();
        for (locale, text) in &texts.group_title {
            match Pattern::parse(text, &format!("{DETAIL_TEMPLATE}.group_title.{locale}")) {
                Ok(p) => {
                    group_titles.insert(locale.clone(), p);
                }
                Err(e) => errors.push(e),
            }
        }
        let group_title_builtin = builtin_group_title();

        let mut templates = BTreeMap::new();
        for (name, config) in custom {
            if is_reserved(name) {
                errors.push(TemplateError::Reserved(name.clone()));
                continue;
            }
            let parsed_name = match TemplateName::parse(name) {
                Ok(n) => n,
                // The config module validates names with their key path; here a bad name can
                // only be reported as unusable, and `Reserved` is the closest case.
                Err(_) => {
                    errors.push(TemplateError::Reserved(name.clone()));
                    continue;
                }
            };
            match Custom::parse(name, config) {
                Ok(t) => {
                    templates.insert(parsed_name, t);
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(Self { texts, group_titles, group_title_builtin, custom: templates })
        } else {
            Err(errors)
        }
    }

    /// Whether `name` is a built-in or a loaded custom template.
    pub fn contains(&self, name: &TemplateName) -> bool {
        is_reserved(name.as_str()) || self.custom.contains_key(name)
    }

    /// Adds or replaces a custom template (admin API); the old one stays on error.
    pub fn upsert(&mut self, name: TemplateName, t: TemplateConfig) -> Result<(), TemplateError> {
        if is_reserved(name.as_str()) {
            return Err(TemplateError::Reserved(name.as_str().to_owned()));
        }
        // Cannot panic: `Custom::parse` fails only after recording at least one error. The
        // admin API shows the first.
        let parsed = Custom::parse(name.as_str(), &t).map_err(|mut errors| errors.swap_remove(0))?;
        self.custom.insert(name, parsed);
        Ok(())
    }

    /// Renders template `name`; an unknown name renders `default`.
    pub fn render(&self, name: &TemplateName, ctx: &RenderContext<'_>) -> Rendered {
        let values = Values { ctx, texts: &self.texts };
        match name.as_str() {
            DETAIL_TEMPLATE => self.render_detail(&values),
            DEFAULT_TEMPLATE => self.render_default(&values),
            _ => match self.custom.get(name) {
                Some(t) => t.render(&values),
                None => self.render_default(&values),
            },
        }
    }

    /// Renders with the product's precedence, highest first: the message's own title and body
    /// (each on its own), the message's template, the user's template, the operator's
    /// `default`. A template name that is not loaded is skipped. `message` is normally
    /// `ctx.message`.
    pub fn render_for(
        &self,
        message: &Message,
        ctx: &RenderContext<'_>,
        user_template: Option<&TemplateName>,
        default: &TemplateName,
    ) -> Rendered {
        let (title, body) = (message.push.title.as_ref(), message.push.body.as_ref());
        if let (Some(title), Some(body)) = (title, body) {
            return Rendered { title: title.clone(), body: body.clone() };
        }
        let name = [message.push.template.as_ref(), user_template]
            .into_iter()
            .flatten()
            .find(|n| self.contains(n))
            .unwrap_or(default);
        let mut rendered = self.render(name, ctx);
        if let Some(title) = title {
            rendered.title.clone_from(title);
        }
        if let Some(body) = body {
            rendered.body.clone_from(body);
        }
        rendered
    }

    fn render_default(&self, values: &Values<'_>) -> Rendered {
        Rendered { title: self.texts.app_name.clone(), body: self.texts.new_message(values.ctx.locale).to_owned() }
    }

    fn render_detail(&self, values: &Values<'_>) -> Rendered {
        let conversation = &values.message().conversation;
        let named_group =
            conversation.kind != ConversationKind::Single && non_empty(conversation.name.as_deref()).is_some();
        let title = if named_group {
            lookup_with_fallback(&self.group_titles, values.ctx.locale)
                .unwrap_or(&self.group_title_builtin)
                .render(values)
        } else {
            values.sender_name().to_owned()
        };
        Rendered { title, body: values.preview().into_owned() }
    }
}

/// The built-in `group_title` text, parsed by hand so that no `unwrap` is needed (a test checks they agree).
fn builtin_group_title() -> Pattern {
    Pattern(vec![
        Segment::Value(Placeholder::SenderName),
        Segment::Literal(" in ".to_owned()),
        Segment::Value(Placeholder::ConversationName),
    ])
}

fn is_reserved(name: &str) -> bool {
    name == DEFAULT_TEMPLATE || name == DETAIL_TEMPLATE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::{ctx, message, name};
    use crate::render::texts::GROUP_TITLE;

    fn custom(title: &str, body: &str) -> TemplateConfig {
        TemplateConfig { title: title.to_owned(), body: body.to_owned(), locales: BTreeMap::new() }
    }

    fn with_custom(templates: &[(&str, TemplateConfig)]) -> Templates {
        let map = templates.iter().map(|(n, t)| ((*n).to_owned(), t.clone())).collect();
        Templates::new(RenderTexts::default(), &map).expect("valid templates")
    }

    fn builtins() -> Templates {
        with_custom(&[])
    }

    #[test]
    fn each_placeholder_renders_its_value() {
        let mut msg = message(MessageKind::Text, Some("hello there"));
        msg.from.name = Some("Alice".to_owned());
        msg.conversation.kind = ConversationKind::Group;
        msg.conversation.name = Some("Team".to_owned());
        let cases = [
            ("{sender}", "alice"),
            ("{sender_name}", "Alice"),
            ("{conversation}", "team-1"),
            ("{conversation_name}", "Team"),
            ("{text}", "hello there"),
            ("{kind}", "text"),
            ("{badge}", "7"),
            ("{count}", "3"),
        ];
        for (placeholder, expected) in cases {
            let t = with_custom(&[("t", custom(placeholder, &format!("<{placeholder}>")))]);
            let r = t.render(&name("t"), &ctx(&msg, None, 7, 3));
            assert_eq!(r.title, expected, "{placeholder}");
            assert_eq!(r.body, format!("<{expected}>"), "{placeholder}");
        }
    }

    #[test]
    fn placeholders_mix_with_literal_text() {
        let mut msg = message(MessageKind::Image, None);
        msg.from.name = Some("Alice".to_owned());
        let t = with_custom(&[("t", custom("{sender_name} ({badge})", "{sender_name}: {text} – {count} new"))]);
        let r = t.render(&name("t"), &ctx(&msg, None, 2, 1));
        assert_eq!(r, Rendered { title: "Alice (2)".to_owned(), body: "Alice: [Image] – 1 new".to_owned() });
    }

    #[test]
    fn doubled_braces_render_as_literal_braces() {
        let msg = message(MessageKind::Text, Some("hi"));
        let t = with_custom(&[("t", custom("{{sender}} is {sender}", "}} {{}} } {text}"))]);
        let r = t.render(&name("t"), &ctx(&msg, None, 0, 0));
        assert_eq!(r.title, "{sender} is alice");
        assert_eq!(r.body, "} {} } hi");
    }

    #[test]
    fn text_placeholder_is_truncated_to_preview_chars() {
        let msg = message(MessageKind::Text, Some(&"字".repeat(300)));
        let t = with_custom(&[("t", custom("x", "{text}"))]);
        let body = t.render(&name("t"), &ctx(&msg, None, 0, 0)).body;
        assert_eq!(body.chars().count(), 100);
        assert!(body.ends_with('…'));
    }

    #[test]
    fn conversation_name_falls_back_to_sender_in_single_chats_and_id_in_groups() {
        let mut msg = message(MessageKind::Text, Some("hi"));
        msg.from.name = Some("Alice".to_owned());
        let t = with_custom(&[("t", custom("{conversation_name}", ""))]);
        assert_eq!(t.render(&name("t"), &ctx(&msg, None, 0, 0)).title, "Alice");
        msg.conversation.kind = ConversationKind::Group;
        assert_eq!(t.render(&name("t"), &ctx(&msg, None, 0, 0)).title, "team-1");
    }

    #[test]
    fn unknown_placeholder_is_rejected_at_load_with_every_problem_listed() {
        let mut bad = custom("{sender}", "{txt} and {badge}");
        bad.locales.insert("zh".to_owned(), LocalizedText { title: Some("{名字}".to_owned()), body: None });
        let map = BTreeMap::from([("bad".to_owned(), bad), ("fine".to_owned(), custom("{sender}", "{text}"))]);
        let errors = Templates::new(RenderTexts::default(), &map).expect_err("unknown placeholders");
        assert_eq!(
            errors,
            vec![
                TemplateError::UnknownPlaceholder { template: "bad.body".to_owned(), placeholder: "txt".to_owned() },
                TemplateError::UnknownPlaceholder {
                    template: "bad.locales.zh.title".to_owned(),
                    placeholder: "名字".to_owned()
                },
            ]
        );
        assert_eq!(errors[0].to_string(), "template bad.body: unknown placeholder {txt}");
    }

    #[test]
    fn unknown_placeholder_in_group_title_is_rejected_at_load() {
        let texts = RenderTexts {
            group_title: BTreeMap::from([("en".to_owned(), "{sender_name} @ {group}".to_owned())]),
            ..Default::default()
        };
        let errors = Templates::new(texts, &BTreeMap::new()).expect_err("unknown placeholder");
        assert_eq!(
            errors,
            vec![TemplateError::UnknownPlaceholder {
                template: "detail.group_title.en".to_owned(),
                placeholder: "group".to_owned()
            }]
        );
    }

    #[test]
    fn unclosed_brace_and_empty_placeholder_are_rejected() {
        let map = BTreeMap::from([("t".to_owned(), custom("Hi {sender", "{}"))]);
        let errors = Templates::new(RenderTexts::default(), &map).expect_err("bad template");
        assert_eq!(
            errors,
            vec![
                TemplateError::Unclosed { template: "t.title".to_owned() },
                TemplateError::UnknownPlaceholder { template: "t.body".to_owned(), placeholder: String::new() },
            ]
        );
    }

    #[test]
    fn custom_templates_may_not_use_built_in_names() {
        let map = BTreeMap::from([("detail".to_owned(), custom("a", "b"))]);
        let errors = Templates::new(RenderTexts::default(), &map).expect_err("reserved");
        assert_eq!(errors, vec![TemplateError::Reserved("detail".to_owned())]);
        let mut t = builtins();
        assert_eq!(t.upsert(name("default"), custom("a", "b")), Err(TemplateError::Reserved("default".to_owned())));
    }

    #[test]
    fn upsert_adds_and_replaces_and_keeps_the_old_template_on_error() {
        let msg = message(MessageKind::Text, Some("hi"));
        let mut t = builtins();
        assert!(!t.contains(&name("promo")));
        t.upsert(name("promo"), custom("v1 {sender}", "")).expect("valid");
        assert!(t.contains(&name("promo")));
        t.upsert(name("promo"), custom("v2 {sender}", "")).expect("valid");
        let err = t.upsert(name("promo"), custom("v3 {nope}", "")).expect_err("unknown placeholder");
        assert_eq!(
            err,
            TemplateError::UnknownPlaceholder { template: "promo.title".to_owned(), placeholder: "nope".to_owned() }
        );
        assert_eq!(t.render(&name("promo"), &ctx(&msg, None, 0, 0)).title, "v2 alice");
    }

    #[test]
    fn built_in_group_title_matches_its_documented_text() {
        assert_eq!(Pattern::parse(GROUP_TITLE, "detail.group_title"), Ok(builtin_group_title()));
    }

    #[test]
    fn builtins_are_always_contained() {
        let t = builtins();
        assert!(t.contains(&name("default")));
        assert!(t.contains(&name("detail")));
        assert!(!t.contains(&name("other")));
    }

    #[test]
    fn unknown_template_name_falls_back_to_default() {
        let msg = message(MessageKind::Text, Some("secret"));
        let r = builtins().render(&name("missing"), &ctx(&msg, None, 1, 1));
        assert_eq!(r, Rendered { title: "pushd".to_owned(), body: "You have a new message".to_owned() });
    }

    #[test]
    fn default_template_uses_app_name_and_localised_new_message() {
        let texts = RenderTexts {
            app_name: "Chat".to_owned(),
            new_message: BTreeMap::from([
                ("en".to_owned(), "New message".to_owned()),
                ("zh".to_owned(), "您有一条新消息".to_owned()),
                ("zh-TW".to_owned(), "您有一則新訊息".to_owned()),
            ]),
            ..Default::default()
        };
        let t = Templates::new(texts, &BTreeMap::new()).expect("valid");
        let msg = message(MessageKind::Text, Some("secret"));
        let body = |locale| t.render(&name("default"), &ctx(&msg, locale, 0, 0)).body;
        assert_eq!(body(Some("zh-TW")), "您有一則新訊息");
        assert_eq!(body(Some("zh-CN")), "您有一条新消息");
        assert_eq!(body(Some("zh")), "您有一条新消息");
        assert_eq!(body(Some("fr")), "New message");
        assert_eq!(body(None), "New message");
        assert_eq!(t.render(&name("default"), &ctx(&msg, None, 0, 0)).title, "Chat");
    }

    #[test]
    fn custom_template_locales_override_each_field_with_fallback() {
        let mut config = custom("{sender_name} wrote", "{text}");
        config
            .locales
            .insert("zh".to_owned(), LocalizedText { title: Some("{sender_name} 发来消息".to_owned()), body: None });
        config.locales.insert("zh-TW".to_owned(), LocalizedText { title: None, body: Some("訊息：{text}".to_owned()) });
        let t = with_custom(&[("t", config)]);
        let msg = message(MessageKind::Text, Some("hi"));
        let render = |locale| t.render(&name("t"), &ctx(&msg, locale, 0, 0));
        assert_eq!(render(Some("zh-TW")), Rendered { title: "alice 发来消息".to_owned(), body: "訊息：hi".to_owned() });
        assert_eq!(render(Some("zh-CN")), Rendered { title: "alice 发来消息".to_owned(), body: "hi".to_owned() });
        assert_eq!(render(Some("en-US")), Rendered { title: "alice wrote".to_owned(), body: "hi".to_owned() });
        assert_eq!(render(None), Rendered { title: "alice wrote".to_owned(), body: "hi".to_owned() });
    }

    #[test]
    fn detail_previews_each_kind() {
        let t = builtins();
        let cases = [
            (MessageKind::Text, Some("see you at 5"), "see you at 5"),
            (MessageKind::Text, None, "[Message]"),
            (MessageKind::Image, Some("caption"), "[Image]"),
            (MessageKind::Voice, None, "[Voice]"),
            (MessageKind::Video, None, "[Video]"),
            (MessageKind::File, None, "[File]"),
            (MessageKind::Location, None, "[Location]"),
            (MessageKind::Call, None, "[Call]"),
            (MessageKind::Custom, Some("{\"json\":1}"), "[Message]"),
        ];
        for (kind, text, expected) in cases {
            let msg = message(kind, text);
            let r = t.render(&name("detail"), &ctx(&msg, None, 0, 0));
            assert_eq!(r.body, expected, "{kind}");
            assert_eq!(r.title, "alice", "{kind}");
        }
    }

    #[test]
    fn detail_preview_uses_localised_kind_labels() {
        let mut texts = RenderTexts::default();
        texts.kinds.entry("image".to_owned()).or_default().insert("zh".to_owned(), "[图片]".to_owned());
        let t = Templates::new(texts, &BTreeMap::new()).expect("valid");
        let msg = message(MessageKind::Image, None);
        assert_eq!(t.render(&name("detail"), &ctx(&msg, Some("zh-CN"), 0, 0)).body, "[图片]");
        assert_eq!(t.render(&name("detail"), &ctx(&msg, Some("de"), 0, 0)).body, "[Image]");
    }

    #[test]
    fn detail_title_is_the_display_name_or_the_sender_id() {
        let t = builtins();
        let mut msg = message(MessageKind::Text, Some("hi"));
        assert_eq!(t.render(&name("detail"), &ctx(&msg, None, 0, 0)).title, "alice");
        msg.from.name = Some("Alice".to_owned());
        assert_eq!(t.render(&name("detail"), &ctx(&msg, None, 0, 0)).title, "Alice");
    }

    #[test]
    fn detail_title_in_a_named_group_or_chatroom_names_both() {
        let t = builtins();
        let mut msg = message(MessageKind::Text, Some("hi"));
        msg.from.name = Some("Alice".to_owned());
        msg.conversation.name = Some("Team".to_owned());
        // A name on a single chat is ignored: the sender is the conversation.
        assert_eq!(t.render(&name("detail"), &ctx(&msg, None, 0, 0)).title, "Alice");
        for kind in [ConversationKind::Group, ConversationKind::Chatroom] {
            msg.conversation.kind = kind;
            assert_eq!(t.render(&name("detail"), &ctx(&msg, None, 0, 0)).title, "Alice in Team", "{kind}");
        }
        msg.conversation.name = None;
        assert_eq!(t.render(&name("detail"), &ctx(&msg, None, 0, 0)).title, "Alice");
    }

    #[test]
    fn detail_group_title_is_localised() {
        let mut texts = RenderTexts::default();
        texts.group_title.insert("zh".to_owned(), "{sender_name}（{conversation_name}）".to_owned());
        let t = Templates::new(texts, &BTreeMap::new()).expect("valid");
        let mut msg = message(MessageKind::Text, Some("hi"));
        msg.conversation.kind = ConversationKind::Group;
        msg.conversation.name = Some("项目组".to_owned());
        assert_eq!(t.render(&name("detail"), &ctx(&msg, Some("zh-Hans"), 0, 0)).title, "alice（项目组）");
        assert_eq!(t.render(&name("detail"), &ctx(&msg, Some("ja"), 0, 0)).title, "alice in 项目组");
    }

    #[test]
    fn message_title_and_body_win_over_every_template() {
        let t = with_custom(&[("t", custom("T", "B"))]);
        let mut msg = message(MessageKind::Text, Some("hi"));
        msg.push.template = Some(name("t"));
        msg.push.title = Some("Own title".to_owned());
        msg.push.body = Some("Own body".to_owned());
        let r = t.render_for(&msg, &ctx(&msg, None, 0, 0), Some(&name("detail")), &name("default"));
        assert_eq!(r, Rendered { title: "Own title".to_owned(), body: "Own body".to_owned() });
    }

    #[test]
    fn message_title_alone_overrides_only_the_title() {
        let t = builtins();
        let mut msg = message(MessageKind::Text, Some("hi"));
        msg.push.title = Some("Own title".to_owned());
        let r = t.render_for(&msg, &ctx(&msg, None, 0, 0), None, &name("detail"));
        assert_eq!(r, Rendered { title: "Own title".to_owned(), body: "hi".to_owned() });
    }

    #[test]
    fn message_template_beats_user_template_beats_operator_default() {
        let t = with_custom(&[("m", custom("message", "")), ("u", custom("user", ""))]);
        let mut msg = message(MessageKind::Text, Some("hi"));
        let title = |msg: &Message, user: Option<&TemplateName>| {
            t.render_for(msg, &ctx(msg, None, 0, 0), user, &name("detail")).title
        };
        assert_eq!(title(&msg, None), "alice");
        assert_eq!(title(&msg, Some(&name("u"))), "user");
        msg.push.template = Some(name("m"));
        assert_eq!(title(&msg, Some(&name("u"))), "message");
        // A template that is not loaded is skipped, not rendered as `default`.
        msg.push.template = Some(name("gone"));
        assert_eq!(title(&msg, Some(&name("u"))), "user");
        assert_eq!(title(&msg, Some(&name("gone-too"))), "alice");
    }

    #[test]
    fn template_config_rejects_unknown_fields() {
        let ok: TemplateConfig =
            toml::from_str("title = \"{sender_name}\"\nbody = \"{text}\"\n[locales.zh]\nbody = \"{text}\"\n")
                .expect("valid");
        assert_eq!(ok.locales["zh"], LocalizedText { title: None, body: Some("{text}".to_owned()) });
        assert!(toml::from_str::<TemplateConfig>("title = \"a\"\nbody = \"b\"\nsound = \"x\"\n").is_err());
        assert!(toml::from_str::<TemplateConfig>("title = \"a\"\nbody = \"b\"\n[locales.zh]\ntitel = \"x\"\n").is_err());
    }
}
