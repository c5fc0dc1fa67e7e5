//! `basic/mayastor-clients`: what Mayastor's own clients send, as they send
//! it. The URIs are those of its v0-era Python test fixtures
//! (`test/python/common/hdl.py`, `test_bdd_nexus.py`), the destroy sequence
//! is `mayastor-client bdev destroy`'s (List, Unshare, Destroy by the listed
//! `uri`), and the host allow-list is `BdevShareRequest.allowed_hosts`.

use uuid::Uuid;

use crate::nvme::{self, ConnectOptions};
use crate::proto::mayastor::Bdev;

use super::super::steps::ensure;
use super::super::{fabric, Case, CaseFuture, CheckError, Env, Steps};

/// A 64 MiB RAM disk with 4096-byte blocks, as the fixtures make it.
const MALLOC_4K: Made = Made {
    uri: "malloc:///mc-4k?size_mb=64&blk_size=4096",
    name: "mc-4k",
    blk_size: 4096,
    num_blocks: 16384,
};
/// A RAM disk sized in blocks of the default size, 512.
const MALLOC_BLOCKS: Made = Made {
    uri: "malloc:///mc-blocks?num_blocks=131072",
    name: "mc-blocks",
    blk_size: 512,
    num_blocks: 131_072,
};
/// Bytes each fio verify writes and reads back.
const FIO_SIZE: u64 = 8 << 20;

/// A bdev the case creates and what List must show for it.
struct Made {
    uri: &'static str,
    name: &'static str,
    blk_size: u32,
    num_blocks: u64,
}

pub(super) fn case() -> Case {
    Case {
        name: "mayastor-clients",
        about: "the URIs, host allow-list and destroy sequence of Mayastor's own clients: blk_size, num_blocks, allowed_hosts",
        run,
        cleanup: Some(cleanup),
    }
}

/// The aio bdev on the run's file: its URI and name.
fn aio(env: &Env) -> (String, String) {
    let name = format!("aio://{}", env.settings.aio_file);
    (format!("{name}?blk_size=4096"), name)
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        steps
            .run(
                "should create malloc bdevs with blk_size=4096 and with num_blocks, listed with those blocks",
                async {
                    for made in [MALLOC_4K, MALLOC_BLOCKS] {
                        create(env, made.uri, made.name, made.blk_size, Some(made.num_blocks))
                            .await?;
                    }
                    Ok(())
                },
            )
            .await?;
        let (aio_uri, aio_name) = aio(env);
        let aio = steps
            .run(
                "should create an aio bdev on a file with blk_size=4096",
                create(env, &aio_uri, &aio_name, 4096, None),
            )
            .await?;
        let blocks = fabric::find(env, MALLOC_BLOCKS.name).await?;
        for bdev in [&aio, &blocks] {
            connect_and_verify(env, steps, bdev).await?;
        }
        allow_list(env, steps).await?;
        steps
            .run(
                "should destroy shared bdevs as mayastor-client does: List, Unshare, Destroy by uri",
                async {
                    for name in [aio_name.as_str(), MALLOC_4K.name, MALLOC_BLOCKS.name] {
                        env.target.share(name, "nvmf", &[]).await?;
                        destroy_like_mayastor_client(env, name).await?;
                    }
                    Ok(())
                },
            )
            .await?;
        steps
            .run(
                "should answer Unshare of a name no bdev has with OK, as Mayastor does",
                async { Ok(env.target.unshare("mc-none").await?) },
            )
            .await
    })
}

/// Creates `uri`, which must be named `name` and list `blk_size`-byte
/// blocks (`num_blocks` of them, if given).
async fn create(
    env: &Env,
    uri: &str,
    name: &str,
    blk_size: u32,
    num_blocks: Option<u64>,
) -> Result<Bdev, CheckError> {
    let created = env.target.create(uri).await?;
    ensure(created == name, || {
        format!("{uri} was created as {created:?}, not {name:?}")
    })?;
    let b = fabric::find(env, name).await?;
    ensure(
        b.blk_size == blk_size && num_blocks.is_none_or(|n| n == b.num_blocks),
        || {
            format!(
                "{uri} lists {} blocks of {} bytes, not {} of {blk_size}",
                b.num_blocks,
                b.blk_size,
                num_blocks.map_or("any number".to_string(), |n| n.to_string())
            )
        },
    )?;
    Ok(b)
}

