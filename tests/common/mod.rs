//! Shared by the agent's integration tests: the fixture the bad-input table
//! (`nvmfcheck::suite::bad_input`) needs, made of local files, and a run of
//! the table that checks each row changes nothing.

#![allow(dead_code)] // each test binary uses part of it

use std::path::Path;

use nvmfcheck::client::Target;
use nvmfcheck::suite::bad_input::{self, Fixture};

/// Makes what the rows refer to, in `dir`: a 4 MiB file `disk` created and
/// shared as an aio bdev, a symlink `link` to it, an empty file `empty`,
/// and malloc bdev `m0` (not shared).
pub async fn prepare(target: &Target, dir: &Path) -> Fixture {
    let disk = dir.join("disk");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    std::os::unix::fs::symlink(&disk, dir.join("link")).unwrap();
    std::fs::File::create(dir.join("empty")).unwrap();
    let aio = format!("aio://{}", disk.display());
    target.create(&aio).await.unwrap();
    target.share(&aio, "nvmf", &[]).await.unwrap();
    target.create("malloc:///m0?size_mb=1").await.unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    Fixture {
        dir: dir.to_str().unwrap().to_string(),
        shared: aio,
        same_file: Some(path("link")),
        empty_file: Some(path("empty")),
        char_device: Some("/dev/null".into()),
        malloc: "m0".into(),
    }
}

/// Runs every row of the table on `fx` through gRPC, and through
/// `nvmfcheck bdev` (the program `cli`) when given; returns one line per
/// row that did not give its code and message or changed `List`.
pub async fn check(target: &Target, fx: &Fixture, cli: Option<&Path>) -> Vec<String> {
    let mut failures = Vec::new();
    assert!(
        fx.same_file.is_some() && fx.empty_file.is_some() && fx.char_device.is_some(),
        "the fixture leaves out rows: {fx:?}"
    );
    let rows = bad_input::rows(fx);
    let mut before = target.list().await.unwrap();
    for row in &rows {
        let mut result = row.check(target).await;
        if let (Ok(()), Some(exe)) = (&result, cli) {
            let timeout = std::time::Duration::from_secs(20);
            result = row.check_cli(exe, target.addr(), timeout).await;
        }
        if result.is_ok() {
            result = bad_input::check_unchanged(target, &before).await;
        }
        if let Err(e) = result {
            failures.push(format!("{}: {e}", row.what));
            before = target.list().await.unwrap();
        }
    }
    // Not an error: unsharing a bdev that is not shared succeeds.
    if let Err(e) = target.unshare(&fx.malloc).await {
        failures.push(format!("unshare of an unshared bdev: {e}"));
    }
    failures
}

/// Loop devices modelled in the agent's state directory (created by
/// `Agent::start`), for agents on a fake kernel.
pub fn fake_loops(
    config: &nvmfcheck::agent::AgentConfig,
) -> std::sync::Arc<nvmfcheck::agent::fake::FakeLoops> {
    std::sync::Arc::new(nvmfcheck::agent::fake::FakeLoops::new(&config.state_dir))
}

/// LVM modelled in the agent's state directory, for agents on a fake
/// kernel.
pub fn fake_lvm(
    config: &nvmfcheck::agent::AgentConfig,
) -> std::sync::Arc<nvmfcheck::agent::fake::FakeLvm> {
    std::sync::Arc::new(nvmfcheck::agent::fake::FakeLvm::new(
        config.state_dir.join("lvm"),
    ))
}

/// Destroys pool `name`, the last one, and checks that ListPools is empty.
pub async fn destroy_last_pool(
    m: &mut nvmfcheck::proto::mayastor::mayastor_client::MayastorClient<tonic::transport::Channel>,
    name: &str,
) {
    let request = nvmfcheck::proto::mayastor::DestroyPoolRequest {
        name: name.to_string(),
    };
    m.destroy_pool(request).await.unwrap();
    let pools = m.list_pools(nvmfcheck::proto::mayastor::Null {}).await;
    assert!(pools.unwrap().into_inner().pools.is_empty());
}

/// A `BdevUri` request.
pub fn uri(u: &str) -> nvmfcheck::proto::mayastor::BdevUri {
    nvmfcheck::proto::mayastor::BdevUri { uri: u.to_string() }
}

/// A Share request for any host.
pub fn share(name: &str, proto: &str) -> nvmfcheck::proto::mayastor::BdevShareRequest {
    nvmfcheck::proto::mayastor::BdevShareRequest {
        name: name.to_string(),
        proto: proto.to_string(),
        allowed_hosts: Vec::new(),
    }
}

/// md arrays and NVMe connections modelled in the agent's state
/// directory, for agents on a fake kernel.
pub fn fake_nexus(
    config: &nvmfcheck::agent::AgentConfig,
) -> std::sync::Arc<nvmfcheck::agent::fake::FakeNexusKernel> {
    std::sync::Arc::new(nvmfcheck::agent::fake::FakeNexusKernel::new(
        config.state_dir.join("md"),
    ))
}
