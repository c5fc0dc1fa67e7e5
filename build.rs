//! Compiles the `.proto` files with protox (pure Rust, so no `protoc` is
//! needed on the build host or in the Nix build), and turns the test pair's
//! facts in `src/suite/setups.json` into Rust constants.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The facts both harnesses share, read by `src/suite/setup.rs` (through
/// the constants written here) and by the NixOS checks (`builtins.fromJSON`).
/// Unknown or missing fields fail the build, so a typo cannot go unread.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Pair {
    initiator_address: Ipv4Addr,
    target_address: Ipv4Addr,
    grpc_port: u16,
    #[serde(rename = "dataDiskMiB")]
    data_disk_mib: u64,
    allow_paths: Vec<String>,
    setups: BTreeMap<String, Setup>,
}

/// What one agent setup turns on.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Setup {
    /// The VMs that run an agent, in address order from the target
    /// address up.
    targets: Vec<String>,
    link_port: u16,
    loopback: bool,
    faults: bool,
    token: bool,
    #[serde(default)]
    nexus_port: Option<u16>,
    #[serde(default)]
    rebuild_rate: Option<u32>,
    #[serde(default)]
    power_cycle: bool,
}

const SETUPS_JSON: &str = "src/suite/setups.json";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mayastor.proto",
        "proto/control.proto",
        "proto/security.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // The bdev client prints replies as JSON shaped like the messages,
        // as `mayastor-client` did.
        .type_attribute(
            ".mayastor",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .compile_fds(fds)?;

    println!("cargo:rerun-if-changed={SETUPS_JSON}");
    let pair: Pair = serde_json::from_str(&std::fs::read_to_string(SETUPS_JSON)?)
        .map_err(|e| format!("{SETUPS_JSON}: {e}"))?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("setups.rs");
    std::fs::write(out, setups_rs(&pair)?)?;
    Ok(())
}

/// `setups.json` as Rust: one constant per field, and a `Facts` constant
/// named after each setup (`faults` → `FAULTS`), which `setup.rs` matches
/// its enum's variants to, so a setup the enum lacks or has in excess is a
/// compile error there.
fn setups_rs(p: &Pair) -> Result<String, Box<dyn std::error::Error>> {
    let mut rs = format!(
        "// Written by build.rs from {SETUPS_JSON}.\n\
         pub const INITIATOR_IP: &str = {:?};\n\
         pub const TARGET_IP: &str = {:?};\n\
         pub const TARGET_OCTETS: [u8; 4] = {:?};\n\
         pub const GRPC_PORT: u16 = {};\n\
         pub const DATA_DISK_MIB: u64 = {};\n\
         pub const ALLOWED_PATHS: &[&str] = &{:?};\n\
         pub const SETUP_COUNT: usize = {};\n",
        p.initiator_address.to_string(),
        p.target_address.to_string(),
        p.target_address.octets(),
        p.grpc_port,
        p.data_disk_mib,
        p.allow_paths,
        p.setups.len(),
    );
    for (name, s) in &p.setups {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(
                format!("{SETUPS_JSON}: setup name `{name}` is not lowercase letters").into(),
            );
        }
        if s.targets.is_empty() {
            return Err(format!("{SETUPS_JSON}: setup `{name}` has no targets").into());
        }
        if s.power_cycle && !s.faults {
            return Err(format!(
                "{SETUPS_JSON}: setup `{name}` has powerCycle without faults; PowerCycle is a Control call"
            )
            .into());
        }
        writeln!(
            rs,
            "pub const {}: Facts = Facts {{ name: {name:?}, targets: &{:?}, link_port: {}, loopback: {}, faults: {}, token: {}, nexus_port: {:?}, rebuild_rate: {:?}, power_cycle: {} }};",
            name.to_ascii_uppercase(),
            s.targets,
            s.link_port,
            s.loopback,
            s.faults,
            s.token,
            s.nexus_port,
            s.rebuild_rate,
            s.power_cycle,
        )?;
    }
    Ok(rs)
}
