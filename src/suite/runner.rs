//! Ordering categories by their dependencies and running their cases.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::cmd::Cmd;
use crate::error_chain::chain;

use super::collector::Collector;
use super::event::{Event, Events};
use super::report::{Report, Status, Versions};
use super::{Case, Category, CheckError, Env, Steps};

/// Why a run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A category name that the registry lacks.
    #[error("unknown category {name:?}; known categories: {known} (see `nvmfcheck list`)")]
    UnknownCategory {
        /// What was asked for.
        name: String,
        /// The known names.
        known: String,
    },
    /// Nothing to run.
    #[error("no category given; known categories: {known}")]
    NoCategory {
        /// The known names.
        known: String,
    },
    /// A category's dependency is neither run now nor passed before.
    #[error(
        "category {category} depends on {dependency}, which {why}: run them together \
         (`nvmfcheck run {dependency} {category}`) or pass a report in which {dependency} \
         passed with --require-passed <report.json>"
    )]
    Dependency {
        /// The dependant.
        category: String,
        /// The dependency.
        dependency: String,
        /// What is known of the dependency.
        why: String,
    },
}

/// What to run.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Category names as given; run in dependency order.
    pub categories: Vec<String>,
    /// Only cases whose `category/case` name contains this.
    pub filter: Option<String>,
    /// An earlier report that vouches for dependencies not run now, and
    /// says what data set it left on the disk.
    pub prior: Option<Report>,
}

/// Picks the requested categories in dependency order, checking that every
/// dependency either runs first or passed in the prior report.
pub fn plan<'r>(
    registry: &'r [Category],
    opts: &RunOptions,
) -> Result<Vec<&'r Category>, RunError> {
    let known = || {
        registry
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if opts.categories.is_empty() {
        return Err(RunError::NoCategory { known: known() });
    }
    for name in &opts.categories {
        if !registry.iter().any(|c| c.name == name) {
            return Err(RunError::UnknownCategory {
                name: name.clone(),
                known: known(),
            });
        }
    }
    // The registry is kept in dependency order, so filtering it keeps that
    // order and running a dependency twice is impossible.
    let chosen: Vec<&Category> = registry
        .iter()
        .filter(|c| opts.categories.iter().any(|n| n == c.name))
        .collect();
    for cat in &chosen {
        for dep in cat.depends_on {
            if chosen.iter().any(|c| c.name == *dep) {
                continue;
            }
            let why = match opts.prior.as_ref().map(|r| r.category(dep)) {
                None => "is not run now and no earlier report was given".to_string(),
                Some(None) => "is not in the given report".to_string(),
                Some(Some(c)) if c.status == Status::Passed => continue,
                Some(Some(c)) => format!("did not pass in the given report ({:?})", c.status),
            };
            return Err(RunError::Dependency {
                category: cat.name.to_string(),
                dependency: dep.to_string(),
                why,
            });
        }
    }
    Ok(chosen)
}

