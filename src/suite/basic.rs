//! The `basic` category: the path works once, end to end.

use url::Url;

use crate::fio::{FioJob, Verify};
use crate::nvme::{self, ConnectOptions, Transport};
use crate::proto::mayastor::Bdev;

use super::steps::ensure;
use super::{bad_input, Case, CaseFuture, Category, CheckError, Env, Steps};

/// NQN prefix of the subsystems a target makes for its bdevs.
const NQN_PREFIX: &str = "nqn.2019-05.io.openebs:";

/// `claimed_by` of a bdev that is shared over NVMe-oF.
const CLAIMED_BY_NVMF: &str = "NVMe-oF Target";

pub(super) fn category() -> Category {
    Category {
        name: "basic",
        about: "a target exports a bdev that an initiator discovers, connects and verifies",
        depends_on: &[],
        cases: vec![
            Case {
                name: "share-connect-verify",
                about: "share a bdev, discover and connect over NVMe/TCP, fio verify, tear down",
                run: share_connect_verify,
                cleanup: Some(teardown),
            },
            bad_input::case(),
        ],
    }
}

fn share_connect_verify<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let s = &env.settings;
        let bdev = steps
            .run("should list the bdev with the expected fields", async {
                let bdev = match env.target.find(&s.bdev_uri).await? {
                    Some(b) => b,
                    None => {
                        env.target.create(&s.bdev_uri).await?;
                        env.target.find(&s.bdev_uri).await?.ok_or_else(|| {
                            CheckError::Failed(format!(
                                "{} was created but is not listed",
                                s.bdev_uri
                            ))
                        })?
                    }
                };
                check_fields(&bdev, s.expect_size)?;
                Ok(bdev)
            })
            .await?;
        let share_uri = steps
            .run("should share the bdev over NVMe-oF", async {
                let uri = env.target.share(&bdev.name, "nvmf").await?;
                let again = env.target.share(&bdev.name, "nvmf").await?;
                ensure(uri == again, || {
                    format!("sharing twice gave two URIs: {uri} then {again}")
                })?;
                let listed = find(env, &bdev.name).await?;
                ensure(listed.claimed && listed.claimed_by == CLAIMED_BY_NVMF, || {
                    format!(
                        "shared bdev lists claimed={} claimed_by={:?}, expected true and {CLAIMED_BY_NVMF:?}",
                        listed.claimed, listed.claimed_by
                    )
                })?;
                ensure(listed.share_uri == uri, || {
                    format!("share_uri is {:?}, Share returned {uri:?}", listed.share_uri)
                })?;
                ShareUri::parse(&uri, &bdev.uuid)
            })
            .await?;
        let discovery = Transport {
            traddr: share_uri.host.clone(),
            trsvcid: s.discovery_port,
        };
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
        let io = Transport {
            traddr: share_uri.host.clone(),
            trsvcid: share_uri.port,
        };
        let conn = steps
            .run("should be able to connect to the target", async {
                let opts = ConnectOptions {
                    timeout: s.nvme_timeout,
                    ..ConnectOptions::default()
                };
                Ok(nvme::connect(&io, &share_uri.nqn, &opts).await?)
            })
            .await?;
        let ns = steps
            .run(
                "should see the namespace as a block device of the bdev's size and uuid",
                async {
                    let ns = conn.namespaces.first().ok_or_else(|| {
                        CheckError::Failed(format!("{} has no namespace", share_uri.nqn))
                    })?;
                    let size = bdev.num_blocks * u64::from(bdev.blk_size);
                    ensure(ns.size_bytes == size, || {
                        format!(
                            "{} has {} bytes, the bdev {size}",
                            ns.device.display(),
                            ns.size_bytes
                        )
                    })?;
                    let uuid = ns.uuid.map(|u| u.to_string());
                    ensure(uuid.as_deref() == Some(bdev.uuid.as_str()), || {
                        format!(
                            "{} carries uuid {uuid:?}, the bdev {}",
                            ns.device.display(),
                            bdev.uuid
                        )
                    })?;
                    Ok(ns.clone())
                },
            )
            .await?;
        let job = FioJob::verify_randrw(&ns.device, s.fio_size)
            .bs(4096)
            .iodepth(1)
            .verify(Verify::Crc32);
        steps
            .fio(
                "should run fio randrw 4 KiB QD1 with crc32 verify and no error",
                &[job],
                s.fio_timeout,
            )
            .await?;
        disconnect(env, steps, &share_uri.nqn).await?;
        unshare(env, steps, &bdev.name).await
    })
}

