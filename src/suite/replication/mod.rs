//! The `replication` category: Mayastor's pools, replicas, nexus and
//! rebuild on two nodes, `node1` and `node2`, checked from the initiator
//! with fio verify wherever data flows, as Mayastor's own NixOS tests
//! (`nvmf_distributed`, `rebuild`, `child_status`, `nvmf_ports`) did.
//!
//! Every case makes its replicas and nexus on the pools that the first
//! case makes (one on each node's blank disk) and its cleanup removes
//! them, whatever a failure left; the last case destroys the pools. Node1
//! holds the nexuses; its local replica is `bdev:///<uuid>`, node2's are
//! reached over NVMe/TCP. `docs/replication.md` lists what each case
//! proves.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::client::{ChildOf, Control, Mayastor};
use crate::fio::FioJob;
use crate::nvme::{self, ConnectOptions, ShareUri};
use crate::proto::mayastor::{ChildState, Nexus, NexusState};

use super::state::JobParams;
use super::steps::ensure;
use super::{block, fabric};
use super::{AgentSetup, Case, CaseFuture, Category, CheckError, Env, Steps};

mod faults;
mod mirror;
mod rebuild;

/// The pool each node makes on its blank disk.
const POOL: &str = "replication";
/// The disk of each node's pool.
const DISK: &str = "/dev/vdb";
/// Bytes of each replica.
const REPLICA: u64 = 32 << 20;
/// Bytes of each nexus: what md leaves of a replica, rounded down.
const NEXUS: u64 = 28 << 20;
/// Bytes each fio job writes.
const DATA: u64 = 8 << 20;
/// How long a rebuild of [`NEXUS`] bytes may take at the setup's rate.
const REBUILT: Duration = Duration::from_secs(90);
/// How often a wait asks again.
const POLL: Duration = Duration::from_millis(250);
/// Deadline of a `Mayastor` call. Pool, replica and nexus calls run LVM's
/// and mdadm's tools, a second or more each under TCG and several times
/// that on a loaded host (DestroyReplica took over 10 s with a host core
/// busy). The agent bounds every request itself (30 s) and then answers
/// DEADLINE_EXCEEDED, naming the request: the client waits a little longer,
/// to hear that rather than cancel first.
const CALL_TIMEOUT: Duration =
    Duration::from_secs(crate::agent::serial::REQUEST_DEADLINE.as_secs() + 10);

pub(super) fn category() -> Category {
    Category {
        name: "replication",
        about: "Mayastor's pools, replicas, nexus and rebuild on two nodes (LVM2, md RAID1, \
                NVMe/TCP): mirrored data identical on both replicas through rebuilds, pauses, \
                offline children and a lost link",
        depends_on: &["basic"],
        setup: AgentSetup::Replication,
        leaves_state: false,
        cases: vec![
            pools(),
            mirror::remote(),
            mirror::local_and_remote(),
            rebuild::added_later(),
            rebuild::offline_online(),
            faults::link_down(),
            faults::power_cycle(),
            teardown(),
        ],
    }
}

/// The nodes' `Mayastor` services: node1 is `--target`, node2 `--node2`.
#[derive(Clone)]
struct Nodes {
    node1: Mayastor,
    node2: Mayastor,
}

impl Nodes {
    async fn connect(env: &Env) -> Result<Self, CheckError> {
        let s = &env.settings;
        let timeout = s.rpc_timeout.max(CALL_TIMEOUT);
        Ok(Self {
            node1: Mayastor::connect(&s.target, timeout, s.token.clone()).await?,
            node2: Mayastor::connect(&s.node2, timeout, s.token.clone()).await?,
        })
    }
}

/// A uuid for replica or nexus `n` of case `case`, so that every object a
/// case makes is told by its name.
fn uuid(case: u16, n: u16) -> String {
    format!("00000000-0000-4000-8000-0000{case:04x}{n:04x}")
}

/// `ChildOf` in short.
fn child<'a>(nexus: &'a str, uri: &'a str) -> ChildOf<'a> {
    ChildOf { nexus, uri }
}

