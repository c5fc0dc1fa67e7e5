//! Cases `remote-nexus` and `mirror`: a nexus on node1 over a replica on
//! node2, then over a local and a remote replica, written and verified
//! from the initiator.

use crate::proto::mayastor::{ChildState, NexusState};
use crate::suite::steps::ensure;
use crate::suite::{Case, CaseFuture, Env, Steps};

use super::{
    attach, cleanup, destroy_and_compare, detach, publish, replicas, uuid, write_data, AgentSetup,
    Nodes, NEXUS, REPLICA,
};

pub(super) fn remote() -> Case {
    Case {
        name: "remote-nexus",
        about: "a nexus on node1 over a replica on node2, published on the setup's nexus port \
                while the replicas keep theirs, written and verified from the initiator",
        run: run_remote,
        cleanup: Some(cleanup),
    }
}

pub(super) fn local_and_remote() -> Case {
    Case {
        name: "mirror",
        about: "a nexus of a local and a remote replica, written and verified; both replicas \
                then hold the same bytes",
        run: run_mirror,
        cleanup: Some(cleanup),
    }
}

fn run_remote<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let nodes = Nodes::connect(env).await?;
        let (replica, nexus) = (uuid(1, 1), uuid(1, 100));
        let r = steps
            .run(
                "should make a replica on node2, shared over NVMe/TCP",
                async {
                    Ok(nodes
                        .node2
                        .create_replica(&replica, super::POOL, REPLICA, true)
                        .await?)
                },
            )
            .await?;
        let made = steps
            .run("should make a nexus on node1 over node2's replica", async {
                Ok(nodes
                    .node1
                    .create_nexus(&nexus, NEXUS, std::slice::from_ref(&r.uri))
                    .await?)
            })
            .await?;
        steps
            .run(
                "should list the nexus online with its child online",
                async {
                    let child = made.children.first().map(|c| c.state());
                    ensure(
                        made.state() == NexusState::NexusOnline
                            && child == Some(ChildState::ChildOnline),
                        || format!("{made:?}"),
                    )
                },
            )
            .await?;
        let uri = steps
            .run("should publish the nexus over NVMe/TCP", async {
                Ok(nodes.node1.publish_nexus(&nexus).await?)
            })
            .await?;
        steps
            .run(
                "should serve the nexus on the nexus port, the replica on its own",
                async {
                    let port =
                        |u: &str| crate::nvme::ShareUri::parse(u).map(|s| s.transport.trsvcid);
                    let want = AgentSetup::Replication.nexus_port();
                    let (nexus_port, replica_port) = (port(&uri)?, port(&r.uri)?);
                    ensure(
                        Some(nexus_port) == want
                            && nexus_port != replica_port
                            && uri.contains(&format!(":nexus-{nexus}")),
                        || format!("nexus at {uri}, replica at {}; nexus port {want:?}", r.uri),
                    )
                },
            )
            .await?;
        let a = attach(env, steps, &uri, "the nexus").await?;
        write_data(env, steps, &a, "the nexus").await?;
        detach(env, steps, a).await
    })
}

fn run_mirror<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let nodes = Nodes::connect(env).await?;
        let (local, remote, nexus) = (uuid(2, 1), uuid(2, 2), uuid(2, 100));
        let (l, r) = replicas(steps, &nodes, &local, &remote).await?;
        steps
            .run("should give node1's replica a bdev:/// URI", async {
                ensure(l == format!("bdev:///{local}"), || l.clone())
            })
            .await?;
        let children = [l.clone(), r.clone()];
        steps
            .run(
                "should make a nexus over both, both children online",
                async {
                    let n = nodes.node1.create_nexus(&nexus, NEXUS, &children).await?;
                    let states: Vec<_> = n.children.iter().map(|c| c.state()).collect();
                    ensure(states == [ChildState::ChildOnline; 2], || format!("{n:?}"))
                },
            )
            .await?;
        let a = publish(env, steps, &nodes, &nexus).await?;
        write_data(env, steps, &a, "the nexus").await?;
        destroy_and_compare(env, steps, &nodes, a, &nexus, (&local, &r)).await
    })
}
