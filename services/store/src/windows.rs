//! Listing a large prefix in windows of its key space, so that each read costs etcd the
//! keys of its window and not every key left under the prefix.
//!
//! etcd 3.4 and 3.5 answer a range with a limit by walking every key of the range to count
//! them, so listing a prefix of N keys in pages of P costs N²/2P key visits: at 500,000
//! phones in pages of 1,000, 125 million, minutes of etcd's CPU for one edge starting
//! (`fleet-bench`'s power cut: 3 to 5.5 minutes an edge). Most large prefixes here end in
//! UUIDs or hashes (phones, bindings, indexes: uniform hex), so the listing walks 256
//! windows, one per first two hex digits after the prefix, each a few thousand keys at a
//! million. Any key lands in exactly one window (the first starts at the prefix, the last
//! runs to its end), so the listing is whole whatever the keys look like; only its cost
//! assumes hex.
//!
//! A prefix that fits in one page is read in one request, as before.

/// Which part of the prefix a read covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Span {
    /// The whole prefix: the first read.
    Whole,
    /// Window `b`: keys below the prefix followed by `b + 1` in two hex digits (and above
    /// the cursor).
    Window(u8),
    /// Every key above the cursor: the last window, or the rest after a key that does not
    /// start with two hex digits.
    Rest,
}

impl Span {
    /// Where the read ends (exclusive); none: at the end of the prefix.
    pub(crate) fn end(self, prefix: &str) -> Option<String> {
        match self {
            Span::Window(b) if b < u8::MAX => Some(format!("{prefix}{:02x}", b + 1)),
            _ => None,
        }
    }

    /// The span of the next read, after one that returned `more` (keys left in this span)
    /// and ended at key suffix `last` (after the prefix); none when the listing is done.
    pub(crate) fn next(self, more: bool, last: Option<&str>) -> Option<Span> {
        match (self, more) {
            (Span::Whole, false) | (Span::Rest, false) => None,
            (Span::Whole, true) => Some(last.and_then(window_of).map_or(Span::Rest, Span::Window)),
            (Span::Window(u8::MAX), false) => None,
            (Span::Window(b), false) => Some(Span::Window(b + 1)),
            (span, true) => Some(span),
        }
    }
}

/// The window a key suffix falls in by its first two hex digits (lowercase, as ids are
/// written); none when it does not start with them. Also the config role's windows over
/// its indexes (`list.rs`).
pub fn window_of(suffix: &str) -> Option<u8> {
    let head = suffix.get(..2)?;
    if !head
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u8::from_str_radix(head, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_windows_cover_the_prefix_once_in_key_order() {
        // (case, span read, more, its last key's suffix, the next span)
        type Case = (&'static str, Span, bool, Option<&'static str>, Option<Span>);
        let cases: Vec<Case> = vec![
            ("one page held it all", Span::Whole, false, Some("9a"), None),
            ("an empty prefix", Span::Whole, false, None, None),
            (
                "more: the last key's window",
                Span::Whole,
                true,
                Some("3f0c-x"),
                Some(Span::Window(0x3f)),
            ),
            (
                "more after a key that is not hex",
                Span::Whole,
                true,
                Some("sim-1"),
                Some(Span::Rest),
            ),
            (
                "upper case is not an id",
                Span::Whole,
                true,
                Some("AB"),
                Some(Span::Rest),
            ),
            (
                "a window with more",
                Span::Window(7),
                true,
                Some("07ff"),
                Some(Span::Window(7)),
            ),
            (
                "a window done: the next",
                Span::Window(7),
                false,
                None,
                Some(Span::Window(8)),
            ),
            (
                "the last window done",
                Span::Window(0xff),
                false,
                Some("ffee"),
                None,
            ),
            (
                "the rest with more",
                Span::Rest,
                true,
                Some("zz"),
                Some(Span::Rest),
            ),
            ("the rest done", Span::Rest, false, None, None),
        ];
        for (name, span, more, last, want) in cases {
            assert_eq!(span.next(more, last), want, "{name}");
        }
    }

    #[test]
    fn a_window_ends_where_the_next_begins_and_the_last_at_the_prefix_end() {
        assert_eq!(Span::Window(0).end("p/"), Some("p/01".into()));
        assert_eq!(Span::Window(0x9f).end("p/"), Some("p/a0".into()));
        assert_eq!(Span::Window(0xfe).end("p/"), Some("p/ff".into()));
        assert_eq!(Span::Window(0xff).end("p/"), None);
        assert_eq!(Span::Whole.end("p/"), None);
        assert_eq!(Span::Rest.end("p/"), None);
    }
}