fn pools() -> Case {
    Case {
        name: "pools",
        about: "a pool on each node's blank disk (CreatePool, ListPools)",
        run: |env, steps| {
            Box::pin(async move {
                let nodes = Nodes::connect(env).await?;
                for (name, node) in [("node1", &nodes.node1), ("node2", &nodes.node2)] {
                    steps
                        .run(
                            &format!("should make pool {POOL} on {name}'s {DISK}"),
                            async {
                                let pool = node.create_pool(POOL, DISK).await?;
                                ensure(pool.capacity >= 4 * REPLICA, || {
                                    format!("pool {POOL} on {name} is too small: {pool:?}")
                                })
                            },
                        )
                        .await?;
                }
                Ok(())
            })
        },
        cleanup: None,
    }
}

fn teardown() -> Case {
    Case {
        name: "teardown",
        about: "the pools go, and no nexus, replica or connection is left",
        run: |env, steps| {
            Box::pin(async move {
                let nodes = Nodes::connect(env).await?;
                for (name, node) in [("node1", &nodes.node1), ("node2", &nodes.node2)] {
                    steps
                        .run(&format!("should destroy pool {POOL} on {name}"), async {
                            Ok(node.destroy_pool(POOL).await?)
                        })
                        .await?;
                    steps
                        .run(
                            &format!("should leave no replica or nexus on {name}"),
                            async {
                                let replicas = node.list_replicas().await?;
                                let nexuses = node.list_nexus().await?;
                                ensure(replicas.is_empty() && nexuses.is_empty(), || {
                                    format!("{name} has {replicas:?} and {nexuses:?}")
                                })
                            },
                        )
                        .await?;
                }
                Ok(())
            })
        },
        cleanup: None,
    }
}

/// The cleanup of every case: node2's link back (a case may have taken it
/// down), then nothing connected, no nexus, no replica.
fn cleanup<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        // A case may have left node2's link down: it comes back on its own.
        let nodes = steps
            .run("should reach both nodes", async {
                let deadline = Instant::now() + faults::LINK_BACK;
                crate::client::retry(deadline, POLL, || async {
                    let nodes = Nodes::connect(env).await?;
                    nodes.node2.list_replicas().await?;
                    Ok::<_, CheckError>(nodes)
                })
                .await
            })
            .await?;
        let nexuses = nodes.node1.list_nexus().await?;
        let mut nqns: Vec<String> = nexuses
            .iter()
            .map(|n| format!("{}nexus-{}", crate::agent::nvmet::NQN_PREFIX, n.uuid))
            .collect();
        for node in [&nodes.node1, &nodes.node2] {
            for r in node.list_replicas().await? {
                nqns.push(format!("{}{}", crate::agent::nvmet::NQN_PREFIX, r.uuid));
            }
        }
        steps
            .run("should disconnect the initiator", async {
                for nqn in &nqns {
                    if nvme::connection(nqn, env.settings.nvme_timeout)
                        .await?
                        .is_some()
                    {
                        nvme::disconnect(nqn, env.settings.nvme_timeout).await?;
                    }
                }
                Ok(())
            })
            .await?;
        steps
            .run("should destroy the nexuses and replicas", async {
                for n in &nexuses {
                    nodes.node1.destroy_nexus(&n.uuid).await?;
                }
                // The nodes at once: LVM takes seconds per volume under TCG.
                let (one, two) = tokio::join!(
                    destroy_replicas(&nodes.node1),
                    destroy_replicas(&nodes.node2)
                );
                one.and(two)
            })
            .await
    })
}

/// Destroys every replica of `node`.
async fn destroy_replicas(node: &Mayastor) -> Result<(), CheckError> {
    for r in node.list_replicas().await? {
        node.destroy_replica(&r.uuid).await?;
    }
    Ok(())
}

/// Makes a local replica `local` on node1 and one shared over NVMe/TCP,
/// `remote`, on node2, at once; returns their URIs.
async fn replicas(
    steps: &mut Steps,
    nodes: &Nodes,
    local: &str,
    remote: &str,
) -> Result<(String, String), CheckError> {
    steps
        .run(
            "should make a local replica on node1 and a shared one on node2",
            async {
                let (l, r) = tokio::join!(
                    nodes.node1.create_replica(local, POOL, REPLICA, false),
                    nodes.node2.create_replica(remote, POOL, REPLICA, true)
                );
                Ok((l?.uri, r?.uri))
            },
        )
        .await
}

