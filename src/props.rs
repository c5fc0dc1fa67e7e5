//! What the property tests of the parsers of outside input share: how long
//! they run, the inputs they are generated from, and the checks every error
//! message must pass. The properties themselves sit beside each parser, in
//! a `props` module of its tests (bdev URIs, share URIs, host NQNs,
//! nvme-cli's and fio's output, the guest control protocol), so that they
//! can reach private functions; `cargo test --lib props` runs them all.
//!
//! Each property runs the number of cases its test gives [`config`] (128 to
//! 512, so that the whole set takes seconds in a debug build on two cores);
//! `PROPTEST_CASES=<n>` runs every property `n` cases instead, for a longer
//! search. A failure is shrunk to a small input and saved under
//! `proptest-regressions/` (one file per source file), which later runs try
//! first: commit it with the fix. Real-world inputs (captured nvme-cli and
//! fio output, the URIs upstream clients send, the protocol's documented
//! lines) are each module's seeds: checked as they are, and mangled by
//! [`mutated`] into near misses.

use proptest::prelude::*;
use proptest::test_runner::Config;

/// Longest message a parser's error may have: the agent's status cap, which
/// is also a line a person can read.
pub const MAX_MESSAGE_LEN: usize = crate::agent::limits::MAX_MESSAGE_LEN;

/// A run of `cases` cases, or of `PROPTEST_CASES` when that is set.
pub fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        ..Config::default()
    }
}

/// Fails unless `message` has no control character (not even a newline: an
/// error naming a bad input is one line) and at most `max` bytes.
pub fn assert_clean(message: &str, max: usize) {
    assert_one_line(message);
    assert!(
        message.len() <= max,
        "{} bytes, more than {max}: {message:?}",
        message.len()
    );
}

/// Fails unless `message` has no control character. For the reasons a
/// parser of a local program's output gives, which may be long: serde_json
/// quotes what it did not expect, escaped.
pub fn assert_one_line(message: &str) {
    assert!(
        !message.chars().any(char::is_control),
        "a control character in {message:?}"
    );
}

/// Characters that parsers treat specially or that must never reach a
/// message raw: URI delimiters, percent signs, quotes, C0 and C1 controls,
/// DEL, a right-to-left override and a non-character.
const AWKWARD: &[char] = &[
    '%', '/', '?', '#', '&', '=', ':', '@', '[', ']', '.', ',', ' ', '"', '\'', '`', '\\', '{',
    '}', '<', '>', '\0', '\t', '\n', '\r', '\x1b', '\x7f', '\u{85}', '\u{9b}', '\u{202e}',
    '\u{fffd}', '\u{ffff}',
];

/// One character: mostly ASCII, often an awkward one, sometimes any.
pub fn char_any() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        2 => proptest::sample::select(AWKWARD),
        1 => any::<char>(),
    ]
}

/// Text of up to `max` characters from [`char_any`].
pub fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(char_any(), 0..=max).prop_map(|c| c.into_iter().collect())
}

/// `seed` mangled the ways a broken or hostile peer mangles its output: cut
/// short, with a span of bytes overwritten, or with text inserted; as text
/// (invalid UTF-8 made U+FFFD, as a lossy reader would).
pub fn mutated(seed: &'static str) -> impl Strategy<Value = String> {
    let len = seed.len();
    let cut = (0..=len).prop_map(move |at| seed.as_bytes()[..at].to_vec());
    let overwrite =
        (0..=len, proptest::collection::vec(any::<u8>(), 1..8)).prop_map(move |(at, bytes)| {
            let mut b = seed.as_bytes().to_vec();
            for (i, x) in bytes.into_iter().enumerate() {
                if let Some(slot) = b.get_mut(at + i) {
                    *slot = x;
                }
            }
            b
        });
    let insert = (0..=len, text(12)).prop_map(move |(at, t)| {
        let mut b = seed.as_bytes().to_vec();
        b.splice(at..at, t.into_bytes());
        b
    });
    prop_oneof![cut, overwrite, insert].prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// A JSON scalar.
fn json_scalar() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text(16).prop_map(Value::from),
    ]
}

/// Any JSON document: scalars, and arrays and objects nested a few deep.
pub fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    json_scalar().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            proptest::collection::btree_map(text(10), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with some of `keys` (the fields a parser looks for) bound
/// to any JSON, mostly scalars of the wrong type, so that the parser gets
/// past its first field.
pub fn json_with(keys: &'static [&'static str]) -> impl Strategy<Value = serde_json::Value> {
    let value = prop_oneof![3 => json_scalar(), 1 => json()];
    proptest::collection::vec((proptest::sample::select(keys), value), 0..=keys.len()).prop_map(
        |pairs| {
            serde_json::Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        },
    )
}

/// What a program that should print a JSON document with the fields `keys`
/// may print instead: any text, any JSON, an object with some of `keys`
/// bound to anything, or its real output `seed` mangled.
pub fn json_output(
    keys: &'static [&'static str],
    seed: &'static str,
) -> impl Strategy<Value = String> {
    prop_oneof![
        text(60),
        json().prop_map(|v| v.to_string()),
        json_with(keys).prop_map(|v| v.to_string()),
        mutated(seed),
    ]
}

/// Any UUID but the nil one.
pub fn uuid() -> impl Strategy<Value = uuid::Uuid> {
    (1..=u128::MAX).prop_map(uuid::Uuid::from_u128)
}

/// Any IPv4 or IPv6 address.
pub fn ip() -> impl Strategy<Value = std::net::IpAddr> {
    prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(Into::into),
        any::<std::net::Ipv6Addr>().prop_map(Into::into),
    ]
}

/// An NQN `nvme::validate_nqn` accepts: `nqn.` and up to 219 printable
/// ASCII characters but the comma, among them `/`, `?`, `#`, `%` and `.`.
pub fn nqn() -> impl Strategy<Value = String> {
    let graphic = proptest::char::range('!', '~').prop_filter("no comma", |c| *c != ',');
    let tail = prop_oneof![
        3 => "[a-z0-9.:-]{1,40}",
        1 => proptest::collection::vec(graphic, 1..219).prop_map(|c| c.into_iter().collect()),
    ];
    tail.prop_map(|t: String| format!("nqn.{t}"))
}
