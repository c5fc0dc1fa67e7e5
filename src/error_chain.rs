//! One way to put an error and its causes on one line, for reports,
//! progress and messages alike.

use std::error::Error;
use std::fmt::Write;

/// `error: cause: inner cause`: the error's message, then each of its
/// `source()`s in turn, so that a message says why all the way down. A
/// cause the message already ends with (an error whose message shows its
/// source, `"{what}: {source}"`) is not said twice.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.ends_with(&said) {
            // Writing into a String cannot fail.
            let _ = write!(text, ": {said}");
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn joins_each_cause_after_the_error() {
        let inner = std::io::Error::other("innermost");
        assert_eq!(chain(&Outer(inner)), "outer: innermost");
        assert_eq!(chain(&std::io::Error::other("alone")), "alone");
        // A message that shows its source already says it once.
        #[derive(Debug, thiserror::Error)]
        #[error("phase boot: {source}")]
        struct Shows {
            source: Outer,
        }
        let shows = Shows {
            source: Outer(std::io::Error::other("innermost")),
        };
        assert_eq!(chain(&shows), "phase boot: outer: innermost");
    }
}