/// A case's mirror: node1's local replica, node2's shared one, a nexus over
/// both on node1, published and connected to from the initiator.
struct Mirror {
    /// Node1's replica's uuid.
    local: String,
    /// Node2's replica's uuid.
    remote: String,
    /// Node2's replica's URI: the nexus's second child.
    remote_uri: String,
    /// The nexus's uuid.
    nexus: String,
    /// The initiator's connection to the nexus.
    attached: Attached,
}

/// Makes case `case`'s [`Mirror`].
async fn make_mirror(
    env: &Env,
    steps: &mut Steps,
    nodes: &Nodes,
    case: u16,
) -> Result<Mirror, CheckError> {
    let (local, remote, nexus) = (uuid(case, 1), uuid(case, 2), uuid(case, 100));
    let (l, remote_uri) = replicas(steps, nodes, &local, &remote).await?;
    steps
        .run("should make a nexus over both replicas", async {
            Ok(nodes
                .node1
                .create_nexus(&nexus, NEXUS, &[l, remote_uri.clone()])
                .await?)
        })
        .await?;
    let attached = publish(env, steps, nodes, &nexus).await?;
    Ok(Mirror {
        local,
        remote,
        remote_uri,
        nexus,
        attached,
    })
}

/// Waits until node1 has faulted nexus `uuid`'s second child (node2's) and
/// the nexus is degraded; returns the nexus.
async fn faulted(nodes: &Nodes, uuid: &str) -> Result<Nexus, CheckError> {
    let n = wait_children(
        nodes,
        uuid,
        &[ChildState::ChildOnline, ChildState::ChildFaulted],
        faults::FAULTED,
    )
    .await?;
    ensure(n.state() == NexusState::NexusDegraded, || format!("{n:?}"))?;
    Ok(n)
}

/// A namespace the initiator connected to, and its subsystem.
struct Attached {
    nqn: String,
    device: PathBuf,
}

/// Connects the initiator to `uri` (`what` names it in the step).
async fn attach(
    env: &Env,
    steps: &mut Steps,
    uri: &str,
    what: &str,
) -> Result<Attached, CheckError> {
    let share = ShareUri::parse(uri)?;
    let opts = ConnectOptions {
        // Longer than any fault a case makes: the host rides them out.
        ctrl_loss_tmo: Some(60),
        reconnect_delay: Some(1),
        ..fabric::connect_options(env)
    };
    let t = &share.transport;
    let conn = steps
        .run(
            &format!("should connect to {what} at port {}", t.trsvcid),
            async { Ok(nvme::connect(t, &share.nqn, &opts).await?) },
        )
        .await?;
    let device = conn
        .namespaces
        .first()
        .map(|ns| ns.device.clone())
        .ok_or_else(|| CheckError::Failed(format!("{} shows no namespace", share.nqn)))?;
    Ok(Attached {
        nqn: share.nqn,
        device,
    })
}

/// Publishes nexus `uuid` and connects the initiator to it.
async fn publish(
    env: &Env,
    steps: &mut Steps,
    nodes: &Nodes,
    uuid: &str,
) -> Result<Attached, CheckError> {
    let uri = steps
        .run("should publish the nexus", async {
            Ok(nodes.node1.publish_nexus(uuid).await?)
        })
        .await?;
    attach(env, steps, &uri, "the nexus").await
}

/// Writes the data set through `a` and verifies it.
async fn write_data(
    env: &Env,
    steps: &mut Steps,
    a: &Attached,
    what: &str,
) -> Result<(), CheckError> {
    steps
        .fio(
            &format!("should write 8 MiB through {what} and verify it"),
            &[data_set(&a.device)],
            env.settings.fio_timeout,
        )
        .await
        .map(drop)
}

/// Reads the data set back through `a` (verify only).
async fn read_back(env: &Env, steps: &mut Steps, a: &Attached) -> Result<(), CheckError> {
    steps
        .fio(
            "should read the data set back intact (verify only)",
            &[data_set(&a.device).verify_only(true)],
            env.settings.fio_timeout,
        )
        .await
        .map(drop)
}

