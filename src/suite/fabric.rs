//! The NVMe/TCP path as steps that several categories share: the bdev on
//! the target, its share, the host's connection to it, and taking them
//! down again (also as a cleanup that undoes whatever a failed case left).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::fio::{FioJob, Verify};
use crate::nvme::{self, ConnectOptions, Connection, Namespace, ShareUri};
use crate::proto::mayastor::Bdev;

use super::steps::ensure;
use super::{CheckError, Env, Steps};

/// NQN prefix of the subsystems a target makes for its bdevs.
pub(super) const NQN_PREFIX: &str = "nqn.2019-05.io.openebs:";

/// `claimed_by` of a bdev that is shared over NVMe-oF.
const CLAIMED_BY_NVMF: &str = "NVMe-oF Target";

/// How often [`wait_for_agent`] asks the target.
const AGENT_POLL: Duration = Duration::from_millis(250);

/// The NQN a target gives the share of bdev `uuid`.
pub(super) fn nqn_of(uuid: &str) -> String {
    format!("{NQN_PREFIX}{uuid}")
}

/// The share URI `uri` of bdev `uuid`, parsed ([`ShareUri::parse`]) and
/// checked to name the bdev's uuid in its NQN.
pub(super) fn share_of(uri: &str, uuid: &str) -> Result<ShareUri, CheckError> {
    let share = ShareUri::parse(uri)?;
    let expected = nqn_of(uuid);
    if share.nqn != expected {
        return Err(CheckError::Failed(format!(
            "share URI {uri:?} names {:?}, expected {expected:?}",
            share.nqn
        )));
    }
    Ok(share)
}

/// Bdev `name`, created from `uri` first if the target lacks it (an aio
/// bdev is named by its URI, a malloc bdev by its path).
pub(super) async fn ensure_bdev(env: &Env, name: &str, uri: &str) -> Result<Bdev, CheckError> {
    if let Some(b) = env.target.find(name).await? {
        return Ok(b);
    }
    let created = env.target.create(uri).await?;
    ensure(created == name, || {
        format!("{uri} was created as bdev {created:?}, expected {name:?}")
    })?;
    find(env, name).await
}

/// Shares `bdev` over NVMe-oF (twice: the second must give the same URI)
/// and checks that the target lists it as claimed with that URI.
pub(super) async fn share(
    env: &Env,
    steps: &mut Steps,
    bdev: &Bdev,
) -> Result<ShareUri, CheckError> {
    steps
        .run("should share the bdev over NVMe-oF", async {
            let uri = env.target.share(&bdev.name, "nvmf", &[]).await?;
            let again = env.target.share(&bdev.name, "nvmf", &[]).await?;
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
            share_of(&uri, &bdev.uuid)
        })
        .await
}

/// Connects to `share` and checks that its namespace is a block device of
/// the bdev's size carrying the bdev's uuid.
pub(super) async fn connect(
    steps: &mut Steps,
    bdev: &Bdev,
    share: &ShareUri,
    opts: &ConnectOptions,
) -> Result<Namespace, CheckError> {
    let t = &share.transport;
    let conn = steps
        .run(
            &format!("should be able to connect through port {}", t.trsvcid),
            async { Ok(nvme::connect(t, &share.nqn, opts).await?) },
        )
        .await?;
    steps
        .run(
            "should see the namespace as a block device of the bdev's size and uuid",
            async { namespace_of(&conn, bdev) },
        )
        .await
}

/// Connect options for the run: its deadline, the kernel's timeouts.
pub(super) fn connect_options(env: &Env) -> ConnectOptions {
    ConnectOptions {
        timeout: env.settings.nvme_timeout,
        ..ConnectOptions::default()
    }
}

