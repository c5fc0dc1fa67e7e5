//! The bad-input case: every gRPC call and `nvmfcheck bdev` command given
//! each bad input must fail with the right status code and a message that
//! names the problem, and must change nothing on the target.
//!
//! The table is [`ROWS`]; the README's bad-input table is written from it.

use std::time::Duration;

use tonic::Code;

use crate::cmd::Cmd;

use super::steps::ensure;
use super::{Case, CaseFuture, CheckError, Env, Steps};

/// A malloc bdev that the case shares so that destroying it can be refused.
const SHARED_MALLOC: &str = "malloc:///badinput?size_mb=8";
const SHARED_MALLOC_NAME: &str = "badinput";

/// A gRPC call with its arguments.
#[derive(Debug, Clone, Copy)]
pub(super) enum Call {
    Create(&'static str),
    /// Create of the bdev the run uses, which exists by then.
    CreateExisting,
    Destroy(&'static str),
    Share(&'static str, &'static str),
    Unshare(&'static str),
}

/// One bad input and what the target must answer.
pub(super) struct Row {
    /// What is wrong with the input, for the step name and the README.
    pub what: &'static str,
    pub call: Call,
    pub code: Code,
    /// A word the message must contain, so it names the problem.
    pub says: &'static str,
}

/// Every bad input tried.
pub(super) const ROWS: &[Row] = &[
    Row {
        what: "unknown scheme",
        call: Call::Create("foo:///dev/vdb"),
        code: Code::InvalidArgument,
        says: "scheme",
    },
    Row {
        what: "no URI at all",
        call: Call::Create(""),
        code: Code::InvalidArgument,
        says: "URI",
    },
    Row {
        what: "missing path",
        call: Call::Create("aio:///dev/nvmfcheck-no-such-disk"),
        code: Code::NotFound,
        says: "/dev/nvmfcheck-no-such-disk",
    },
    Row {
        what: "path that is a directory",
        call: Call::Create("aio:///tmp"),
        code: Code::InvalidArgument,
        says: "directory",
    },
    Row {
        what: "aio without a path",
        call: Call::Create("aio://"),
        code: Code::InvalidArgument,
        says: "path",
    },
    Row {
        what: "duplicate create",
        call: Call::CreateExisting,
        code: Code::AlreadyExists,
        says: "exists",
    },
    Row {
        what: "malloc name with /",
        call: Call::Create("malloc:///a/b?size_mb=8"),
        code: Code::InvalidArgument,
        says: "name",
    },
    Row {
        what: "malloc name ..",
        call: Call::Create("malloc:///..?size_mb=8"),
        code: Code::InvalidArgument,
        says: "name",
    },
    Row {
        what: "empty malloc name",
        call: Call::Create("malloc:///?size_mb=8"),
        code: Code::InvalidArgument,
        says: "name",
    },
    Row {
        what: "huge malloc name",
        call: Call::Create(HUGE_NAME_URI),
        code: Code::InvalidArgument,
        says: "name",
    },
    Row {
        what: "size_mb missing",
        call: Call::Create("malloc:///m0"),
        code: Code::InvalidArgument,
        says: "size_mb",
    },
    Row {
        what: "size_mb not a number",
        call: Call::Create("malloc:///m0?size_mb=abc"),
        code: Code::InvalidArgument,
        says: "size_mb",
    },
    Row {
        what: "size_mb zero",
        call: Call::Create("malloc:///m0?size_mb=0"),
        code: Code::InvalidArgument,
        says: "size_mb",
    },
    Row {
        what: "size_mb huge",
        call: Call::Create("malloc:///m0?size_mb=99999999999"),
        code: Code::InvalidArgument,
        says: "size_mb",
    },
    Row {
        what: "unknown parameter",
        call: Call::Create("malloc:///m0?size_mb=8&colour=red"),
        code: Code::InvalidArgument,
        says: "colour",
    },
    Row {
        what: "destroy of an unknown bdev",
        call: Call::Destroy("malloc:///nvmfcheck-unknown?size_mb=8"),
        code: Code::NotFound,
        says: "nvmfcheck-unknown",
    },
    Row {
        what: "destroy while shared",
        call: Call::Destroy(SHARED_MALLOC),
        code: Code::FailedPrecondition,
        says: "shared",
    },
    Row {
        what: "share of an unknown name",
        call: Call::Share("nvmfcheck-unknown", "nvmf"),
        code: Code::NotFound,
        says: "nvmfcheck-unknown",
    },
    Row {
        what: "share with an empty name",
        call: Call::Share("", "nvmf"),
        code: Code::InvalidArgument,
        says: "name",
    },
    Row {
        what: "unknown share protocol",
        call: Call::Share(SHARED_MALLOC_NAME, "iscsi"),
        code: Code::InvalidArgument,
        says: "iscsi",
    },
    Row {
        what: "unshare of an unknown name",
        call: Call::Unshare("nvmfcheck-unknown"),
        code: Code::NotFound,
        says: "nvmfcheck-unknown",
    },
];

const HUGE_NAME_URI: &str = concat!(
    "malloc:///",
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
    "?size_mb=8"
);

pub(super) fn case() -> Case {
    Case {
        name: "bad-input",
        about: "each gRPC call and bdev command refuses bad input with the right code and changes nothing",
        run,
        cleanup: Some(cleanup),
    }
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let t = &env.target;
        steps
            .run(
                "should have the bdev and a shared malloc bdev to misuse",
                async {
                    if t.find(&env.settings.bdev_uri).await?.is_none() {
                        t.create(&env.settings.bdev_uri).await?;
                    }
                    if t.find(SHARED_MALLOC_NAME).await?.is_none() {
                        t.create(SHARED_MALLOC).await?;
                    }
                    t.share(SHARED_MALLOC_NAME, "nvmf").await?;
                    Ok(())
                },
            )
            .await?;
        let before = t.list().await?;
        for row in ROWS {
            steps
                .run(&format!("should refuse {} with {:?}", row.what, row.code), async {
                    check_grpc(env, row).await?;
                    check_cli(env, row).await?;
                    let after = t.list().await?;
                    ensure(after == before, || {
                        format!("the bad input changed the bdev list:\nbefore {before:?}\nafter  {after:?}")
                    })
                })
                .await?;
        }
        Ok(())
    })
}

fn cleanup<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        steps
            .run("should remove the malloc bdev", async {
                if let Some(b) = env.target.find(SHARED_MALLOC_NAME).await? {
                    if b.claimed {
                        env.target.unshare(SHARED_MALLOC_NAME).await?;
                    }
                    env.target.destroy(SHARED_MALLOC).await?;
                }
                Ok(())
            })
            .await
    })
}

