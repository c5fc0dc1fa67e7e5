//! The `basic` category: the path works once, end to end.

use crate::nvme;
use crate::proto::mayastor::Bdev;

use super::steps::ensure;
use super::{bad_input, fabric, AgentSetup, Case, CaseFuture, Category, CheckError, Env, Steps};

mod clients;
mod data_set;

pub(super) fn category() -> Category {
    Category {
        name: "basic",
        about: "a target exports a bdev that an initiator discovers, connects and verifies",
        depends_on: &[],
        setup: AgentSetup::Faults,
        leaves_state: true,
        cases: vec![
            Case {
                name: "share-connect-verify",
                about: "share a bdev, discover and connect over NVMe/TCP, fio verify, tear down",
                run: share_connect_verify,
                cleanup: Some(teardown),
            },
            bad_input::case(),
            clients::case(),
            // Last: nothing in basic writes to the disk after it.
            data_set::case(),
        ],
    }
}

fn share_connect_verify<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let s = &env.settings;
        let bdev = steps
            .run("should list the bdev with the expected fields", async {
                let bdev = fabric::ensure_bdev(env, &s.bdev_uri, &s.bdev_uri).await?;
                check_fields(&bdev, s.expect_size)?;
                Ok(bdev)
            })
            .await?;
        let share_uri = fabric::share(env, steps, &bdev).await?;
        let discovery = share_uri.on_port(s.discovery_port);
        steps
            .run("should be able to discover the target", async {
                let entries = nvme::discover(&discovery, s.nvme_timeout).await?;
                ensure(entries.iter().any(|e| e.subnqn == share_uri.nqn), || {
                    let seen: Vec<_> = entries.iter().map(|e| e.subnqn.as_str()).collect();
                    format!(
                        "discovery on port {} lists {seen:?}, not {}",
                        s.discovery_port, share_uri.nqn
                    )
                })
            })
            .await?;
        let ns = fabric::connect(steps, &bdev, &share_uri, &fabric::connect_options(env)).await?;
        fabric::verify(steps, &ns.device, s.fio_size, s.fio_timeout).await?;
        fabric::disconnect(env, steps, &share_uri.nqn).await?;
        fabric::unshare(env, steps, &bdev.name).await
    })
}

/// Leaves the target and initiator as they were, whatever step failed.
fn teardown<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move { fabric::teardown(env, steps, &env.settings.bdev_uri).await })
}

/// The fields a target must fill for a bdev it lists.
fn check_fields(b: &Bdev, expect_size: Option<u64>) -> Result<(), CheckError> {
    ensure(uuid::Uuid::parse_str(&b.uuid).is_ok(), || {
        format!("{} has uuid {:?}, not a uuid", b.name, b.uuid)
    })?;
    ensure(b.blk_size.is_power_of_two() && b.blk_size >= 512, || {
        format!("{} has blk_size {}", b.name, b.blk_size)
    })?;
    ensure(b.num_blocks > 0, || format!("{} has no blocks", b.name))?;
    ensure(!b.product_name.is_empty(), || {
        format!("{} has no product_name", b.name)
    })?;
    if let Some(size) = expect_size {
        let got = b.num_blocks * u64::from(b.blk_size);
        ensure(got == size, || {
            format!(
                "{} has {} blocks of {} = {got} bytes, expected {size}",
                b.name, b.num_blocks, b.blk_size
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "0f3c5e46-8a3b-4a53-9a3c-1d8e4f3b2a10";

    #[test]
    fn checks_the_listed_fields() {
        let good = Bdev {
            name: "aio:///dev/vdb".into(),
            uuid: UUID.into(),
            num_blocks: 1_048_576,
            blk_size: 512,
            product_name: "AIO disk".into(),
            ..Bdev::default()
        };
        assert!(check_fields(&good, Some(512 << 20)).is_ok());
        assert!(check_fields(&good, Some(256 << 20)).is_err());
        let no_uuid = Bdev {
            uuid: "x".into(),
            ..good.clone()
        };
        assert!(check_fields(&no_uuid, None).is_err());
        let odd_block = Bdev {
            blk_size: 100,
            ..good
        };
        assert!(check_fields(&odd_block, None).is_err());
    }
}
