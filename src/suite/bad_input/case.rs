//! The `bad-input` case of `basic`: the table against the target, one step
//! a row, with `List` unchanged after each.

use std::time::Duration;

use crate::suite::{Case, CaseFuture, CheckError, Env, Steps};

use super::{check_unchanged, cli_rows, rows, Fixture, TARGET_MALLOC};

/// Deadline of one `nvmfcheck bdev` run (it makes one call).
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn case() -> Case {
    Case {
        name: "bad-input",
        about: "each gRPC call and bdev command refuses bad input with the right code and message and changes nothing",
        run,
        cleanup: Some(cleanup),
    }
}

fn malloc_uri() -> String {
    format!("malloc:///{TARGET_MALLOC}?size_mb=1")
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let t = &env.target;
        let bdev = &env.settings.bdev_uri;
        let mut before = steps
            .run(
                "should share the bdev and have an unshared malloc bdev to misuse",
                async {
                    let name = match t.find(bdev).await? {
                        Some(b) => b.name,
                        None => t.create(bdev).await?,
                    };
                    t.share(&name, "nvmf", &[]).await?;
                    if t.find(TARGET_MALLOC).await?.is_none() {
                        t.create(&malloc_uri()).await?;
                    }
                    // Not an error: unsharing what is not shared succeeds.
                    t.unshare(TARGET_MALLOC).await?;
                    Ok(t.list().await?)
                },
            )
            .await?;
        let exe = std::env::current_exe()
            .map_err(|e| CheckError::Failed(format!("cannot find this program's path: {e}")))?;
        let rows = rows(&Fixture::on_target(bdev));
        let cli = cli_rows(&rows);
        let mut failed = 0;
        for row in &rows {
            let via_cli = cli.contains(&row);
            let name = format!(
                "should refuse {} with {:?}{}",
                row.what,
                row.code,
                if via_cli { " (gRPC and CLI)" } else { "" }
            );
            let result = steps
                .run(&name, async {
                    row.check(t).await?;
                    if via_cli {
                        row.check_cli(&exe, &env.settings.target, CLI_TIMEOUT)
                            .await?;
                    }
                    check_unchanged(t, &before).await
                })
                .await;
            if result.is_err() {
                failed += 1;
                // Judge the next rows against what is there now, so that one
                // row's change is not blamed on all that follow.
                before = t.list().await?;
            }
        }
        if failed > 0 {
            return Err(CheckError::Failed(format!(
                "{failed} of {} bad inputs were not refused as docs/bad-input.md says",
                rows.len()
            )));
        }
        Ok(())
    })
}

/// Leaves the bdev unshared, as `share-connect-verify` does, and removes
/// the malloc bdev.
fn cleanup<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let t = &env.target;
        steps
            .run(
                "should unshare the bdev and remove the malloc bdev",
                async {
                    if let Some(b) = t.find(&env.settings.bdev_uri).await? {
                        t.unshare(&b.name).await?;
                    }
                    if t.find(TARGET_MALLOC).await?.is_some() {
                        t.unshare(TARGET_MALLOC).await?;
                        t.destroy(&malloc_uri()).await?;
                    }
                    Ok(())
                },
            )
            .await
    })
}
