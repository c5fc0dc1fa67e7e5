//! How `nvmfcheck run` shows a run's events on stdout: as text for people
//! (the default; the QEMU runner streams it) or as one JSON object per
//! line for CI systems.

use std::io::{self, Write};

use nvmfcheck::suite::report::{Report, Status};
use nvmfcheck::suite::Event;

/// The form of the progress on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A line per category, case and step, each step with its time.
    Human,
    /// One JSON object per event per line, `{"event": "step_ended", ...}`.
    Json,
}

/// Writes `event` to `out` in `format`, flushed: a step's name shows while
/// it runs.
pub fn show(format: Format, event: &Event, out: &mut impl Write) -> io::Result<()> {
    match format {
        Format::Human => human(event, out)?,
        Format::Json => {
            serde_json::to_writer(&mut *out, event)?;
            writeln!(out)?;
        }
    }
    out.flush()
}

/// The end of the human form, from the collected report: a table of the
/// fio steps, if any, and the counts of cases.
pub fn summary(report: &Report, out: &mut impl Write) -> io::Result<()> {
    if let Some(table) = report.fio_table() {
        writeln!(out, "fio steps:")?;
        write!(out, "{table}")?;
    }
    let (passed, failed, skipped) = report.counts();
    writeln!(out, "{passed} passed, {failed} failed, {skipped} skipped")?;
    out.flush()
}

/// The lines of the NixOS test driver: a step's name, then on the same line
/// its time once it ended.
fn human(event: &Event, out: &mut impl Write) -> io::Result<()> {
    match event {
        Event::CategorySkipped { name, reason } => writeln!(out, "{name}: skipped: {reason}"),
        Event::CategoryStarted { name, about, cases } => {
            writeln!(out, "{name}: {about} ({cases} cases)")
        }
        Event::CaseStarted { name, about } => writeln!(out, "  {name}: {about}"),
        Event::StepStarted { name } => write!(out, "    {name} ..."),
        Event::StepEnded {
            status,
            duration_secs,
            error,
            ..
        } => {
            let verdict = if *status == Status::Passed {
                ""
            } else {
                " FAILED"
            };
            writeln!(out, "{verdict} ({duration_secs:.2} seconds)")?;
            for line in error.iter().flat_map(|e| e.lines()) {
                writeln!(out, "      {line}")?;
            }
            Ok(())
        }
        Event::StepNote { text } => writeln!(out, "      {text}"),
        Event::StateLeft { state } => writeln!(
            out,
            "      left for the next category: {} bytes at {} of {}, sha256 {}",
            state.size, state.offset, state.disk, state.sha256
        ),
        Event::CaseEnded {
            name,
            status,
            duration_secs,
            error,
        } => {
            let word = match status {
                Status::Passed => "passed".to_string(),
                Status::Skipped => format!("skipped: {}", error.as_deref().unwrap_or_default()),
                Status::Failed => "FAILED".to_string(),
            };
            writeln!(out, "  {name} {word} ({duration_secs:.2} seconds)")
        }
        Event::CategoryEnded {
            name,
            status,
            duration_secs,
        } => {
            let word = if *status == Status::Passed {
                "passed"
            } else {
                "FAILED"
            };
            writeln!(out, "{name} {word} ({duration_secs:.2} seconds)")
        }
        // The human form ends with the summary of the collected report.
        Event::RunEnded { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvmfcheck::suite::report::Versions;

    /// The events of a small run: a category with a passing case (a step
    /// with a note, a cleanup step), a failing case, then a skipped
    /// dependant.
    fn small_run() -> Vec<Event> {
        let step = |name: &str, error: Option<&str>| Event::StepEnded {
            name: name.into(),
            status: if error.is_some() {
                Status::Failed
            } else {
                Status::Passed
            },
            duration_secs: 0.25,
            error: error.map(String::from),
            fio: None,
        };
        let started = |name: &str| Event::StepStarted { name: name.into() };
        let case_ended = |name: &str, status, error: Option<&str>| Event::CaseEnded {
            name: name.into(),
            status,
            duration_secs: 1.5,
            error: error.map(String::from),
        };
        vec![
            Event::CategoryStarted {
                name: "basic".into(),
                about: "the basics".into(),
                cases: 2,
            },
            Event::CaseStarted {
                name: "ok".into(),
                about: "passes".into(),
            },
            started("should pass"),
            step("should pass", None),
            Event::StepNote {
                text: "longest I/O stall 2.1 s".into(),
            },
            started("cleanup: should clean up"),
            step("cleanup: should clean up", None),
            case_ended("ok", Status::Passed, None),
            Event::CaseStarted {
                name: "bad".into(),
                about: "fails".into(),
            },
            started("should fail"),
            step("should fail", Some("deliberate\nsecond line")),
            case_ended("bad", Status::Failed, Some("deliberate")),
            Event::CategoryEnded {
                name: "basic".into(),
                status: Status::Failed,
                duration_secs: 3.0,
            },
            Event::CategorySkipped {
                name: "io".into(),
                reason: "basic failed".into(),
            },
            Event::RunEnded {
                status: Status::Failed,
                target: "192.168.1.2:10124".into(),
                started_unix: 0,
                duration_secs: 3.0,
                versions: Versions::default(),
            },
        ]
    }

    fn render(format: Format) -> String {
        let mut out = Vec::new();
        for event in small_run() {
            show(format, &event, &mut out).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn people_read_the_lines_of_the_nixos_test_driver() {
        assert_eq!(
            render(Format::Human),
            "basic: the basics (2 cases)\n\
             \x20 ok: passes\n\
             \x20   should pass ... (0.25 seconds)\n\
             \x20     longest I/O stall 2.1 s\n\
             \x20   cleanup: should clean up ... (0.25 seconds)\n\
             \x20 ok passed (1.50 seconds)\n\
             \x20 bad: fails\n\
             \x20   should fail ... FAILED (0.25 seconds)\n\
             \x20     deliberate\n\
             \x20     second line\n\
             \x20 bad FAILED (1.50 seconds)\n\
             basic FAILED (3.00 seconds)\n\
             io: skipped: basic failed\n"
        );
    }

    #[test]
    fn the_json_stream_is_one_event_per_line_in_order() {
        let text = render(Format::Json);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let events: Vec<serde_json::Value> = small_run()
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_eq!(lines, events);
        // The variant names the event, in snake case, as the README says.
        assert_eq!(lines[3]["event"], "step_ended");
        assert_eq!(lines[3]["status"], "passed");
        assert_eq!(lines[10]["error"], "deliberate\nsecond line");
        assert_eq!(lines[14]["event"], "run_ended");
        // A consumer in Rust reads the same events back.
        for line in text.lines() {
            serde_json::from_str::<Event>(line).unwrap();
        }
    }
}
