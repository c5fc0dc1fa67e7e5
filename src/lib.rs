//! nvmfcheck: end-to-end tests of an NVMe-over-Fabrics target in real VMs.
//!
//! The binary's subcommands are thin layers over these entry points:
//!
//! - [`agent::Agent`]: the target agent, serving Mayastor's v0 gRPC on the
//!   kernel's NVMe target (`nvmfcheck agent`).
//! - [`client::Target`], [`client::Control`], [`client::Security`]: typed
//!   clients for a target's services, each call with a deadline
//!   (`nvmfcheck bdev`).
//! - [`suite::registry`], [`suite::plan`], [`suite::run`]: the check
//!   categories, and running them from the initiator against a target,
//!   with typed [`suite::Event`]s and a [`suite::report::Report`]
//!   (`nvmfcheck run`).
//! - [`vm::runner::Runner`]: the QEMU runner, booting a
//!   [`vm::topology::Topology`] of VMs on a host without Nix (`nvmfcheck
//!   vm`).
//! - [`nvme`] and [`fio`]: the initiator's tools, driven with deadlines.
//!
//! The rest ([`mod@bench`], [`soak`], [`cmd`], [`token`], [`error_chain`]) is
//! what those share with the command line.

pub mod agent;
mod atomic_file;
pub mod bench;
pub mod client;
pub mod cmd;
pub mod error_chain;
pub mod fio;
pub mod nvme;
#[cfg(test)]
mod props;
pub mod soak;
pub mod suite;
pub mod token;
pub mod vm;

/// The cargo profile this binary was built with: what a figure or a soak
/// result was measured with.
pub const BUILD_PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// Generated protobuf and gRPC code.
pub mod proto {
    /// Mayastor's v0 API (package `mayastor`), wire compatible with Mayastor.
    pub mod mayastor {
        tonic::include_proto!("mayastor");
    }

    /// A test that the generated `mayastor` types keep upstream's numbers.
    #[cfg(test)]
    mod upstream_tags;

    /// nvmfcheck's own control service (package `nvmfcheck.control.v1`):
    /// faults and the agent's identity, for the test cases.
    pub mod control {
        tonic::include_proto!("nvmfcheck.control.v1");
    }

    /// nvmfcheck's own security service (package `nvmfcheck.security.v1`):
    /// what the agent exposes, and hosts' DH-HMAC-CHAP keys.
    pub mod security {
        tonic::include_proto!("nvmfcheck.security.v1");
    }
}
