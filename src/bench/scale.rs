//! Scale: many small bdevs created and shared one after another,
//! discovered, all connected and disconnected, then unshared and
//! destroyed, each phase timed. Split in two halves ([`up`] and [`down`])
//! so that the agent's memory can be read while all are shared.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{median, BenchError, Latency};
use crate::client::Target;
use crate::nvme::{self, ShareUri, Transport};

/// The prefix of the bdevs' names.
pub const PREFIX: &str = "bench-scale-";

/// How many shares the first-vs-last comparison takes from each end.
pub const ENDS: usize = 32;

/// Bdev `i`'s name.
fn name(i: u32) -> String {
    format!("{PREFIX}{i:04}")
}

/// Bdev `i`'s URI, as small as [`super::control::bdev_uri`]'s.
fn uri(i: u32) -> String {
    format!("malloc:///{}?{}", name(i), super::control::BDEV_SIZE)
}

/// What [`up`] measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Up {
    /// How many bdevs.
    pub bdevs: u32,
    /// Creating and sharing all of them, one after another, seconds.
    pub share_secs: f64,
    /// Each bdev's `Create` + `Share`.
    pub per_share: Latency,
    /// Median of the last [`ENDS`] shares over that of the first: 1 when a
    /// share costs the same however many there are.
    pub last_first_ratio: f64,
    /// One `nvme discover`, seconds.
    pub discover_secs: f64,
    /// Subsystems the discovery log listed.
    pub discovered: u32,
    /// `nvme connect-all` until every namespace is a block device, seconds.
    pub connect_secs: f64,
}

/// What [`down`] measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Down {
    /// How many bdevs.
    pub bdevs: u32,
    /// Disconnecting all until sysfs has none, seconds.
    pub disconnect_secs: f64,
    /// Unsharing and destroying all, one after another, seconds.
    pub unshare_destroy_secs: f64,
}

/// Creates and shares `bdevs` malloc bdevs, discovers them at the
/// target's discovery port `discovery_port`, and connects to all. The
/// target must have no bdev of the bench's names and export no other
/// subsystem (connect-all would connect it too). On failure what was
/// created is torn down again.
pub async fn up(
    target: &Target,
    bdevs: u32,
    discovery_port: u16,
    timeout: Duration,
) -> Result<Up, BenchError> {
    let listed = target.list().await.map_err(BenchError::call("List"))?;
    if let Some(b) = listed.iter().find(|b| b.name.starts_with(PREFIX)) {
        return Err(BenchError::State(format!(
            "the target already has bdev {} (left by an interrupted bench?): run `nvmfcheck \
             bench scale down --bdevs {bdevs}` against it first",
            b.name
        )));
    }
    if let Some(b) = listed.iter().find(|b| b.share_uri.starts_with("nvmf://")) {
        return Err(BenchError::State(format!(
            "the target shares bdev {} already; the scale bench connects to every subsystem \
             the target lists, so it runs only on a target that shares nothing else",
            b.name
        )));
    }
    let mut times = Vec::new();
    let mut nqns = Vec::new();
    let started = Instant::now();
    let result = share_all(target, bdevs, &mut times, &mut nqns).await;
    let share_secs = started.elapsed().as_secs_f64();
    let result = match result {
        Ok(discovery) => connect(&discovery.on_port(discovery_port), &nqns, timeout).await,
        Err(e) => Err(e),
    };
    let (discover_secs, discovered, connect_secs) = match result {
        Ok(r) => r,
        Err(e) => {
            // Tear down what was made; its errors would hide the first.
            let _ = down(target, bdevs, timeout).await;
            return Err(e);
        }
    };
    let ends = |shares: &[Duration]| median(shares.iter().map(Duration::as_secs_f64).collect());
    let first = ends(&times[..ENDS.min(times.len())]);
    let last = ends(&times[times.len().saturating_sub(ENDS)..]);
    Ok(Up {
        bdevs,
        share_secs,
        per_share: Latency::of(&times),
        last_first_ratio: super::data_path::ratio(last, first),
        discover_secs,
        discovered,
        connect_secs,
    })
}

