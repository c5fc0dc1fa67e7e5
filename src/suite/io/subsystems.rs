//! Case `two-subsystems`: two bdevs of different kinds (the run's disk and
//! a RAM disk) shared as two subsystems, connected at once, each namespace
//! carrying its own bdev's uuid, verified at the same time.

use crate::fio::{FioJob, Verify};

use super::{cleanup, fabric, Session};
use crate::suite::steps::ensure;
use crate::suite::{Case, CaseFuture, Env, Steps};

/// The RAM disk's name and URI.
const MALLOC: (&str, &str) = ("io-m1", "malloc:///io-m1?size_mb=64");

/// Bytes each job verifies.
const SIZE: u64 = 4 << 20;

pub(super) fn case() -> Case {
    Case {
        name: "two-subsystems",
        about: "the disk and a 64 MiB malloc bdev shared as two subsystems, both connected, each \
                namespace with its own uuid, verified at once",
        run,
        cleanup: Some(remove_malloc),
    }
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let opts = fabric::connect_options(env);
        let disk = Session::open(env, steps, &opts).await?;
        let (name, uri) = MALLOC;
        let malloc = steps
            .run(
                "should create a 64 MiB malloc bdev",
                fabric::ensure_bdev(env, name, uri),
            )
            .await?;
        let share = fabric::share(env, steps, &malloc).await?;
        let ns = fabric::connect(steps, &malloc, &share, &opts).await?;
        steps
            .run(
                "should see two subsystems whose namespaces carry their own bdev's uuid",
                async {
                    ensure(share.nqn != disk.share.nqn, || {
                        format!("both bdevs are shared as {}", share.nqn)
                    })?;
                    ensure(ns.device != disk.ns.device, || {
                        format!("both namespaces are {}", ns.device.display())
                    })?;
                    ensure(ns.uuid.is_some() && ns.uuid != disk.ns.uuid, || {
                        format!(
                            "{} and {} carry uuids {:?} and {:?}",
                            disk.ns.device.display(),
                            ns.device.display(),
                            disk.ns.uuid,
                            ns.uuid
                        )
                    })
                },
            )
            .await?;
        let jobs = [
            FioJob::verify_randrw(&disk.ns.device, SIZE)
                .name("disk")
                .iodepth(4)
                .verify(Verify::Crc32c),
            FioJob::verify_randrw(&ns.device, SIZE)
                .name("malloc")
                .iodepth(4)
                .verify(Verify::Md5),
        ];
        steps
            .fio(
                "should verify both namespaces at once",
                &jobs,
                env.settings.fio_timeout,
            )
            .await?;
        fabric::disconnect(env, steps, &share.nqn).await?;
        fabric::unshare(env, steps, &malloc.name).await?;
        steps
            .run("should destroy the malloc bdev", async {
                Ok(env.target.destroy(uri).await?)
            })
            .await?;
        disk.close(env, steps).await
    })
}

/// The common cleanup, and the malloc bdev disconnected, unshared, gone.
fn remove_malloc<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        cleanup(env, steps).await?;
        let (name, uri) = MALLOC;
        fabric::teardown(env, steps, name).await?;
        if env.target.find(name).await?.is_some() {
            steps
                .run("should destroy the malloc bdev", async {
                    Ok(env.target.destroy(uri).await?)
                })
                .await?;
        }
        Ok(())
    })
}