/// Runs the planned categories against `env`, giving each event to
/// `progress` as it happens, and returns the report collected from the
/// events. Dependants of a category that did not pass are skipped, not
/// passed. The data set the prior report says was left (its `state`) is
/// what the run's cases find on the disk until one of them leaves another.
pub async fn run(
    plan: &[&Category],
    env: &Env,
    opts: &RunOptions,
    progress: &mut dyn FnMut(&Event),
) -> Report {
    if let Some(state) = opts.prior.as_ref().and_then(|r| r.state.clone()) {
        env.carried.set(Some(state));
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut collector = Collector::default();
    // Both in this task: the events are read while the run waits on a
    // step, so a step shows as soon as it starts. Reading ends when the
    // run, which holds every sender, is done.
    let read = async {
        while let Some(event) = rx.recv().await {
            progress(&event);
            collector.record(event);
        }
    };
    tokio::join!(run_plan(plan, env, opts, Events(tx)), read);
    collector.into_report()
}

async fn run_plan(plan: &[&Category], env: &Env, opts: &RunOptions, events: Events) {
    let started = Instant::now();
    let mut outcome: HashMap<&str, Status> = HashMap::new();
    if let Some(prior) = &opts.prior {
        for c in &prior.categories {
            if let Some(cat) = plan
                .iter()
                .flat_map(|p| p.depends_on)
                .find(|d| **d == c.name)
            {
                outcome.insert(cat, c.status);
            }
        }
    }
    let mut all_passed = true;
    for cat in plan {
        let status = run_category(cat, env, opts, &outcome, &events).await;
        outcome.insert(cat.name, status);
        all_passed &= status == Status::Passed;
    }
    let status = if all_passed {
        Status::Passed
    } else {
        Status::Failed
    };
    events.send(Event::RunEnded {
        status,
        target: env.settings.target.clone(),
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(started.elapsed().as_secs()),
        duration_secs: started.elapsed().as_secs_f64(),
        versions: versions().await,
    });
}

async fn run_category(
    cat: &Category,
    env: &Env,
    opts: &RunOptions,
    outcome: &HashMap<&str, Status>,
    events: &Events,
) -> Status {
    let skipped = |reason: String| {
        events.send(Event::CategorySkipped {
            name: cat.name.to_string(),
            reason,
        });
        Status::Skipped
    };
    for dep in cat.depends_on {
        match outcome.get(dep) {
            Some(Status::Passed) => {}
            Some(Status::Failed) => return skipped(format!("{dep} failed")),
            _ => return skipped(format!("{dep} did not run")),
        }
    }
    let cases: Vec<&Case> = cat
        .cases
        .iter()
        .filter(|c| match &opts.filter {
            Some(f) => format!("{}/{}", cat.name, c.name).contains(f.as_str()),
            None => true,
        })
        .collect();
    if cases.is_empty() {
        return skipped("no case matches --filter".to_string());
    }
    events.send(Event::CategoryStarted {
        name: cat.name.to_string(),
        about: cat.about.to_string(),
        cases: cases.len(),
    });
    let started = Instant::now();
    let mut statuses = Vec::new();
    for case in cases {
        statuses.push(run_case(case, env, events).await);
    }
    // A case the target cannot run is skipped, not failed; the category
    // passes if none failed and one passed.
    let status = if !statuses.contains(&Status::Failed) && statuses.contains(&Status::Passed) {
        Status::Passed
    } else {
        Status::Failed
    };
    events.send(Event::CategoryEnded {
        name: cat.name.to_string(),
        status,
        duration_secs: started.elapsed().as_secs_f64(),
    });
    status
}

async fn run_case(case: &Case, env: &Env, events: &Events) -> Status {
    events.send(Event::CaseStarted {
        name: case.name.to_string(),
        about: case.about.to_string(),
    });
    let started = Instant::now();
    let result = (case.run)(env, &mut Steps::new("", events.clone())).await;
    let unsupported = matches!(result, Err(CheckError::Unsupported(_)));
    let mut error = result.err().map(|e| chain(&e));
    if let Some(cleanup) = case.cleanup {
        let cleaned = cleanup(env, &mut Steps::new("cleanup: ", events.clone())).await;
        if let (None, Err(e)) = (&error, cleaned) {
            error = Some(format!("cleanup: {}", chain(&e)));
        }
    }
    let status = match (&error, unsupported) {
        (None, _) => Status::Passed,
        // Only if its cleanup passed too.
        (Some(e), true) if !e.starts_with("cleanup: ") => Status::Skipped,
        _ => Status::Failed,
    };
    events.send(Event::CaseEnded {
        name: case.name.to_string(),
        status,
        duration_secs: started.elapsed().as_secs_f64(),
        error,
    });
    status
}

/// Versions of what the run used; a program that cannot be asked reads
/// as `unknown (<why>)` rather than failing the run.
async fn versions() -> Versions {
    let first_line = |prog: &'static str, arg: &'static str| async move {
        match Cmd::new(prog).arg(arg).run().await {
            Ok(out) => out.stdout.lines().next().unwrap_or("").trim().to_string(),
            Err(e) => format!("unknown ({e})"),
        }
    };
    Versions {
        nvmfcheck: env!("CARGO_PKG_VERSION").to_string(),
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|e| format!("unknown ({e})")),
        fio: first_line("fio", "--version").await,
        nvme_cli: first_line("nvme", "version").await,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Case, CaseFuture};
    use super::*;
    use crate::suite::report::{CategoryReport, SCHEMA};

    fn nothing<'a>(_: &'a Env, _: &'a mut Steps) -> CaseFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn passes<'a>(_: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
        Box::pin(async move {
            steps.run("should pass", async { Ok(()) }).await?;
            steps.note("observed");
            Ok(())
        })
    }

    /// A case whose only step fails with `error`.
    fn erring<'a>(steps: &'a mut Steps, name: &'static str, error: CheckError) -> CaseFuture<'a> {
        Box::pin(async move { steps.run(name, async { Err(error) }).await })
    }

    fn lacks<'a>(_: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
        let error = CheckError::Unsupported("no feature".into());
        erring(steps, "should have the feature", error)
    }

    fn fails<'a>(_: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
        erring(
            steps,
            "should fail",
            CheckError::Failed("deliberate".into()),
        )
    }

    fn registry() -> Vec<Category> {
        let cat = |name, depends_on| Category {
            name,
            about: "",
            depends_on,
            setup: crate::suite::AgentSetup::Faults,
            leaves_state: false,
            cases: vec![Case {
                name: "c",
                about: "",
                run: nothing,
                cleanup: None,
            }],
        };
        vec![cat("basic", &[]), cat("io", &["basic"])]
    }

    fn opts(categories: &[&str], prior: Option<Status>) -> RunOptions {
        RunOptions {
            categories: categories.iter().map(|s| s.to_string()).collect(),
            filter: None,
            prior: prior.map(|status| Report {
                schema: SCHEMA,
                status,
                error: None,
                target: String::new(),
                started_unix: 0,
                duration_secs: 0.0,
                versions: Versions::default(),
                categories: vec![CategoryReport {
                    name: "basic".into(),
                    status,
                    reason: None,
                    duration_secs: 0.0,
                    cases: vec![],
                }],
                state: None,
            }),
        }
    }

    fn names(plan: &[&Category]) -> Vec<&'static str> {
        plan.iter().map(|c| c.name).collect()
    }

    /// An environment for cases that never call the target: a listener
    /// that never answers is enough for the client to connect.
    async fn idle_env() -> (Env, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let target = crate::client::Target::connect(&addr, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let settings = crate::suite::Settings {
            target: addr,
            ..Default::default()
        };
        (Env::new(settings, target), listener)
    }

    #[tokio::test]
    async fn a_run_sends_its_events_in_order_and_collects_them_into_the_report() {
        let case = |name, run, cleanup| Case {
            name,
            about: "",
            run,
            cleanup,
        };
        let cat = |name, depends_on, cases| Category {
            name,
            about: "",
            depends_on,
            setup: crate::suite::AgentSetup::Faults,
            leaves_state: false,
            cases,
        };
        let registry = vec![
            cat(
                "first",
                &[],
                vec![
                    case("ok", passes as crate::suite::CaseFn, Some(passes)),
                    case("lacking", lacks, None),
                ],
            ),
            cat("second", &["first"], vec![case("broken", fails, None)]),
            cat("third", &["second"], vec![case("never", passes, None)]),
        ];
        let opts = opts(&["first", "second", "third"], None);
        let plan = plan(&registry, &opts).unwrap();
        let (env, _listener) = idle_env().await;
        let mut events = Vec::new();
        let report = run(&plan, &env, &opts, &mut |e| events.push(e.clone())).await;

        let kinds: Vec<String> = events
            .iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["event"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let expected = [
            "category_started",
            "case_started",
            "step_started",
            "step_ended",
            "step_note",
            "step_started",
            "step_ended",
            "step_note",
            "case_ended",
            "case_started",
            "step_started",
            "step_ended",
            "case_ended",
            "category_ended",
            "category_started",
            "case_started",
            "step_started",
            "step_ended",
            "case_ended",
            "category_ended",
            "category_skipped",
            "run_ended",
        ];
        assert_eq!(kinds, expected);
        assert!(matches!(
            &events[5],
            Event::StepStarted { name } if name == "cleanup: should pass"
        ));
        assert!(matches!(
            &events[12],
            Event::CaseEnded { status: Status::Skipped, error: Some(e), .. } if e == "no feature"
        ));
        assert!(matches!(
            &events[20],
            Event::CategorySkipped { name, reason } if name == "third" && reason == "second failed"
        ));

        // The report holds what the events said.
        let status = |n| report.category(n).unwrap().status;
        assert_eq!(
            [status("first"), status("second"), status("third")],
            [Status::Passed, Status::Failed, Status::Skipped]
        );
        let ok = &report.categories[0].cases[0];
        let steps: Vec<&str> = ok.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(steps, ["should pass", "cleanup: should pass"]);
        assert_eq!(ok.steps[0].note.as_deref(), Some("observed"));
        let broken = &report.categories[1].cases[0];
        assert_eq!(broken.steps[0].error.as_deref(), Some("deliberate"));
        assert_eq!(broken.error.as_deref(), Some("deliberate"));
        assert_eq!(report.status, Status::Failed);
        assert_eq!(report.target, env.settings.target);
        assert_eq!(report.counts(), (1, 1, 2));
    }

    #[test]
    fn orders_categories_by_dependency_whatever_the_order_given() {
        let reg = registry();
        let plan = plan(&reg, &opts(&["io", "basic"], None)).unwrap();
        assert_eq!(names(&plan), ["basic", "io"]);
    }

    #[test]
    fn refuses_a_category_whose_dependency_is_unproven() {
        let reg = registry();
        let err = plan(&reg, &opts(&["io"], None)).err().unwrap().to_string();
        assert!(err.contains("io depends on basic"), "{err}");
        assert!(err.contains("--require-passed"), "{err}");
        let err = plan(&reg, &opts(&["io"], Some(Status::Failed)))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("did not pass"), "{err}");
    }

    #[test]
    fn accepts_a_dependency_that_passed_in_an_earlier_report() {
        let reg = registry();
        let plan = plan(&reg, &opts(&["io"], Some(Status::Passed))).unwrap();
        assert_eq!(names(&plan), ["io"]);
    }

    #[test]
    fn refuses_unknown_and_missing_categories() {
        let reg = registry();
        let err = plan(&reg, &opts(&["nope"], None))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("unknown category \"nope\"") && err.contains("basic, io"),
            "{err}"
        );
        assert!(plan(&reg, &opts(&[], None)).is_err());
    }
}
