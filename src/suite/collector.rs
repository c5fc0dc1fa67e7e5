//! Turning a run's events into its [`Report`], the one source of
//! `report.json` and `junit.xml`.

use super::event::Event;
use super::report::{CaseReport, CategoryReport, Report, Status, StepReport, Versions, SCHEMA};

/// Builds the report of a run from its events, as they come.
pub(super) struct Collector {
    report: Report,
}

impl Default for Collector {
    fn default() -> Self {
        Self {
            report: Report {
                schema: SCHEMA,
                // Until the run says it ended, it did not pass.
                status: Status::Failed,
                error: None,
                target: String::new(),
                started_unix: 0,
                duration_secs: 0.0,
                versions: Versions::default(),
                categories: Vec::new(),
                state: None,
            },
        }
    }
}

impl Collector {
    /// Adds `event` to the report. A category or case that started and
    /// never ended reads as failed.
    pub(super) fn record(&mut self, event: Event) {
        match event {
            Event::CategorySkipped { name, reason } => {
                self.report.categories.push(CategoryReport {
                    name,
                    status: Status::Skipped,
                    reason: Some(reason),
                    duration_secs: 0.0,
                    cases: Vec::new(),
                });
            }
            Event::CategoryStarted { name, .. } => {
                // Its cases may write over what an earlier one left.
                self.report.state = None;
                self.report.categories.push(CategoryReport {
                    name,
                    status: Status::Failed,
                    reason: None,
                    duration_secs: 0.0,
                    cases: Vec::new(),
                });
            }
            Event::CaseStarted { name, .. } => {
                if let Some(category) = self.report.categories.last_mut() {
                    category.cases.push(CaseReport {
                        name,
                        status: Status::Failed,
                        duration_secs: 0.0,
                        error: None,
                        steps: Vec::new(),
                    });
                }
            }
            Event::StepStarted { .. } => {}
            Event::StepEnded {
                name,
                status,
                duration_secs,
                error,
                fio,
            } => {
                if let Some(case) = self.case() {
                    case.steps.push(StepReport {
                        name,
                        status,
                        duration_secs,
                        error,
                        fio,
                        note: None,
                    });
                }
            }
            Event::StepNote { text } => {
                if let Some(step) = self.case().and_then(|c| c.steps.last_mut()) {
                    step.note = Some(match step.note.take() {
                        Some(before) => format!("{before}; {text}"),
                        None => text,
                    });
                }
            }
            Event::StateLeft { state } => self.report.state = Some(state),
            Event::CaseEnded {
                status,
                duration_secs,
                error,
                ..
            } => {
                if let Some(case) = self.case() {
                    case.status = status;
                    case.duration_secs = duration_secs;
                    case.error = error;
                }
            }
            Event::CategoryEnded {
                status,
                duration_secs,
                ..
            } => {
                if let Some(category) = self.report.categories.last_mut() {
                    category.status = status;
                    category.duration_secs = duration_secs;
                }
            }
            Event::RunEnded {
                status,
                target,
                started_unix,
                duration_secs,
                versions,
            } => {
                let report = &mut self.report;
                report.status = status;
                report.target = target;
                report.started_unix = started_unix;
                report.duration_secs = duration_secs;
                report.versions = versions;
            }
        }
    }

    /// The report of the events so far.
    pub(super) fn into_report(self) -> Report {
        self.report
    }

    /// The case last started.
    fn case(&mut self) -> Option<&mut CaseReport> {
        self.report.categories.last_mut()?.cases.last_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str) -> Event {
        Event::StepEnded {
            name: name.into(),
            status: Status::Passed,
            duration_secs: 0.5,
            error: None,
            fio: None,
        }
    }

    #[test]
    fn notes_join_on_the_step_they_follow_and_an_unended_run_failed() {
        let mut collector = Collector::default();
        for event in [
            Event::CategoryStarted {
                name: "io".into(),
                about: String::new(),
                cases: 1,
            },
            Event::CaseStarted {
                name: "reset".into(),
                about: String::new(),
            },
            step("should connect"),
            step("should verify"),
            Event::StepNote { text: "a".into() },
            Event::StepNote { text: "b".into() },
        ] {
            collector.record(event);
        }
        let report = collector.into_report();
        let case = &report.categories[0].cases[0];
        let notes: Vec<Option<&str>> = case.steps.iter().map(|s| s.note.as_deref()).collect();
        assert_eq!(notes, [None, Some("a; b")]);
        assert_eq!(case.status, Status::Failed);
        assert_eq!(report.categories[0].status, Status::Failed);
        assert_eq!(report.status, Status::Failed);
    }

    #[test]
    fn the_report_keeps_the_data_set_only_until_another_category_starts() {
        let state = crate::suite::state::DataSet {
            disk: "aio:///dev/vdb".into(),
            offset: 0,
            size: 4096,
            job: crate::suite::state::JobParams::data_set(),
            sha256: "0".repeat(64),
        };
        let started = |name: &str| Event::CategoryStarted {
            name: name.into(),
            about: String::new(),
            cases: 1,
        };
        let mut collector = Collector::default();
        collector.record(started("basic"));
        collector.record(Event::StateLeft {
            state: state.clone(),
        });
        let mut io = Collector::default();
        for e in [
            started("basic"),
            Event::StateLeft {
                state: state.clone(),
            },
            started("io"),
        ] {
            io.record(e);
        }
        assert_eq!(collector.into_report().state, Some(state));
        // io's cases write over what basic left.
        assert_eq!(io.into_report().state, None);
    }
}