/// Creates and shares bdevs 0..`bdevs`, timing each and keeping each NQN;
/// returns the last share's address.
async fn share_all(
    target: &Target,
    bdevs: u32,
    times: &mut Vec<Duration>,
    nqns: &mut Vec<String>,
) -> Result<ShareUri, BenchError> {
    let mut last = None;
    for i in 0..bdevs {
        let t = Instant::now();
        let created = target.create(&uri(i)).await;
        let bdev = created.map_err(BenchError::call(format!("Create {}", uri(i))))?;
        let share_uri = target
            .share(&bdev, "nvmf", &[])
            .await
            .map_err(BenchError::call(format!("Share {bdev}")))?;
        times.push(t.elapsed());
        let share = ShareUri::parse(&share_uri)
            .map_err(BenchError::nvme(format!("the share URI of {bdev}")))?;
        nqns.push(share.nqn.clone());
        last = Some(share);
    }
    last.ok_or_else(|| BenchError::State("--bdevs must be at least 1".into()))
}

/// Discovers and connects to all: (discover seconds, subsystems listed,
/// connect seconds).
async fn connect(
    discovery: &Transport,
    nqns: &[String],
    timeout: Duration,
) -> Result<(f64, u32, f64), BenchError> {
    let nvme_err = BenchError::nvme;
    let t = Instant::now();
    let log = nvme::discover(discovery, timeout)
        .await
        .map_err(nvme_err("discover"))?;
    let discover_secs = t.elapsed().as_secs_f64();
    // A subsystem is listed once per port it is served on.
    let subsystems: std::collections::BTreeSet<&str> = log
        .iter()
        .filter(|e| e.subtype == "nvme subsystem")
        .map(|e| e.subnqn.as_str())
        .collect();
    if let Some(other) = subsystems.iter().find(|n| !nqns.iter().any(|m| m == *n)) {
        return Err(BenchError::State(format!(
            "the discovery log lists {other}, which the bench did not share; connect-all would \
             connect it too, so the scale bench runs only on a target that shares nothing else"
        )));
    }
    if let Some(missing) = nqns.iter().find(|n| !subsystems.contains(&n.as_str())) {
        return Err(BenchError::State(format!(
            "the discovery log at {}:{} does not list {missing}, which the target shared",
            discovery.traddr, discovery.trsvcid
        )));
    }
    let t = Instant::now();
    nvme::connect_all(discovery, nqns, timeout)
        .await
        .map_err(nvme_err("connect-all"))?;
    let discovered = u32::try_from(subsystems.len()).unwrap_or(u32::MAX);
    Ok((discover_secs, discovered, t.elapsed().as_secs_f64()))
}

/// Disconnects from the bench's `bdevs` subsystems, then unshares and
/// destroys each bdev: tears [`up`] down, also after it failed half-way
/// (bdevs that are not there are skipped).
pub async fn down(target: &Target, bdevs: u32, timeout: Duration) -> Result<Down, BenchError> {
    let listed = target.list().await.map_err(BenchError::call("List"))?;
    let ours: Vec<_> = listed
        .iter()
        .filter(|b| b.name.starts_with(PREFIX))
        .collect();
    let nqns: Vec<String> = ours
        .iter()
        .filter_map(|b| ShareUri::parse(&b.share_uri).ok().map(|s| s.nqn))
        .collect();
    let t = Instant::now();
    nvme::disconnect_many(&nqns, timeout)
        .await
        .map_err(BenchError::nvme("disconnect"))?;
    let disconnect_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..bdevs {
        let Some(bdev) = ours.iter().find(|b| b.name == name(i)) else {
            continue;
        };
        let call = |what: &str| BenchError::call(format!("{what} {}", name(i)));
        if bdev.share_uri.starts_with("nvmf://") {
            target.unshare(&name(i)).await.map_err(call("Unshare"))?;
        }
        target.destroy(&uri(i)).await.map_err(call("Destroy"))?;
    }
    Ok(Down {
        bdevs,
        disconnect_secs,
        unshare_destroy_secs: t.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_creation_order() {
        assert_eq!(name(7), "bench-scale-0007");
        assert!(name(99) < name(100));
        assert_eq!(
            uri(3),
            "malloc:///bench-scale-0003?num_blocks=64&blk_size=4096"
        );
    }
}