/// Leaves the target and initiator as they were, whatever step failed.
fn teardown<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let Some(bdev) = env.target.find(&env.settings.bdev_uri).await? else {
            return Ok(());
        };
        let nqn = format!("{NQN_PREFIX}{}", bdev.uuid);
        if nvme::connection(&nqn, env.settings.nvme_timeout)
            .await?
            .is_some()
        {
            disconnect(env, steps, &nqn).await?;
        }
        if bdev.claimed {
            unshare(env, steps, &bdev.name).await?;
        }
        Ok(())
    })
}

async fn disconnect(env: &Env, steps: &mut Steps, nqn: &str) -> Result<(), CheckError> {
    let timeout = env.settings.nvme_timeout;
    steps
        .run("should be able to disconnect", async {
            let n = nvme::disconnect(nqn, timeout).await?;
            ensure(n > 0, || {
                format!("disconnect of {nqn} removed no controller")
            })
        })
        .await?;
    steps
        .run("should have no controller left for the subsystem", async {
            let left = nvme::connection(nqn, timeout).await?;
            ensure(left.is_none(), || {
                format!("{nqn} still has controllers after disconnect: {left:?}")
            })
        })
        .await
}

async fn unshare(env: &Env, steps: &mut Steps, name: &str) -> Result<(), CheckError> {
    steps
        .run("should unshare the bdev", async {
            env.target.unshare(name).await?;
            Ok(())
        })
        .await?;
    steps
        .run("should list the bdev as no longer claimed", async {
            let b = find(env, name).await?;
            ensure(!b.claimed && b.share_uri.is_empty(), || {
                format!(
                    "after unshare {name} lists claimed={} share_uri={:?}",
                    b.claimed, b.share_uri
                )
            })
        })
        .await
}

async fn find(env: &Env, name: &str) -> Result<Bdev, CheckError> {
    env.target
        .find(name)
        .await?
        .ok_or_else(|| CheckError::Failed(format!("the target no longer lists {name}")))
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

/// A parsed `nvmf://host:port/nqn` share URI.
#[derive(Debug, Clone, PartialEq)]
struct ShareUri {
    host: String,
    port: u16,
    nqn: String,
}

impl ShareUri {
    /// Parses a share URI and checks that its NQN names the bdev's uuid.
    fn parse(uri: &str, uuid: &str) -> Result<Self, CheckError> {
        let bad = |why: &str| CheckError::Failed(format!("share URI {uri:?} {why}"));
        let url = Url::parse(uri).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "nvmf" {
            return Err(bad("is not nvmf://"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| bad("has no host"))?
            .to_string();
        let port = url.port().ok_or_else(|| bad("has no port"))?;
        let nqn = url.path().trim_start_matches('/').to_string();
        let expected = format!("{NQN_PREFIX}{uuid}");
        if nqn != expected {
            return Err(bad(&format!("names {nqn:?}, expected {expected:?}")));
        }
        Ok(Self { host, port, nqn })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "0f3c5e46-8a3b-4a53-9a3c-1d8e4f3b2a10";

    #[test]
    fn parses_a_share_uri() {
        let uri = format!("nvmf://192.168.1.2:8430/{NQN_PREFIX}{UUID}");
        let s = ShareUri::parse(&uri, UUID).unwrap();
        assert_eq!(s.host, "192.168.1.2");
        assert_eq!(s.port, 8430);
        assert_eq!(s.nqn, format!("{NQN_PREFIX}{UUID}"));
    }

    #[test]
    fn rejects_a_share_uri_for_another_bdev_or_scheme() {
        let other =
            format!("nvmf://192.168.1.2:8430/{NQN_PREFIX}00000000-0000-0000-0000-000000000000");
        assert!(ShareUri::parse(&other, UUID).is_err());
        let iscsi = format!("iscsi://192.168.1.2:8430/{NQN_PREFIX}{UUID}");
        assert!(ShareUri::parse(&iscsi, UUID).is_err());
        let no_port = format!("nvmf://192.168.1.2/{NQN_PREFIX}{UUID}");
        assert!(ShareUri::parse(&no_port, UUID).is_err());
    }

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
