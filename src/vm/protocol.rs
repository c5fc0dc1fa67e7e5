//! The host↔guest control protocol: line-delimited JSON over virtio-serial
//! ports.
//!
//! Host → guest: `{"hello": nonce}` and `{"id", "argv", "env",
//! "timeout_secs"}`. Guest → host: `{"hello": nonce, "name"}`, then per
//! command any number of `{"id", "stdout"}` / `{"id", "stderr"}` chunks and
//! one `{"id", "exit": code}` or `{"id", "error": text}`. Several commands
//! may run at once. A host connection is a session: lines that arrive before
//! the answer to this connection's hello are stale and skipped, and the
//! guest kills a session's commands when the host disconnects.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The virtio-serial ports' names (`/sys/class/virtio-ports/*/name`) are
/// this plus `.0`, `.1`, ….
pub const PORT_NAME: &str = "nvmfcheck.ctl";
/// Control ports per VM: one host connection each.
pub const CTL_PORTS: usize = 4;

/// Longest line either end reads (see [`LineSplitter`]); the rest of a
/// longer one is dropped, which makes it unreadable JSON. A reply carries at
/// most 16 KiB of output, escaped: far less.
pub const MAX_LINE: usize = 1 << 20;

/// A message from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Request {
    /// Opens a session; the guest answers with the same nonce.
    Hello {
        /// Chosen by the host for this connection.
        hello: String,
    },
    /// Runs a command.
    Exec(ExecRequest),
}

/// One command to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Chosen by the host, unique within the session.
    pub id: u64,
    /// Program and arguments; the program is looked up on `PATH`.
    pub argv: Vec<String>,
    /// Added to the guest's base environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The guest kills the command (its process group) after this long.
    pub timeout_secs: u64,
}

/// A message from the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    /// Answers a hello.
    Hello {
        /// The host's nonce.
        hello: String,
        /// Which VM answered (its name).
        name: String,
    },
    /// Output on stdout.
    Stdout {
        /// The command.
        id: u64,
        /// A chunk, lossily decoded as UTF-8.
        stdout: String,
    },
    /// Output on stderr.
    Stderr {
        /// The command.
        id: u64,
        /// A chunk, lossily decoded as UTF-8.
        stderr: String,
    },
    /// The command exited; a signal `n` is reported as `128 + n`.
    Exit {
        /// The command.
        id: u64,
        /// Its exit status.
        exit: i32,
    },
    /// The command could not run or was killed at its deadline.
    Error {
        /// The command.
        id: u64,
        /// What went wrong.
        error: String,
    },
}

/// Serializes a message as one line.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Splits a byte stream into lines (without their `\n`), lossily decoded
/// as UTF-8, each cut to a limit ([`MAX_LINE`] by default): the rest of a
/// longer line is dropped, which makes it unreadable JSON, so that no peer
/// can make a reader hold more than the limit.
#[derive(Debug)]
pub struct LineSplitter {
    line: Vec<u8>,
    max_line: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new(MAX_LINE)
    }
}

impl LineSplitter {
    /// A splitter that keeps at most `max_line` bytes of a line.
    pub fn new(max_line: usize) -> Self {
        Self {
            line: Vec::new(),
            max_line,
        }
    }

    /// The lines that `chunk` ends; the start of the next is kept.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for piece in chunk.split_inclusive(|&b| b == b'\n') {
            let (body, ended) = match piece.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (piece, false),
            };
            let room = self.max_line - self.line.len();
            self.line.extend_from_slice(&body[..body.len().min(room)]);
            if ended {
                lines.push(String::from_utf8_lossy(&self.line).into_owned());
                self.line.clear();
            }
        }
        lines
    }

    /// Drops a line begun and not ended (the peer went away).
    pub fn clear(&mut self) {
        self.line.clear();
    }
}

