//! The runner against a real agent over gRPC (on the in-memory configfs
//! model): dependants of a failed category are skipped, not passed, and the
//! reports say so.

mod common;
use common::{fake_loops, fake_lvm, fake_nexus};

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nvmfcheck::agent::fake::FakeConfigfs;
use nvmfcheck::agent::{Agent, AgentConfig};
use nvmfcheck::client::Target;
use nvmfcheck::suite::report::{Report, Status};
use nvmfcheck::suite::{
    self, Case, CaseFuture, Category, CheckError, Env, RunOptions, Settings, Steps,
};

/// Creates a malloc bdev on the target: passes only with a live agent.
fn creates<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        steps
            .run("should create a malloc bdev", async {
                env.target.create("malloc:///r0?size_mb=1").await?;
                Ok(())
            })
            .await
    })
}

fn fails<'a>(_: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        steps
            .run("should fail on purpose", async {
                Err::<(), _>(CheckError::Failed("deliberate".into()))
            })
            .await
    })
}

fn category(
    name: &'static str,
    depends_on: &'static [&'static str],
    run: suite::CaseFn,
) -> Category {
    Category {
        name,
        about: "test",
        depends_on,
        setup: suite::AgentSetup::Faults,
        leaves_state: false,
        cases: vec![Case {
            name: "only",
            about: "test",
            run,
            cleanup: None,
        }],
    }
}

async fn env() -> (Env, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = AgentConfig::new(Ipv4Addr::new(192, 168, 1, 2));
    config.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.state_dir = dir.path().join("state");
    let agent = Agent::start(
        &config,
        Arc::new(FakeConfigfs::new()),
        fake_loops(&config),
        fake_lvm(&config),
        fake_nexus(&config),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(agent.serve(vec![listener], std::future::pending()));
    let target = Target::connect(&addr, Duration::from_secs(5))
        .await
        .unwrap();
    let settings = Settings {
        target: addr,
        ..Settings::default()
    };
    (Env::new(settings, target), dir)
}

async fn run(registry: &[Category], names: &[&str]) -> Report {
    let (env, dir) = env().await;
    let opts = RunOptions {
        categories: names.iter().map(|s| s.to_string()).collect(),
        ..RunOptions::default()
    };
    let plan = suite::plan(registry, &opts).unwrap();
    let report = suite::run(&plan, &env, &opts, &mut |_| {}).await;
    drop(dir);
    report
}

#[tokio::test]
async fn a_failed_category_skips_its_dependants() {
    let registry = [
        category("first", &[], fails),
        category("second", &["first"], creates),
        category("third", &[], creates),
    ];
    let report = run(&registry, &["second", "first", "third"]).await;
    let status = |n| report.category(n).unwrap().status;
    assert_eq!(status("first"), Status::Failed);
    assert_eq!(status("second"), Status::Skipped);
    assert_eq!(
        report.category("second").unwrap().reason.as_deref(),
        Some("first failed")
    );
    assert_eq!(
        status("third"),
        Status::Passed,
        "independent categories still run"
    );
    assert_eq!(report.status, Status::Failed);
    assert_eq!(report.counts(), (1, 1, 1));

    let dir = tempfile::tempdir().unwrap();
    report.write(dir.path()).unwrap();
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(junit.contains("deliberate"), "{junit}");
    assert!(junit.contains("<skipped"), "{junit}");
    let back = Report::load(&dir.path().join("report.json")).unwrap();
    assert_eq!(back.category("second").unwrap().status, Status::Skipped);
}

#[tokio::test]
async fn dependants_run_when_their_dependency_passed() {
    let registry = [
        category("first", &[], creates),
        category("second", &["first"], fails),
    ];
    let report = run(&registry, &["first", "second"]).await;
    assert_eq!(report.category("first").unwrap().status, Status::Passed);
    assert_eq!(report.category("second").unwrap().status, Status::Failed);
    let step = &report.category("second").unwrap().cases[0].steps[0];
    assert_eq!(step.error.as_deref(), Some("deliberate"));
}
