//! Node2 lost, two ways. Case `link-down`: its link goes down while it is
//! being rebuilt (`Control.LinkDown` on node2). Case `power-cycle`: its VM
//! resets without a sync during nexus I/O (`Control.PowerCycle`), then
//! boots again. Either way node1 gives the lost controller up after the
//! nexus's controller-loss timeout and md stops using the child: a rebuild
//! ends, the child is faulted, and the nexus's I/O goes on with no verify
//! error. A node that booted again still has its replica, which is shared
//! and added back.

use std::time::{Duration, Instant};

use crate::proto::mayastor::{ChildState, ShareProtocolReplica};
use crate::suite::during::{fio_during, Expect, WARM_UP, WARM_UP_IOS};
use crate::suite::steps::ensure;
use crate::suite::{Case, CaseFuture, CheckError, Env, Steps};

use super::{
    attach, child, cleanup, data_set, destroy_and_compare, detach, faulted, make_mirror,
    node2_control, read_back, replicas, uuid, wait_children, write_data, Mirror, Nodes, NEXUS,
    POLL, REBUILT,
};

/// How long node2's link stays down.
const LINK_DOWN_SECS: u32 = 30;

/// How long node2 may take to answer again after the case took its link
/// down: the outage and a margin.
pub(super) const LINK_BACK: Duration = Duration::from_secs(LINK_DOWN_SECS as u64 + 60);

/// How long node1 may take to fault the child: noticing the dead link
/// (keep-alive), the controller-loss timeout (`nexus::kernel::CTRL_LOSS_TMO`),
/// and md failing the member.
pub(super) const FAULTED: Duration = Duration::from_secs(LINK_DOWN_SECS as u64);

pub(super) fn link_down() -> Case {
    Case {
        name: "link-down",
        about: "node2's link down during its rebuild: the rebuild ends, the child is faulted, \
                the nexus's I/O goes on with 0 verify errors",
        run,
        cleanup: Some(cleanup),
    }
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let nodes = Nodes::connect(env).await?;
        let (local, remote, nexus_id) = (uuid(5, 1), uuid(5, 2), uuid(5, 100));
        let (l, r) = replicas(steps, &nodes, &local, &remote).await?;
        let uri = steps
            .run(
                "should make and publish a nexus over node1's replica",
                async {
                    nodes.node1.create_nexus(&nexus_id, NEXUS, &[l]).await?;
                    Ok(nodes.node1.publish_nexus(&nexus_id).await?)
                },
            )
            .await?;
        let a = attach(env, steps, &uri, "the nexus").await?;
        write_data(env, steps, &a, "the nexus").await?;
        let c = child(&nexus_id, &r);
        let control = node2_control(env).await?;
        steps
            .run(
                &format!("should add node2's replica and take node2's link down for {LINK_DOWN_SECS} s during its rebuild"),
                async {
                    nodes.node1.add_child(c, false).await?;
                    let state = nodes.node1.rebuild_state(c).await?;
                    ensure(state == "running", || format!("rebuild {state:?}"))?;
                    control.link_down(LINK_DOWN_SECS).await?;
                    Ok(())
                },
            )
            .await?;
        steps
            .fio(
                "should write and verify through the nexus while node2 is gone",
                &[data_set(&a.device).offset(super::DATA)],
                env.settings.fio_timeout,
            )
            .await?;
        steps
            .run("should fault the child and end its rebuild", async {
                let n = faulted(&nodes, &nexus_id).await?;
                ensure(n.rebuilds == 0, || format!("{n:?}"))?;
                let e = nodes.node1.rebuild_state(c).await;
                ensure(
                    e.as_ref().err().and_then(|e| e.code()) == Some(tonic::Code::NotFound),
                    || format!("GetRebuildState after the fault: {e:?}"),
                )
            })
            .await?;
        read_back(env, steps, &a).await?;
        detach(env, steps, a).await
    })
}

pub(super) fn power_cycle() -> Case {
    Case {
        name: "power-cycle",
        about: "node2's VM reset without a sync during nexus I/O: the child is faulted and the \
                I/O goes on with 0 verify errors; node2 boots again with its replica, which is \
                added back and rebuilt; data verified and identical",
        run: run_power_cycle,
        cleanup: Some(cleanup),
    }
}

/// How long node2 may take to boot again and answer after the reset.
const BOOTED: Duration = Duration::from_secs(120);

/// The most writes per second fio makes while node2 resets, so that the
/// reset strikes its workload on any machine: 2048 writes take 10 s or
/// more, and the reset comes after [`WARM_UP_IOS`].
const WRITE_IOPS: u32 = 200;

fn run_power_cycle<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let nodes = Nodes::connect(env).await?;
        let Mirror {
            local,
            remote,
            remote_uri: r,
            nexus: nexus_id,
            attached: a,
        } = make_mirror(env, steps, &nodes, 6).await?;
        let control = node2_control(env).await?;
        let first_boot = steps
            .run("should read node2's boot id", async {
                Ok(control.info().await?.boot_id)
            })
            .await?;
        let job = data_set(&a.device).extra("rate_iops", format!(",{WRITE_IOPS}"));
        fio_during(
            steps,
            "should write and verify through the nexus while node2's VM resets",
            &a.nqn,
            &[job],
            env.settings.fio_timeout,
            Expect::Pass,
            |w| async move {
                w.wait_for_io(WARM_UP_IOS, WARM_UP).await?;
                control.power_cycle().await?;
                Ok(())
            },
        )
        .await?;
        steps
            .run("should fault node2's child", async {
                faulted(&nodes, &nexus_id).await.map(drop)
            })
            .await?;
        let nodes = steps
            .run(
                "should find node2 booted again, with its replica, unshared",
                async {
                    let deadline = Instant::now() + BOOTED;
                    let (nodes, boot, replicas) = crate::client::retry(deadline, POLL, || async {
                        let nodes = Nodes::connect(env).await?;
                        let boot = node2_control(env).await?.info().await?.boot_id;
                        let replicas = nodes.node2.list_replicas().await?;
                        Ok::<_, CheckError>((nodes, boot, replicas))
                    })
                    .await?;
                    ensure(boot != first_boot, || {
                        format!("node2 answers, but still from boot {boot}: it did not reset")
                    })?;
                    let found = replicas.iter().find(|x| x.uuid == remote);
                    ensure(
                        found.is_some_and(|x| x.share() == ShareProtocolReplica::ReplicaNone),
                        || format!("node2 lists {replicas:?}, not replica {remote} unshared"),
                    )?;
                    Ok(nodes)
                },
            )
            .await?;
        let c = child(&nexus_id, &r);
        steps
            .run(
                "should share node2's replica again, and add it back: rebuilt, both online",
                async {
                    let uri = nodes.node2.share_replica(&remote, true).await?;
                    ensure(uri == r, || {
                        format!("the share is {uri}, not {r} as before")
                    })?;
                    nodes.node1.remove_child(c).await?;
                    nodes.node1.add_child(c, false).await?;
                    wait_children(
                        &nodes,
                        &nexus_id,
                        &[ChildState::ChildOnline, ChildState::ChildOnline],
                        REBUILT,
                    )
                    .await
                    .map(drop)
                },
            )
            .await?;
        read_back(env, steps, &a).await?;
        destroy_and_compare(env, steps, &nodes, a, &nexus_id, (&local, &r)).await
    })
}