/// Turns byte chunks into UTF-8 text without splitting a character that
/// straddles two chunks; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    /// Text of `chunk`, keeping an incomplete trailing character for later.
    pub fn push(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let len = self.pending.len();
        // The one suffix (1 to 3 bytes) that is the start of a character.
        let keep = (1..=len.min(3))
            .find(|&k| {
                std::str::from_utf8(&self.pending[len - k..])
                    .is_err_and(|e| e.valid_up_to() == 0 && e.error_len().is_none())
            })
            .unwrap_or(0);
        let rest = self.pending.split_off(self.pending.len() - keep);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }

    /// Whatever is left, at the end of the stream.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_documented_shape() {
        let req = Request::Exec(ExecRequest {
            id: 7,
            argv: vec!["nvme".into(), "version".into()],
            env: BTreeMap::new(),
            timeout_secs: 30,
        });
        let line = encode(&req);
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "{\"id\":7,\"argv\":[\"nvme\",\"version\"],\"env\":{},\"timeout_secs\":30}\n"
        );
        assert_eq!(serde_json::from_slice::<Request>(&line).unwrap(), req);
        let hello: Request = serde_json::from_str("{\"hello\":\"n\"}").unwrap();
        assert_eq!(hello, Request::Hello { hello: "n".into() });
        for (text, reply) in [
            (
                "{\"id\":1,\"stdout\":\"x\"}",
                Reply::Stdout {
                    id: 1,
                    stdout: "x".into(),
                },
            ),
            (
                "{\"id\":1,\"stderr\":\"y\"}",
                Reply::Stderr {
                    id: 1,
                    stderr: "y".into(),
                },
            ),
            ("{\"id\":1,\"exit\":3}", Reply::Exit { id: 1, exit: 3 }),
            (
                "{\"id\":1,\"error\":\"e\"}",
                Reply::Error {
                    id: 1,
                    error: "e".into(),
                },
            ),
            (
                "{\"hello\":\"n\",\"name\":\"target\"}",
                Reply::Hello {
                    hello: "n".into(),
                    name: "target".into(),
                },
            ),
        ] {
            assert_eq!(
                serde_json::from_str::<Reply>(text).unwrap(),
                reply,
                "{text}"
            );
            assert_eq!(encode(&reply), format!("{text}\n").into_bytes());
        }
    }

    #[test]
    fn utf8_is_not_split_across_chunks() {
        let mut c = Utf8Carry::default();
        let snow = "☃".as_bytes();
        assert_eq!(c.push(&[b'a', snow[0]]), "a");
        assert_eq!(c.push(&snow[1..]), "☃");
        assert_eq!(c.push(&[0xff, b'b']), "\u{fffd}b");
        assert_eq!(c.push(&[b'c', snow[0], snow[1]]), "c");
        assert_eq!(c.finish(), "\u{fffd}");
    }

    /// Properties over generated messages and byte streams (see
    /// `crate::props`).
    mod props {
        use proptest::prelude::*;

        use super::super::*;
        use crate::props::{config, mutated, text};

        fn request() -> impl Strategy<Value = Request> {
            let exec = (
                any::<u64>(),
                proptest::collection::vec(text(12), 0..4),
                proptest::collection::btree_map(text(8), text(8), 0..3),
                any::<u64>(),
            )
                .prop_map(|(id, argv, env, timeout_secs)| {
                    Request::Exec(ExecRequest {
                        id,
                        argv,
                        env,
                        timeout_secs,
                    })
                });
            prop_oneof![text(40).prop_map(|hello| Request::Hello { hello }), exec]
        }

        fn reply() -> impl Strategy<Value = Reply> {
            prop_oneof![
                (text(40), "[a-z0-9]{1,8}").prop_map(|(hello, name)| Reply::Hello { hello, name }),
                (any::<u64>(), text(40)).prop_map(|(id, stdout)| Reply::Stdout { id, stdout }),
                (any::<u64>(), text(40)).prop_map(|(id, stderr)| Reply::Stderr { id, stderr }),
                (any::<u64>(), any::<i32>()).prop_map(|(id, exit)| Reply::Exit { id, exit }),
                (any::<u64>(), text(40)).prop_map(|(id, error)| Reply::Error { id, error }),
            ]
        }

        /// `bytes` cut into chunks at the offsets `cuts` picks, as reads
        /// of a stream return them.
        fn chunks<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            at.extend([0, bytes.len()]);
            at.sort_unstable();
            at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
        }

        /// Bytes with many newlines and much broken UTF-8.
        fn stream() -> impl Strategy<Value = Vec<u8>> {
            let byte =
                prop_oneof![2 => Just(b'\n'), 1 => Just(0xe2), 1 => Just(0x98), 6 => any::<u8>()];
            proptest::collection::vec(byte, 0..200)
        }

        /// What the guest's seed replies look like on the wire.
        const SEEDS: &str = "{\"hello\":\"n\",\"name\":\"target\"}\n{\"id\":1,\"stdout\":\"x\"}\n\
            {\"id\":1,\"exit\":3}\n{\"id\":7,\"argv\":[\"nvme\",\"version\"],\"env\":{},\"timeout_secs\":30}\n";

        proptest! {
            #![proptest_config(config(256))]

            /// A message is one line, whatever its strings hold, and reads
            /// back as itself through the splitter.
            #[test]
            fn messages_are_one_line_and_round_trip(req in request(), rep in reply()) {
                for (line, back) in [
                    (encode(&req), serde_json::to_value(&req).unwrap()),
                    (encode(&rep), serde_json::to_value(&rep).unwrap()),
                ] {
                    prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
                    let lines = LineSplitter::default().push(&line);
                    prop_assert_eq!(lines.len(), 1);
                    prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&lines[0]).unwrap(), back);
                }
                let line = String::from_utf8(encode(&req)).unwrap();
                prop_assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), req);
                let line = String::from_utf8(encode(&rep)).unwrap();
                prop_assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), rep);
            }

            /// Any bytes, in any chunks, are the lines between their
            /// newlines, each cut to the limit; the splitter holds no more
            /// than the limit; each line is a message or refused.
            #[test]
            fn streams_split_into_bounded_lines(
                bytes in prop_oneof![stream(), mutated(SEEDS).prop_map(String::into_bytes)],
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
                max_line in 0..64usize,
            ) {
                let mut split = LineSplitter::new(max_line);
                let mut lines = Vec::new();
                for chunk in chunks(&bytes, &cuts) {
                    lines.extend(split.push(chunk));
                    prop_assert!(split.line.len() <= max_line);
                }
                let mut expected: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
                expected.pop(); // what follows the last newline is no line yet
                let expected: Vec<String> = expected
                    .iter()
                    .map(|l| String::from_utf8_lossy(&l[..l.len().min(max_line)]).into_owned())
                    .collect();
                prop_assert_eq!(&lines, &expected);
                for line in lines {
                    let _ = serde_json::from_str::<Request>(&line);
                    let _ = serde_json::from_str::<Reply>(&line);
                }
            }

            /// Output read in any chunks is the text of all of it: no
            /// character split between two replies, nothing lost or added.
            #[test]
            fn output_chunks_decode_as_the_whole(
                bytes in prop_oneof![stream(), text(60).prop_map(String::into_bytes)],
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let mut carry = Utf8Carry::default();
                let mut text: String = chunks(&bytes, &cuts).into_iter().map(|c| carry.push(c)).collect();
                text.push_str(&carry.finish());
                prop_assert_eq!(text, String::from_utf8_lossy(&bytes));
            }
        }
    }
}
