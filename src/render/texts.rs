//! The operator's fixed strings for the built-in templates ([`RenderTexts`]) and the locale
//! fallback every lookup shares: exact locale, then `_` spelled `-`, then the language prefix.
//!
//! Not here: placeholder parsing (`template`), and validation of the map keys against the
//! product's kinds (the config module knows the key paths to report).

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::model::MessageKind;

/// The locale every operator text falls back to last.
pub(crate) const FALLBACK_LOCALE: &str = "en";

/// Built-in English for `new_message`, used when the operator's map has neither the locale nor `en`.
pub(crate) const NEW_MESSAGE: &str = "You have a new message";

/// Built-in English for `group_title`, used when the operator's map has neither the locale nor `en`.
pub(crate) const GROUP_TITLE: &str = "{sender_name} in {conversation_name}";

/// Operator text for the built-in templates: app name and the localisable fixed strings.
///
/// Each map is keyed by locale (`"en"`, `"zh"`, `"zh-CN"`). A lookup tries the device's locale,
/// then its language prefix, then `"en"`, then the built-in English, so an operator may
/// configure only the languages they translate.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RenderTexts {
    /// Title of the `default` template.
    pub app_name: String,
    /// Body of the `default` template, per locale.
    pub new_message: BTreeMap<String, String>,
    /// Preview of a non-text message, per kind (`"image"`) then locale: `"[Image]"`. The `text`
    /// entry is used only for a text message without text.
    pub kinds: BTreeMap<String, BTreeMap<String, String>>,
    /// `detail` title in a named group or chatroom, per locale; placeholders as in custom
    /// templates.
    pub group_title: BTreeMap<String, String>,
    /// How many characters of a text message the preview (`detail` body, `{text}`) keeps.
    pub preview_chars: usize,
}

impl Default for RenderTexts {
    fn default() -> Self {
        let en = |s: &str| BTreeMap::from([(FALLBACK_LOCALE.to_owned(), s.to_owned())]);
        Self {
            app_name: "pushd".to_owned(),
            new_message: en(NEW_MESSAGE),
            kinds: MessageKind::ALL.iter().map(|k| (k.as_str().to_owned(), en(builtin_label(*k)))).collect(),
            group_title: en(GROUP_TITLE),
            // Long enough for a useful preview, short enough that a CJK preview (3 bytes a char)
            // stays far below APNs' 4 KiB alert payload.
            preview_chars: 100,
        }
    }
}

impl RenderTexts {
    /// The `default` template's body in `locale`.
    pub(crate) fn new_message(&self, locale: Option<&str>) -> &str {
        lookup_with_fallback(&self.new_message, locale).map_or(NEW_MESSAGE, String::as_str)
    }

    /// The bracket text standing for a message of `kind` in `locale` (`"[Image]"`).
    pub(crate) fn kind_label(&self, kind: MessageKind, locale: Option<&str>) -> &str {
        self.kinds
            .get(kind.as_str())
            .and_then(|by_locale| lookup_with_fallback(by_locale, locale))
            .map_or(builtin_label(kind), String::as_str)
    }
}

/// The built-in English label of a kind.
fn builtin_label(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Image => "[Image]",
        MessageKind::Voice => "[Voice]",
        MessageKind::Video => "[Video]",
        MessageKind::File => "[File]",
        MessageKind::Location => "[Location]",
        MessageKind::Call => "[Call]",
        MessageKind::Text | MessageKind::Custom => "[Message]",
    }
}

/// The keys to try for `locale`, most specific first: `"zh_CN"` → `"zh_CN"`, `"zh-CN"`, `"zh"`.
/// Duplicates are harmless (a failed lookup is tried twice).
pub(crate) fn locale_candidates(locale: Option<&str>) -> impl Iterator<Item = Cow<'_, str>> {
    let exact = locale.filter(|l| !l.is_empty());
    let hyphenated = exact.filter(|l| l.contains('_')).map(|l| Cow::Owned(l.replace('_', "-")));
    let language = exact
        .and_then(|l| l.split_once(['-', '_']))
        .map(|(lang, _)| lang)
        .filter(|lang| !lang.is_empty())
        .map(Cow::Borrowed);
    exact.map(Cow::Borrowed).into_iter().chain(hyphenated).chain(language)
}

/// Looks `locale` up by [`locale_candidates`], then [`FALLBACK_LOCALE`].
pub(crate) fn lookup_with_fallback<'m, V>(map: &'m BTreeMap<String, V>, locale: Option<&str>) -> Option<&'m V> {
    locale_candidates(locale).find_map(|key| map.get(key.as_ref())).or_else(|| map.get(FALLBACK_LOCALE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn locale_lookup_tries_exact_then_language_prefix_then_en() {
        let m = map(&[("en", "E"), ("zh", "Z"), ("zh-TW", "T")]);
        assert_eq!(lookup_with_fallback(&m, Some("zh-TW")).map(String::as_str), Some("T"));
        assert_eq!(lookup_with_fallback(&m, Some("zh-CN")).map(String::as_str), Some("Z"));
        assert_eq!(lookup_with_fallback(&m, Some("fr-FR")).map(String::as_str), Some("E"));
        assert_eq!(lookup_with_fallback(&m, None).map(String::as_str), Some("E"));
        assert_eq!(lookup_with_fallback(&m, Some("")).map(String::as_str), Some("E"));
    }

    #[test]
    fn android_style_underscore_locales_match_hyphenated_keys() {
        let m = map(&[("en", "E"), ("zh-TW", "T"), ("pt", "P")]);
        assert_eq!(lookup_with_fallback(&m, Some("zh_TW")).map(String::as_str), Some("T"));
        assert_eq!(lookup_with_fallback(&m, Some("pt_BR")).map(String::as_str), Some("P"));
    }

    #[test]
    fn texts_without_the_locale_or_en_fall_back_to_built_in_english() {
        let texts =
            RenderTexts {
                new_message: map(&[("zh", "您有一条新消息")]), kinds: BTreeMap::new(), ..Default::default()
            };
        assert_eq!(texts.new_message(Some("zh-CN")), "您有一条新消息");
        assert_eq!(texts.new_message(Some("de")), NEW_MESSAGE);
        assert_eq!(texts.kind_label(MessageKind::Image, Some("zh")), "[Image]");
    }

    #[test]
    fn default_texts_label_every_kind() {
        let texts = RenderTexts::default();
        for kind in MessageKind::ALL {
            assert!(texts.kinds.contains_key(kind.as_str()), "{kind} has no label");
        }
        assert_eq!(texts.kind_label(MessageKind::Voice, None), "[Voice]");
        assert_eq!(texts.kind_label(MessageKind::Custom, Some("en-GB")), "[Message]");
    }

    #[test]
    fn partial_render_config_keeps_the_other_defaults() {
        let texts: RenderTexts =
            toml::from_str("app_name = \"Chat\"\n[kinds.image]\nzh = \"[图片]\"\n").expect("valid toml");
        assert_eq!(texts.app_name, "Chat");
        assert_eq!(texts.preview_chars, 100);
        assert_eq!(texts.new_message(None), NEW_MESSAGE);
        assert_eq!(texts.kind_label(MessageKind::Image, Some("zh-CN")), "[图片]");
        assert_eq!(texts.kind_label(MessageKind::Image, Some("en")), "[Image]");
        assert!(toml::from_str::<RenderTexts>("app_nmae = \"x\"").is_err());
    }
}