/// Disconnects the initiator from nexus `uuid` and destroys it, then
/// checks that its two replicas hold the same bytes.
async fn destroy_and_compare(
    env: &Env,
    steps: &mut Steps,
    nodes: &Nodes,
    a: Attached,
    uuid: &str,
    (local, remote_uri): (&str, &str),
) -> Result<(), CheckError> {
    detach(env, steps, a).await?;
    steps
        .run("should destroy the nexus", async {
            Ok(nodes.node1.destroy_nexus(uuid).await?)
        })
        .await?;
    same_data(env, steps, nodes, local, remote_uri).await
}

/// Disconnects the initiator from `a`.
async fn detach(env: &Env, steps: &mut Steps, a: Attached) -> Result<(), CheckError> {
    fabric::disconnect(env, steps, &a.nqn).await
}

/// The fio job that writes the case's data set through `device` and
/// verifies it; `verify_only` replays it to check.
fn data_set(device: &std::path::Path) -> FioJob {
    JobParams::data_set().job(device, 0, DATA)
}

/// Shares both replicas of a mirror over NVMe/TCP, reads each from the
/// initiator and checks they hold the same bytes.
async fn same_data(
    env: &Env,
    steps: &mut Steps,
    nodes: &Nodes,
    local: &str,
    remote_uri: &str,
) -> Result<(), CheckError> {
    let local_uri = steps
        .run("should share node1's replica to read it", async {
            Ok(nodes.node1.share_replica(local, true).await?)
        })
        .await?;
    let mut sums = Vec::new();
    for (uri, what) in [
        (local_uri.as_str(), "node1's replica"),
        (remote_uri, "node2's replica"),
    ] {
        let a = attach(env, steps, uri, what).await?;
        let sum = steps
            .run(
                &format!("should read {what}"),
                block::checksum(&a.device, 0, NEXUS, env.settings.fio_timeout),
            )
            .await?;
        detach(env, steps, a).await?;
        sums.push(sum);
    }
    steps
        .run("should find the same data on both replicas", async {
            ensure(sums[0] == sums[1], || {
                format!(
                    "the replicas differ: sha256 {} on node1, {} on node2",
                    sums[0], sums[1]
                )
            })
        })
        .await
}

/// Polls node1 until nexus `uuid`'s children are in `want` states, for
/// at most `within`.
async fn wait_children(
    nodes: &Nodes,
    uuid: &str,
    want: &[ChildState],
    within: Duration,
) -> Result<Nexus, CheckError> {
    let deadline = Instant::now() + within;
    loop {
        let nexus = nexus(nodes, uuid).await?;
        let states: Vec<ChildState> = nexus.children.iter().map(|c| c.state()).collect();
        if states == want {
            return Ok(nexus);
        }
        if Instant::now() >= deadline {
            return Err(CheckError::Failed(format!(
                "nexus {uuid}'s children are {states:?} after {}s, not {want:?}: {nexus:?}",
                within.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Nexus `uuid` as node1 lists it.
async fn nexus(nodes: &Nodes, uuid: &str) -> Result<Nexus, CheckError> {
    let list = nodes.node1.list_nexus().await?;
    list.into_iter()
        .find(|n| n.uuid == uuid)
        .ok_or_else(|| CheckError::Failed(format!("node1 does not list nexus {uuid}")))
}

/// Node2's `Control` service, for its link.
async fn node2_control(env: &Env) -> Result<Control, CheckError> {
    let s = &env.settings;
    Ok(Control::connect(&s.node2, s.rpc_timeout, s.token.clone()).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_but_the_first_and_last_cleans_up() {
        let cat = category();
        let n = cat.cases.len();
        assert_eq!(cat.cases[0].name, "pools");
        assert_eq!(cat.cases[n - 1].name, "teardown");
        assert!(cat.cases[1..n - 1].iter().all(|c| c.cleanup.is_some()));
        assert_eq!(cat.depends_on, ["basic"]);
    }

    #[test]
    fn uuids_are_uuids_and_distinct() {
        let a = uuid(1, 2);
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
        assert_ne!(a, uuid(2, 1));
    }
}
