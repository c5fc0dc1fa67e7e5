//! Ordering categories by their dependencies and running their cases.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cmd::Cmd;
use crate::error_chain::chain;

use super::report::{CaseReport, CategoryReport, Report, Status, Versions, SCHEMA};
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
    /// An earlier report that vouches for dependencies not run now.
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

/// Runs the planned categories against `env`, printing each step, and
/// returns the report. Dependants of a category that did not pass are
/// skipped, not passed.
pub async fn run(plan: &[&Category], env: &Env, opts: &RunOptions) -> Report {
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
    let mut categories = Vec::new();
    for cat in plan {
        let report = run_category(cat, env, opts, &outcome).await;
        outcome.insert(cat.name, report.status);
        categories.push(report);
    }
    let status = if categories.iter().all(|c| c.status == Status::Passed) {
        Status::Passed
    } else {
        Status::Failed
    };
    let report = Report {
        schema: SCHEMA,
        status,
        error: None,
        target: env.settings.target.clone(),
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(started.elapsed().as_secs()),
        duration_secs: started.elapsed().as_secs_f64(),
        versions: versions().await,
        categories,
    };
    if let Some(table) = report.fio_table() {
        println!("fio steps:");
        print!("{table}");
    }
    let (passed, failed, skipped) = report.counts();
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    report
}

async fn run_category(
    cat: &Category,
    env: &Env,
    opts: &RunOptions,
    outcome: &HashMap<&str, Status>,
) -> CategoryReport {
    let skipped = |reason: String| {
        println!("{}: skipped: {reason}", cat.name);
        CategoryReport {
            name: cat.name.to_string(),
            status: Status::Skipped,
            reason: Some(reason),
            duration_secs: 0.0,
            cases: Vec::new(),
        }
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
    println!("{}: {} ({} cases)", cat.name, cat.about, cases.len());
    let started = Instant::now();
    let mut reports = Vec::new();
    for case in cases {
        reports.push(run_case(case, env).await);
    }
    // A case the target cannot run is skipped, not failed; the category
    // passes if none failed and one passed.
    let status = if reports.iter().all(|c| c.status != Status::Failed)
        && reports.iter().any(|c| c.status == Status::Passed)
    {
        Status::Passed
    } else {
        Status::Failed
    };
    let duration_secs = started.elapsed().as_secs_f64();
    println!(
        "{} {} ({duration_secs:.2} seconds)",
        cat.name,
        if status == Status::Passed {
            "passed"
        } else {
            "FAILED"
        }
    );
    CategoryReport {
        name: cat.name.to_string(),
        status,
        reason: None,
        duration_secs,
        cases: reports,
    }
}

async fn run_case(case: &Case, env: &Env) -> CaseReport {
    println!("  {}: {}", case.name, case.about);
    let started = Instant::now();
    let mut steps = Steps::new("");
    let result = (case.run)(env, &mut steps).await;
    let mut records = steps.into_records();
    let unsupported = matches!(result, Err(CheckError::Unsupported(_)));
    let mut error = result.err().map(|e| chain(&e));
    if let Some(cleanup) = case.cleanup {
        let mut steps = Steps::new("cleanup: ");
        let cleaned = cleanup(env, &mut steps).await;
        records.extend(steps.into_records());
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
    let duration_secs = started.elapsed().as_secs_f64();
    let word = match status {
        Status::Passed => "passed".to_string(),
        Status::Skipped => format!("skipped: {}", error.as_deref().unwrap_or_default()),
        Status::Failed => "FAILED".to_string(),
    };
    println!("  {} {word} ({duration_secs:.2} seconds)", case.name);
    CaseReport {
        name: case.name.to_string(),
        status,
        duration_secs,
        error,
        steps: records,
    }
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
    use crate::suite::report::CategoryReport;

    fn nothing<'a>(_: &'a Env, _: &'a mut Steps) -> CaseFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn registry() -> Vec<Category> {
        let cat = |name, depends_on| Category {
            name,
            about: "",
            depends_on,
            setup: crate::suite::AgentSetup::Faults,
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
            }),
        }
    }

    fn names(plan: &[&Category]) -> Vec<&'static str> {
        plan.iter().map(|c| c.name).collect()
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
