//! Shortening text on character boundaries: [`truncate_chars`] for previews, and [`fit`], which
//! shortens a push until the vendor's own size count is within its limit.
//!
//! Not here: how a vendor counts size or what its limit is (`Vendor::payload_size` and
//! `Vendor::payload_limit` in `provider`). Cuts are on `char` boundaries, never inside a UTF-8
//! sequence; a multi-`char` grapheme (an emoji with a skin tone or a ZWJ family) may lose its
//! tail, which renders as a simpler emoji rather than broken bytes.

use crate::provider::{Vendor, VendorPush};

/// Appended where text was cut.
const ELLIPSIS: char = '…';

/// Truncates to at most `max_chars` chars on a char boundary, appending "…" when cut (the "…"
/// counts toward `max_chars`).
pub fn truncate_chars(s: &str, max_chars: usize) -> String {
    if s.chars().nth(max_chars).is_none() {
        return s.to_owned();
    }
    let Some(keep) = max_chars.checked_sub(1) else {
        return String::new();
    };
    let mut out: String = s.chars().take(keep).collect();
    out.push(ELLIPSIS);
    out
}

/// Shortens `push.body` on a character boundary (appending "…") until
/// `vendor.payload_size(push) <= vendor.payload_limit(push)`; if the body alone can't make it
/// fit, empties the body and shortens the title too. Returns true if it fits; on false the push
/// is left with both texts empty and must not be sent.
///
/// Keeps the longest text that fits, found by binary search over the text's length in chars:
/// O(log n) size computations, each a serialization in most vendors.
pub fn fit(push: &mut VendorPush, vendor: &dyn Vendor) -> bool {
    if fits(push, vendor) {
        return true;
    }
    shorten(push, vendor, Field::Body) || shorten(push, vendor, Field::Title)
}

#[derive(Clone, Copy)]
enum Field {
    Title,
    Body,
}

impl Field {
    fn of(self, push: &mut VendorPush) -> &mut String {
        match self {
            Field::Title => &mut push.title,
            Field::Body => &mut push.body,
        }
    }
}

fn fits(push: &VendorPush, vendor: &dyn Vendor) -> bool {
    vendor.payload_size(push) <= vendor.payload_limit(push)
}