async fn check_grpc(env: &Env, row: &Row) -> Result<(), CheckError> {
    let t = &env.target;
    let result = match row.call {
        Call::Create(uri) => t.create(uri).await.map(drop),
        Call::CreateExisting => t.create(&env.settings.bdev_uri).await.map(drop),
        Call::Destroy(uri) => t.destroy(uri).await,
        Call::Share(name, proto) => t.share(name, proto).await.map(drop),
        Call::Unshare(name) => t.unshare(name).await,
    };
    let err = match result {
        Ok(()) => return Err(CheckError::Failed(format!("{:?} was accepted", row.call))),
        Err(e) => e,
    };
    ensure(err.code() == Some(row.code), || {
        format!("{:?} answered {err}, expected {:?}", row.call, row.code)
    })?;
    ensure(err.to_string().contains(row.says), || {
        format!(
            "{:?} answered {err:?}; the message should mention {:?}",
            row.call, row.says
        )
    })
}

/// The same bad input through `nvmfcheck bdev`: it must exit non-zero and
/// print the status code and message on stderr.
async fn check_cli(env: &Env, row: &Row) -> Result<(), CheckError> {
    let exe = std::env::current_exe()
        .map_err(|e| CheckError::Failed(format!("cannot find this program's path: {e}")))?;
    let target = ["--target", env.settings.target.as_str()];
    let cmd = Cmd::new(exe).arg("bdev").timeout(Duration::from_secs(30));
    let cmd = match row.call {
        Call::Create(uri) => cmd.args(["create", uri]),
        Call::CreateExisting => cmd.args(["create", env.settings.bdev_uri.as_str()]),
        Call::Destroy(uri) => cmd.args(["destroy", uri]),
        Call::Share(name, proto) => cmd.args(["share", name, "--proto", proto]),
        Call::Unshare(name) => cmd.args(["unshare", name]),
    }
    .args(target);
    let out = cmd.output().await?;
    let code = format!("{:?}", row.code);
    ensure(out.code == Some(1) && out.stderr.contains(&code), || {
        format!(
            "`{}` exited {:?} with stderr {:?}; expected 1 and {code}",
            cmd.cmdline(),
            out.code,
            out.stderr
        )
    })
}
