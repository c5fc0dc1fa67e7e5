//! Bounds on what a request may carry and on what the agent says back, so
//! that no input, however large, turns into a huge reply header, log line
//! or allocation.
//!
//! - A request message is at most [`MAX_REQUEST_LEN`] bytes: tonic refuses
//!   a larger one from its length prefix, before reading it, with
//!   `OUT_OF_RANGE` naming the limit. Every legitimate request is far
//!   smaller (each string field is at most [`MAX_ARG_LEN`]).
//! - Each string field is at most [`MAX_ARG_LEN`] bytes, or the call is
//!   `INVALID_ARGUMENT`.
//! - A status message is at most [`MAX_MESSAGE_LEN`] bytes ([`status`]):
//!   it travels as an HTTP/2 header, and a stock client refuses a header
//!   list over 16 KiB with a protocol error instead of the status.

use tonic::{Code, Status};

/// The longest string field a request may have, in bytes.
pub const MAX_ARG_LEN: usize = 4096;

/// The longest status message the agent sends, in bytes.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// The largest request message the gRPC services decode, in bytes.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// A request argument as it appears in messages and logs: escaped once
/// (control characters and quotes as Rust escapes), quoted, and cut short
/// after 120 characters with its length in bytes.
pub fn shown(arg: &str) -> String {
    let escaped = arg.escape_debug().to_string();
    match escaped.char_indices().nth(120) {
        Some((cut, _)) => format!("\"{}...\" ({} bytes)", &escaped[..cut], arg.len()),
        None => format!("\"{escaped}\""),
    }
}

/// How many items of a list [`shown_list`] shows.
const LIST_ITEMS_SHOWN: usize = 8;

/// A list of request arguments as it appears in messages and logs: each
/// item [`shown`], the first eight only, then how many more there are.
pub fn shown_list(args: &[String]) -> String {
    let mut items: Vec<String> = args
        .iter()
        .take(LIST_ITEMS_SHOWN)
        .map(|a| shown(a))
        .collect();
    if args.len() > LIST_ITEMS_SHOWN {
        items.push(format!("... {} more", args.len() - LIST_ITEMS_SHOWN));
    }
    format!("[{}]", items.join(", "))
}

/// A status with `message` cut to [`MAX_MESSAGE_LEN`] bytes (at a
/// character boundary, ending in `...` when cut).
pub fn status(code: Code, message: String) -> Status {
    Status::new(code, capped(message))
}

fn capped(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_LEN {
        let mut cut = MAX_MESSAGE_LEN - 3;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_escaped_once_and_cut() {
        assert_eq!(shown("m0"), "\"m0\"");
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        let long = shown(&"x".repeat(5000));
        assert!(long.len() < 200 && long.ends_with("(5000 bytes)"), "{long}");
    }

    #[test]
    fn lists_are_shown_item_by_item_and_cut() {
        assert_eq!(shown_list(&[]), "[]");
        assert_eq!(shown_list(&["a".into(), "b\n".into()]), "[\"a\", \"b\\n\"]");
        let many: Vec<String> = (0..70).map(|i| i.to_string()).collect();
        let s = shown_list(&many);
        assert!(
            s.starts_with("[\"0\", \"1\"") && s.ends_with("\"7\", ... 62 more]"),
            "{s}"
        );
    }

    #[test]
    fn messages_are_cut_at_a_character_boundary() {
        assert_eq!(capped("short".into()), "short");
        let exact = "y".repeat(MAX_MESSAGE_LEN);
        assert_eq!(capped(exact.clone()), exact);
        for long in ["x".repeat(5000), "é".repeat(3000), "€".repeat(2000)] {
            let m = capped(long);
            assert!(
                m.len() <= MAX_MESSAGE_LEN && m.ends_with("..."),
                "{}",
                m.len()
            );
        }
        let s = status(Code::InvalidArgument, "z".repeat(1 << 20));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().len() <= MAX_MESSAGE_LEN);
    }

    /// Properties over generated arguments (see `crate::props`).
    mod props {
        use proptest::prelude::*;

        use super::super::*;
        use crate::props::{assert_clean, config, text};

        /// The most bytes [`shown`] gives: 120 characters escaped to at
        /// most 10 bytes each (`\u{10ffff}`), the quotes, the dots and the
        /// length.
        const SHOWN_MAX: usize = 120 * 10 + 40;

        /// Text of up to about 2 KiB: a short text repeated, which is
        /// quicker to make than as many characters one by one.
        fn long_text() -> impl Strategy<Value = String> {
            (text(40), 1..50usize).prop_map(|(t, n)| t.repeat(n))
        }

        proptest! {
            #![proptest_config(config(256))]

            #[test]
            fn an_argument_is_shown_as_one_bounded_line(arg in long_text()) {
                let s = shown(&arg);
                assert_clean(&s, SHOWN_MAX);
                if arg.len() <= 120 && arg.chars().all(|c| c.is_ascii_alphanumeric()) {
                    prop_assert_eq!(s, format!("\"{arg}\""));
                }
            }

            #[test]
            fn a_list_is_shown_as_one_bounded_line(
                args in proptest::collection::vec(text(20), 0..12)
            ) {
                assert_clean(&shown_list(&args), LIST_ITEMS_SHOWN * (SHOWN_MAX + 2) + 40);
            }

            #[test]
            fn a_capped_message_keeps_its_start(message in long_text()) {
                let m = capped(message.clone());
                if message.len() <= MAX_MESSAGE_LEN {
                    prop_assert_eq!(m, message);
                } else {
                    let start = m.strip_suffix("...").expect("a cut message ends in ...");
                    prop_assert!(message.starts_with(start));
                    // Cut at the last character boundary before the limit.
                    prop_assert!(m.len() <= MAX_MESSAGE_LEN && m.len() > MAX_MESSAGE_LEN - 4);
                }
            }
        }
    }
}