/// Sets `field` to its longest truncation that fits; leaves it empty and returns false if none does.
fn shorten(push: &mut VendorPush, vendor: &dyn Vendor, field: Field) -> bool {
    let original = std::mem::take(field.of(push));
    // The untruncated text may fit now (the title, once the body is empty). It is checked on
    // its own because it is not on the monotone curve below: "ab" is shorter than "a…".
    *field.of(push) = original.clone();
    if fits(push, vendor) {
        return true;
    }
    // size(truncate_chars(original, k)) never decreases with k for k < len (each step adds a
    // char), so the k that fit form a prefix of 0..len: find its end.
    let len = original.chars().count();
    let (mut lo, mut hi) = (0, len); // every k < lo fits; no k >= hi does
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        *field.of(push) = truncate_chars(&original, mid);
        if fits(push, vendor) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    match lo.checked_sub(1) {
        Some(best) => {
            *field.of(push) = truncate_chars(&original, best);
            true
        }
        None => {
            field.of(push).clear();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::model::{PushType, Timestamp, Token, VendorKind};
    use crate::provider::{AuthPlan, BuildError, Outcome, Priority, VendorRequest};
    use crate::render::test_support::at;

    /// Counts the push as the JSON bytes of its visible fields, like APNs counts its payload.
    struct JsonVendor {
        limit: usize,
    }

    impl JsonVendor {
        fn json(push: &VendorPush) -> serde_json::Value {
            serde_json::json!({
                "aps": { "alert": { "title": push.title, "body": push.body }, "badge": push.badge,
                         "sound": push.sound, "thread-id": push.thread_id },
                "data": push.data,
            })
        }
    }

    impl Vendor for JsonVendor {
        fn kind(&self) -> VendorKind {
            VendorKind::Apns
        }
        fn auth_plan(&self, _now: Timestamp) -> AuthPlan {
            AuthPlan::None
        }
        fn payload_limit(&self, _push: &VendorPush) -> usize {
            self.limit
        }
        fn payload_size(&self, push: &VendorPush) -> usize {
            serde_json::to_vec(&Self::json(push)).map_or(usize::MAX, |v| v.len())
        }
        fn request(
            &self,
            _: &VendorPush,
            _: &[Token],
            _: Option<&crate::provider::AuthToken>,
            _: Timestamp,
        ) -> Result<VendorRequest, BuildError> {
            Err(BuildError::Payload("not used in render tests"))
        }
        fn classify(&self, tokens: &[Token], _: StatusCode, _: &HeaderMap, _: &[u8]) -> Vec<Outcome> {
            vec![Outcome::Delivered; tokens.len()]
        }
    }

    fn push(title: &str, body: &str) -> VendorPush {
        VendorPush {
            push_type: PushType::Alert,
            title: title.to_owned(),
            body: body.to_owned(),
            badge: Some(3),
            sound: Some("default".to_owned()),
            priority: Priority::High,
            collapse_id: None,
            ttl: None,
            created_at: at(),
            thread_id: Some("team-1".to_owned()),
            data: BTreeMap::from([("msg".to_owned(), "m-1".to_owned())]),
        }
    }

    #[test]
    fn short_text_is_left_alone() {
        assert_eq!(truncate_chars("hello", 5), "hello");
        assert_eq!(truncate_chars("hello", 100), "hello");
        assert_eq!(truncate_chars("", 0), "");
    }

    #[test]
    fn cut_text_ends_in_an_ellipsis_within_the_limit() {
        assert_eq!(truncate_chars("hello world", 6), "hello…");
        assert_eq!(truncate_chars("hello", 1), "…");
        assert_eq!(truncate_chars("hello", 0), "");
    }

    #[test]
    fn cjk_text_is_cut_between_characters() {
        let s = "你好世界，今天天气很好";
        assert_eq!(truncate_chars(s, 5), "你好世界…");
        assert_eq!(truncate_chars(s, 11), s);
        for max in 0..=12 {
            let t = truncate_chars(s, max);
            assert!(t.chars().count() <= max, "{max}: {t}");
            assert!(s.starts_with(t.trim_end_matches('…')), "{max}: {t}");
        }
    }

    #[test]
    fn emoji_are_never_split() {
        let s = "🎉🎉🎉🎉";
        assert_eq!(truncate_chars(s, 3), "🎉🎉…");
        assert_eq!(truncate_chars("a😀b", 2), "a…");
        assert_eq!(truncate_chars("😀😀", 2), "😀😀");
    }

    #[test]
    fn a_push_within_the_limit_is_unchanged() {
        let vendor = JsonVendor { limit: 4096 };
        let mut p = push("Alice", "hi");
        let before = p.clone();
        assert!(fit(&mut p, &vendor));
        assert_eq!(p, before);
    }

    #[test]
    fn ten_thousand_cjk_chars_are_cut_to_the_longest_body_under_4096_bytes() {
        let vendor = JsonVendor { limit: 4096 };
        let original = "汉".repeat(10_000);
        let mut p = push("Alice", &original);
        assert!(fit(&mut p, &vendor));
        assert!(vendor.payload_size(&p) <= 4096);
        assert!(p.body.ends_with('…'));
        assert!(original.starts_with(p.body.trim_end_matches('…')));
        assert_eq!(p.title, "Alice");
        // Longest: one more character would not fit.
        let kept = p.body.chars().count();
        let mut longer = p.clone();
        longer.body = truncate_chars(&original, kept + 1);
        assert!(vendor.payload_size(&longer) > 4096);
    }

    #[test]
    fn emoji_body_is_cut_on_a_char_boundary_to_fit() {
        let vendor = JsonVendor { limit: 2048 };
        let mut p = push("Alice", &"👍🏽".repeat(2_000));
        assert!(fit(&mut p, &vendor));
        assert!(vendor.payload_size(&p) <= 2048);
        assert!(p.body.chars().all(|c| c == '👍' || c == '🏽' || c == '…'));
    }

    #[test]
    fn title_is_shortened_when_the_body_alone_cannot_fit() {
        let vendor = JsonVendor { limit: 600 };
        let mut p = push(&"标题".repeat(300), &"正文".repeat(300));
        assert!(fit(&mut p, &vendor));
        assert!(vendor.payload_size(&p) <= 600);
        assert_eq!(p.body, "");
        assert!(p.title.ends_with('…') && p.title.starts_with("标题"));
    }

    #[test]
    fn a_push_whose_data_alone_is_too_large_does_not_fit() {
        let vendor = JsonVendor { limit: 256 };
        let mut p = push("Alice", "hi");
        p.data.insert("blob".to_owned(), "x".repeat(1_000));
        assert!(!fit(&mut p, &vendor));
        assert_eq!((p.title.as_str(), p.body.as_str()), ("", ""));
    }

    #[test]
    fn json_escapes_count_toward_the_limit() {
        let vendor = JsonVendor { limit: 400 };
        let mut p = push("Alice", &"\"\\\n".repeat(200));
        assert!(fit(&mut p, &vendor));
        assert!(vendor.payload_size(&p) <= 400);
        assert!(p.body.ends_with('…'));
    }
}