/// The one namespace of `conn`, checked against `bdev`.
pub(super) fn namespace_of(conn: &Connection, bdev: &Bdev) -> Result<Namespace, CheckError> {
    let ns = match conn.namespaces.as_slice() {
        [ns] => ns,
        [] => {
            return Err(CheckError::Failed(format!(
                "{} has no namespace",
                conn.subnqn
            )))
        }
        many => {
            let devices: Vec<_> = many.iter().map(|n| n.device.display()).collect();
            return Err(CheckError::Failed(format!(
                "{} shows {} block devices ({}), expected one: is native NVMe multipath \
                 off (nvme_core.multipath=N)?",
                conn.subnqn,
                many.len(),
                devices
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
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
}

/// Flushes `device` (nvme flush): what was written is on the target's
/// disk, not only in a cache.
pub(super) async fn flush(env: &Env, steps: &mut Steps, device: &Path) -> Result<(), CheckError> {
    steps
        .run("should flush the namespace (nvme flush)", async {
            Ok(nvme::flush(device, env.settings.nvme_timeout).await?)
        })
        .await
}

/// Disconnects every controller of `nqn` and checks none is left.
pub(super) async fn disconnect(env: &Env, steps: &mut Steps, nqn: &str) -> Result<(), CheckError> {
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

/// Unshares bdev `name` and checks it is no longer claimed.
pub(super) async fn unshare(env: &Env, steps: &mut Steps, name: &str) -> Result<(), CheckError> {
    steps
        .run("should unshare the bdev", async {
            env.target.unshare(name).await?;
            Ok(())
        })
        .await?;
    steps
        .run("should list the bdev as no longer claimed", async {
            let b = find(env, name).await?;
            ensure(is_unshared(&b), || {
                format!(
                    "after unshare {name} lists claimed={} share_uri={:?}",
                    b.claimed, b.share_uri
                )
            })
        })
        .await
}

/// Whether List shows `b` as not shared: not claimed, and no NVMe-oF share
/// URI (Mayastor lists `bdev:///<name>` then, older agents "").
pub(super) fn is_unshared(b: &Bdev) -> bool {
    !b.claimed && !b.share_uri.starts_with("nvmf://")
}

/// Leaves bdev `name` as a case found it: not connected, not shared.
/// Does nothing for a bdev the target does not list.
pub(super) async fn teardown(env: &Env, steps: &mut Steps, name: &str) -> Result<(), CheckError> {
    let Some(bdev) = env.target.find(name).await? else {
        return Ok(());
    };
    let nqn = nqn_of(&bdev.uuid);
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
}

/// The bdev called `name`; failing if the target no longer lists it.
pub(super) async fn find(env: &Env, name: &str) -> Result<Bdev, CheckError> {
    env.target
        .find(name)
        .await?
        .ok_or_else(|| CheckError::Failed(format!("the target no longer lists {name}")))
}

/// Polls `List` until the target answers, for at most `timeout` (after a
/// restart of the agent or an outage of the link); returns its bdevs.
pub(super) async fn wait_for_agent(env: &Env, timeout: Duration) -> Result<Vec<Bdev>, CheckError> {
    retry("the target's List", timeout, || env.target.list()).await
}

/// Calls `call` until it succeeds, for at most `timeout` (see
/// [`crate::client::retry`]).
pub(super) async fn retry<T, E, F, Fut>(
    what: &str,
    timeout: Duration,
    call: F,
) -> Result<T, CheckError>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    crate::client::retry(Instant::now() + timeout, AGENT_POLL, call)
        .await
        .map_err(|e| {
            CheckError::Failed(format!(
                "{what} did not answer within {}s: {e}",
                timeout.as_secs_f64()
            ))
        })
}

/// fio randrw of `size` bytes of `device`, 4 KiB at QD 1 with crc32 verify:
/// it must pass with no error.
pub(super) async fn verify(
    steps: &mut Steps,
    device: &std::path::Path,
    size: u64,
    timeout: std::time::Duration,
) -> Result<(), CheckError> {
    let job = FioJob::verify_randrw(device, size)
        .bs(4096)
        .iodepth(1)
        .verify(Verify::Crc32);
    steps
        .fio(
            "should run fio randrw 4 KiB QD1 with crc32 verify and no error",
            &[job],
            timeout,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::Transport;

    const UUID: &str = "0f3c5e46-8a3b-4a53-9a3c-1d8e4f3b2a10";

    #[test]
    fn parses_a_share_uri() {
        let uri = format!("nvmf://192.168.1.2:8430/{NQN_PREFIX}{UUID}");
        let s = share_of(&uri, UUID).unwrap();
        assert_eq!(s.transport.traddr, "192.168.1.2");
        assert_eq!(s.transport.trsvcid, 8430);
        assert_eq!(s.nqn, nqn_of(UUID));
        assert_eq!(s.on_port(8420).trsvcid, 8420);
    }

    #[test]
    fn rejects_a_share_uri_for_another_bdev_or_scheme() {
        let other =
            format!("nvmf://192.168.1.2:8430/{NQN_PREFIX}00000000-0000-0000-0000-000000000000");
        assert!(share_of(&other, UUID).is_err());
        let iscsi = format!("iscsi://192.168.1.2:8430/{NQN_PREFIX}{UUID}");
        assert!(share_of(&iscsi, UUID).is_err());
        let no_port = format!("nvmf://192.168.1.2/{NQN_PREFIX}{UUID}");
        assert!(share_of(&no_port, UUID).is_err());
        // An IPv6 address is the transport's without the URI's brackets.
        let v6 = format!("nvmf://[fd00::2]:8430/{NQN_PREFIX}{UUID}");
        assert_eq!(share_of(&v6, UUID).unwrap().transport.traddr, "fd00::2");
    }

    fn ns(device: &str, uuid: &str, size: u64) -> Namespace {
        Namespace {
            device: device.into(),
            nsid: 1,
            size_bytes: size,
            block_size: 512,
            uuid: Some(uuid.parse().unwrap()),
            nguid: None,
        }
    }

    #[test]
    fn a_connection_must_show_one_namespace_of_the_bdev() {
        let bdev = Bdev {
            name: "aio:///dev/vdb".into(),
            uuid: UUID.into(),
            num_blocks: 2048,
            blk_size: 512,
            ..Bdev::default()
        };
        let conn = |namespaces| Connection {
            subnqn: nqn_of(UUID),
            controllers: vec!["nvme0".into()],
            namespaces,
        };
        let good = ns("/dev/nvme0n1", UUID, 1 << 20);
        assert_eq!(
            namespace_of(&conn(vec![good.clone()]), &bdev).unwrap(),
            good
        );
        let err = namespace_of(&conn(vec![]), &bdev).unwrap_err().to_string();
        assert!(err.contains("no namespace"), "{err}");
        let two = conn(vec![good.clone(), ns("/dev/nvme1n1", UUID, 1 << 20)]);
        let err = namespace_of(&two, &bdev).unwrap_err().to_string();
        assert!(err.contains("multipath"), "{err}");
        let small = ns("/dev/nvme0n1", UUID, 1 << 19);
        assert!(namespace_of(&conn(vec![small]), &bdev).is_err());
        let other = ns(
            "/dev/nvme0n1",
            "00000000-0000-0000-0000-000000000001",
            1 << 20,
        );
        assert!(namespace_of(&conn(vec![other]), &bdev).is_err());
    }

    /// Properties over generated share URIs (see `crate::props`).
    mod props {
        use std::net::SocketAddr;

        use proptest::prelude::*;

        use super::*;
        use crate::props::{config, ip, text, uuid};

        proptest! {
            #![proptest_config(config(256))]

            /// The share of bdev `uuid` at any address and port gives the
            /// transport to connect to; for any other bdev it is refused.
            #[test]
            fn a_share_uri_gives_its_transport(
                ip in ip(), port in 1..=u16::MAX, uuid in uuid(), other in uuid()
            ) {
                let (uuid, other) = (uuid.to_string(), other.to_string());
                let uri = format!("nvmf://{}/{}", SocketAddr::new(ip, port), nqn_of(&uuid));
                let s = share_of(&uri, &uuid).unwrap();
                prop_assert_eq!(s.transport, Transport::new(ip.to_string(), port).unwrap());
                prop_assert_eq!(&s.nqn, &nqn_of(&uuid));
                prop_assert_eq!(share_of(&uri, &other).is_ok(), uuid == other);
            }

            #[test]
            fn any_input_is_refused_or_valid(uri in text(80), uuid in uuid()) {
                if let Ok(s) = share_of(&uri, &uuid.to_string()) {
                    s.transport.validate().unwrap();
                }
            }
        }
    }
}
