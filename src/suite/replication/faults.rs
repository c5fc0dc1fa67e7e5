//! Case `link-down`: node2's link goes down while it is being rebuilt
//! (`Control.LinkDown` on node2). Node1 gives the lost controller up after
//! the nexus's controller-loss timeout, md stops using the child: the
//! rebuild ends, the child is faulted, and the nexus's I/O goes on with
//! no verify error.

use std::time::Duration;

use crate::proto::mayastor::{ChildState, NexusState};
use crate::suite::steps::ensure;
use crate::suite::{Case, CaseFuture, Env, Steps};

use super::{
    attach, child, cleanup, data_set, detach, node2_control, read_back, replicas, uuid,
    wait_children, write_data, Nodes, NEXUS,
};

/// How long node2's link stays down.
const LINK_DOWN_SECS: u32 = 30;

/// How long node2 may take to answer again after the case took its link
/// down: the outage and a margin.
pub(super) const LINK_BACK: Duration = Duration::from_secs(LINK_DOWN_SECS as u64 + 60);

/// How long node1 may take to fault the child: noticing the dead link
/// (keep-alive), the controller-loss timeout (`nexus::kernel::CTRL_LOSS_TMO`),
/// and md failing the member.
const FAULTED: Duration = Duration::from_secs(LINK_DOWN_SECS as u64);

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
                let n = wait_children(
                    &nodes,
                    &nexus_id,
                    &[ChildState::ChildOnline, ChildState::ChildFaulted],
                    FAULTED,
                )
                .await?;
                ensure(
                    n.state() == NexusState::NexusDegraded && n.rebuilds == 0,
                    || format!("{n:?}"),
                )?;
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
