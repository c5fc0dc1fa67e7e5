//! The control path: how long the bdev calls take, one at a time, each
//! timed from the caller's side (connection already made), so a figure is
//! the call's round trip plus the agent's work.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{BenchError, Latency};
use crate::client::Target;

/// The bdev the create/share and unshare/destroy calls work on.
pub const BDEV: &str = "bench-control";

/// Its URI: 64 blocks of 4 KiB (256 KiB of RAM: small enough that the
/// scale bench's 256 fit in the agent's RAM file system; a 512-byte block
/// would put a loop device under it, a cost of the block size rather than
/// the call).
pub fn bdev_uri() -> String {
    format!("malloc:///{BDEV}?{}", BDEV_SIZE)
}

/// The size parameters of the bench's malloc bdevs.
pub const BDEV_SIZE: &str = "num_blocks=64&blk_size=4096";

/// Latencies of the three kinds of call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlPath {
    /// `List`.
    pub list: Latency,
    /// `Create` then `Share` of one bdev.
    pub create_share: Latency,
    /// `Unshare` then `Destroy` of it.
    pub unshare_destroy: Latency,
}

/// Calls `List` `calls` times, then creates and shares [`BDEV`] and
/// unshares and destroys it again `calls` times, timing each. A bdev of
/// that name must not exist; a failed call ends the bench, after undoing
/// what the bench created.
pub async fn run(target: &Target, calls: u32) -> Result<ControlPath, BenchError> {
    let call = BenchError::call;
    if target.find(BDEV).await.map_err(call("List"))?.is_some() {
        return Err(BenchError::State(format!(
            "the target already has a bdev {BDEV} (left by an interrupted bench?): remove it \
             with `nvmfcheck bdev unshare {BDEV}` and `nvmfcheck bdev destroy '{}'`",
            bdev_uri()
        )));
    }
    let mut list = Vec::new();
    for _ in 0..calls {
        let t = Instant::now();
        target.list().await.map_err(call("List"))?;
        list.push(t.elapsed());
    }
    let (create_share, unshare_destroy) = match cycles(target, calls).await {
        Ok(times) => times,
        Err(e) => {
            // Whatever the failed cycle left; errors here would only hide
            // the first.
            let _ = target.unshare(BDEV).await;
            let _ = target.destroy(&bdev_uri()).await;
            return Err(e);
        }
    };
    Ok(ControlPath {
        list: Latency::of(&list),
        create_share: Latency::of(&create_share),
        unshare_destroy: Latency::of(&unshare_destroy),
    })
}

async fn cycles(target: &Target, calls: u32) -> Result<(Vec<Duration>, Vec<Duration>), BenchError> {
    let uri = bdev_uri();
    let call = |what: &str| BenchError::call(format!("{what} {BDEV}"));
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for _ in 0..calls {
        let t = Instant::now();
        let name = target.create(&uri).await.map_err(call("Create"))?;
        target
            .share(&name, "nvmf", &[])
            .await
            .map_err(call("Share"))?;
        up.push(t.elapsed());
        let t = Instant::now();
        target.unshare(&name).await.map_err(call("Unshare"))?;
        target.destroy(&uri).await.map_err(call("Destroy"))?;
        down.push(t.elapsed());
    }
    Ok((up, down))
}