/// Shares `bdev`, connects, checks the initiator sees its block size, runs
/// a fio verify and disconnects.
async fn connect_and_verify(env: &Env, steps: &mut Steps, bdev: &Bdev) -> Result<(), CheckError> {
    let share = fabric::share(env, steps, bdev).await?;
    let ns = fabric::connect(steps, bdev, &share, &fabric::connect_options(env)).await?;
    steps
        .run(
            &format!(
                "should see {}-byte logical blocks on the initiator",
                bdev.blk_size
            ),
            async {
                ensure(ns.block_size == bdev.blk_size, || {
                    format!(
                        "{} has {}-byte logical blocks; {} lists {}",
                        ns.device.display(),
                        ns.block_size,
                        bdev.name,
                        bdev.blk_size
                    )
                })
            },
        )
        .await?;
    fabric::verify(steps, &ns.device, FIO_SIZE, env.settings.fio_timeout).await?;
    fabric::disconnect(env, steps, &share.nqn).await?;
    fabric::unshare(env, steps, &bdev.name).await
}

/// A host NQN of the kind nvme-cli generates.
fn host_nqn() -> String {
    format!("nqn.2014-08.org.nvmexpress:uuid:{}", Uuid::new_v4())
}

/// Shares the 4096-byte malloc bdev for one host NQN: the initiator
/// connects as that host; shared again for another NQN only, the initiator
/// is refused at connect.
async fn allow_list(env: &Env, steps: &mut Steps) -> Result<(), CheckError> {
    let (ours, other) = (host_nqn(), host_nqn());
    let bdev = fabric::find(env, MALLOC_4K.name).await?;
    let as_ours = ConnectOptions {
        hostnqn: Some(ours.clone()),
        ..fabric::connect_options(env)
    };
    let (listed, uri) = steps
        .run(
            "should share with allowed_hosts naming the initiator's host NQN",
            async {
                let listed = env
                    .target
                    .share(&bdev.name, "nvmf", std::slice::from_ref(&ours))
                    .await?;
                let uri = fabric::share_of(&listed, &bdev.uuid)?;
                Ok((listed, uri))
            },
        )
        .await?;
    fabric::connect(steps, &bdev, &uri, &as_ours).await?;
    fabric::disconnect(env, steps, &uri.nqn).await?;
    steps
        .run("should share again allowing only another host NQN", async {
            let again = env
                .target
                .share(&bdev.name, "nvmf", std::slice::from_ref(&other))
                .await?;
            ensure(again == listed, || {
                format!("sharing again gave {again}, not {listed}")
            })
        })
        .await?;
    steps
        .run(
            "should refuse the initiator at connect, as its host NQN is no longer allowed",
            async {
                let refused = nvme::connect(&uri.transport, &uri.nqn, &as_ours).await;
                ensure(refused.is_err(), || {
                    format!(
                        "{ours} connected to {} although only {other} is allowed",
                        uri.nqn
                    )
                })?;
                let left = nvme::connection(&uri.nqn, env.settings.nvme_timeout).await?;
                ensure(left.is_none(), || {
                    format!("a refused connect left controllers: {left:?}")
                })
            },
        )
        .await?;
    fabric::unshare(env, steps, &bdev.name).await
}

/// What `mayastor-client bdev destroy NAME` does: finds the bdev in List,
/// unshares it if shared, and destroys it by the URI List gave.
async fn destroy_like_mayastor_client(env: &Env, name: &str) -> Result<(), CheckError> {
    let b = fabric::find(env, name).await?;
    if b.claimed {
        env.target.unshare(&b.name).await?;
    }
    env.target.destroy(&b.uri).await?;
    let left = env.target.find(name).await?;
    ensure(left.is_none(), || {
        format!("{name} is still listed after Destroy({})", b.uri)
    })
}

/// Leaves no connection, share or bdev of the case behind.
fn cleanup<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let (_, aio_name) = aio(env);
        for name in [aio_name.as_str(), MALLOC_4K.name, MALLOC_BLOCKS.name] {
            fabric::teardown(env, steps, name).await?;
            if let Some(b) = env.target.find(name).await? {
                env.target.destroy(&b.uri).await?;
            }
        }
        Ok(())
    })
}
