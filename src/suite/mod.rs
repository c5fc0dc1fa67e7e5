//! The check suite: categories of cases, each case a sequence of named
//! steps written with the library API (client, nvme, fio).
//!
//! A category declares the categories it depends on; the runner orders them
//! and skips the dependants of one that failed. The same cases run in the
//! QEMU runner and in the NixOS checks: both start `nvmfcheck run` on the
//! initiator.

use std::future::Future;
use std::pin::Pin;

pub mod bad_input;
mod basic;
mod block;
mod collector;
mod during;
mod env;
mod event;
mod fabric;
mod io;
mod replication;
pub mod report;
mod runner;
mod security;
pub mod setup;
pub mod state;
mod steps;
mod watch;

pub use env::{
    Env, Settings, AIO_FILE, AIO_FILE_SIZE, DEFAULT_BDEV_URI, DEFAULT_EXPECT_SIZE_MB,
    DEFAULT_FIO_SIZE_MB, DEFAULT_NODE2, DEFAULT_TARGET,
};
pub use event::Event;
pub use runner::{plan, run, RunError, RunOptions};
pub use setup::AgentSetup;
pub use steps::{CheckError, Steps};

/// The future a case function returns.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send + 'a>>;

/// A case body: runs its steps against the environment, recording each.
pub type CaseFn = for<'a> fn(&'a Env, &'a mut Steps) -> CaseFuture<'a>;

/// One check case: a named sequence of steps.
pub struct Case {
    /// Short name, unique within its category (used by `--filter`).
    pub name: &'static str,
    /// What the case proves, for `nvmfcheck list`.
    pub about: &'static str,
    /// The steps.
    pub run: CaseFn,
    /// Run after `run` whether it passed or not, to leave the target and
    /// initiator as they were (disconnect, unshare) for the next case.
    pub cleanup: Option<CaseFn>,
}

/// A group of cases that runs only when its dependencies passed.
pub struct Category {
    /// Name used on the command line, e.g. `basic`.
    pub name: &'static str,
    /// What the category proves.
    pub about: &'static str,
    /// Categories that must pass first.
    pub depends_on: &'static [&'static str],
    /// How the target's agent must be started for it.
    pub setup: AgentSetup,
    /// Whether its last case leaves a data set on the target's disk for
    /// the next category (see [`state`]).
    pub leaves_state: bool,
    /// Its cases, run in order.
    pub cases: Vec<Case>,
}

/// Every category nvmfcheck knows, in a valid dependency order.
pub fn registry() -> Vec<Category> {
    vec![
        basic::category(),
        io::category(),
        security::category(),
        replication::category(),
    ]
}
