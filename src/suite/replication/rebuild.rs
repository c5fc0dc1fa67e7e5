//! Cases `rebuild` and `offline-online`: a child that joins later is
//! rebuilt only when asked, pauses and resumes; a child taken offline is
//! degraded and rebuilt when it comes back. Data stays verified and both
//! replicas end identical.

use std::time::Duration;

use crate::proto::mayastor::{ChildAction, ChildState, NexusState};
use crate::suite::steps::ensure;
use crate::suite::{Case, CaseFuture, Env, Steps};

use super::{
    child, cleanup, destroy_and_compare, make_mirror, nexus, publish, read_back, replicas, uuid,
    wait_children, write_data, Mirror, Nodes, NEXUS, REBUILT,
};

use ChildState::{ChildDegraded as Degraded, ChildOnline as Online};

pub(super) fn added_later() -> Case {
    Case {
        name: "rebuild",
        about: "a child added with norebuild stays degraded until StartRebuild; the rebuild \
                runs, pauses (no progress), resumes and completes; data verified and identical",
        run: run_added_later,
        cleanup: Some(cleanup),
    }
}

pub(super) fn offline_online() -> Case {
    Case {
        name: "offline-online",
        about: "ChildOperation offline degrades a child while I/O goes on; online rebuilds it; \
                data verified and identical",
        run: run_offline_online,
        cleanup: Some(cleanup),
    }
}

fn run_added_later<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let nodes = Nodes::connect(env).await?;
        let (local, remote, nexus_id) = (uuid(3, 1), uuid(3, 2), uuid(3, 100));
        let (l, r) = replicas(steps, &nodes, &local, &remote).await?;
        steps
            .run("should make a nexus over node1's replica alone", async {
                Ok(nodes.node1.create_nexus(&nexus_id, NEXUS, &[l]).await?)
            })
            .await?;
        let a = publish(env, steps, &nodes, &nexus_id).await?;
        write_data(env, steps, &a, "the nexus").await?;
        let c = child(&nexus_id, &r);
        steps
            .run(
                "should add node2's replica with norebuild: degraded, no rebuild",
                async {
                    let added = nodes.node1.add_child(c, true).await?;
                    ensure(
                        added.state() == Degraded && added.rebuild_progress == -1,
                        || format!("{added:?}"),
                    )?;
                    let e = nodes.node1.rebuild_state(c).await;
                    ensure(
                        e.as_ref().err().and_then(|e| e.code()) == Some(tonic::Code::NotFound),
                        || format!("GetRebuildState of a child never rebuilt: {e:?}"),
                    )
                },
            )
            .await?;
        steps
            .run(
                "should keep it degraded while no rebuild is asked for",
                async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    wait_children(&nodes, &nexus_id, &[Online, Degraded], Duration::ZERO).await?;
                    Ok(())
                },
            )
            .await?;
        steps
            .run("should start its rebuild: running", async {
                nodes.node1.start_rebuild(c).await?;
                let state = nodes.node1.rebuild_state(c).await?;
                ensure(state == "running", || format!("state {state:?}"))
            })
            .await?;
        steps
            .run("should pause it: paused, and no progress for 2 s", async {
                nodes.node1.pause_rebuild(c).await?;
                let state = nodes.node1.rebuild_state(c).await?;
                ensure(state == "paused", || format!("state {state:?}"))?;
                let before = nodes.node1.rebuild_progress(c).await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let after = nodes.node1.rebuild_progress(c).await?;
                ensure(before == after && after < 100, || {
                    format!("progress went from {before}% to {after}% while paused")
                })
            })
            .await?;
        steps
            .run(
                "should resume it: running, then completed, both children online",
                async {
                    nodes.node1.resume_rebuild(c).await?;
                    let state = nodes.node1.rebuild_state(c).await;
                    ensure(
                        matches!(state.as_deref(), Ok("running"))
                            || state.as_ref().err().and_then(|e| e.code())
                                == Some(tonic::Code::NotFound),
                        || format!("after resume: {state:?}"),
                    )?;
                    let n = wait_children(&nodes, &nexus_id, &[Online, Online], REBUILT).await?;
                    ensure(
                        n.state() == NexusState::NexusOnline && n.rebuilds == 0,
                        || format!("{n:?}"),
                    )
                },
            )
            .await?;
        read_back(env, steps, &a).await?;
        destroy_and_compare(env, steps, &nodes, a, &nexus_id, (&local, &r)).await
    })
}

fn run_offline_online<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let nodes = Nodes::connect(env).await?;
        let Mirror {
            local,
            remote_uri: r,
            nexus: nexus_id,
            attached: a,
            ..
        } = make_mirror(env, steps, &nodes, 4).await?;
        let c = child(&nexus_id, &r);
        steps
            .run(
                "should take node2's child offline: degraded, the nexus degraded",
                async {
                    nodes.node1.child_operation(c, ChildAction::Offline).await?;
                    let n = nexus(&nodes, &nexus_id).await?;
                    let states: Vec<_> = n.children.iter().map(|c| c.state()).collect();
                    ensure(
                        states == [Online, Degraded] && n.state() == NexusState::NexusDegraded,
                        || format!("{n:?}"),
                    )
                },
            )
            .await?;
        write_data(env, steps, &a, "the degraded nexus").await?;
        steps
            .run(
                "should bring it online: rebuilt, both children online",
                async {
                    nodes.node1.child_operation(c, ChildAction::Online).await?;
                    wait_children(&nodes, &nexus_id, &[Online, Online], REBUILT).await?;
                    Ok(())
                },
            )
            .await?;
        read_back(env, steps, &a).await?;
        destroy_and_compare(env, steps, &nodes, a, &nexus_id, (&local, &r)).await
    })
}
