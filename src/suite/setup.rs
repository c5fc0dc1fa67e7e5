//! How a category needs the target's agent started. The harnesses follow
//! it: the QEMU runner boots the pair afresh for each run of consecutive
//! categories with another setup, and each NixOS check configures its
//! target to match.
//!
//! The facts both harnesses share (the link addresses, the gRPC port, the
//! data disk, the allowed paths, and what each setup turns on) live in
//! `src/suite/setups.json`: build.rs turns it into the constants below, so
//! a missing or misspelt field fails the build, and `checks/*.nix` and
//! `modules/target.nix` read it with `builtins.fromJSON`. It sits in `src/`
//! because the crate's build reads it, and the flake's `src` fileset names
//! it for that.

use super::Category;
use crate::agent::DEFAULT_LISTEN;

/// `setups.json` as build.rs writes it.
mod json {
    use super::Facts;
    include!(concat!(env!("OUT_DIR"), "/setups.rs"));
}

/// What a setup turns on, as `setups.json` says.
struct Facts {
    /// Its name in `setups.json`, on kernel command lines and in messages.
    name: &'static str,
    /// The VMs that run an agent: the first at [`TARGET_IP`], each next
    /// one at the next address.
    targets: &'static [&'static str],
    /// The port the agent serves on the link.
    link_port: u16,
    /// Whether the agent also listens on loopback at its default port.
    loopback: bool,
    /// Whether the `Control` service answers (`--faults`).
    faults: bool,
    /// Whether calls must carry a token.
    token: bool,
    /// The port nexuses are published on (`--nexus-port`), if not the
    /// I/O port.
    nexus_port: Option<u16>,
    /// The most a rebuild may copy, in KiB/s (`--rebuild-rate`).
    rebuild_rate: Option<u32>,
    /// Whether `Control.PowerCycle` may reset a target
    /// (`--allow-power-cycle`): its VM then boots again in place.
    power_cycle: bool,
}

/// The initiator's address on the VM-to-VM link.
pub const INITIATOR_IP: &str = json::INITIATOR_IP;

/// The target's address on the VM-to-VM link.
pub const TARGET_IP: &str = json::TARGET_IP;

/// The agent's gRPC port by default, on every address it listens on.
pub const GRPC_PORT: u16 = json::GRPC_PORT;

// The agent's own default, which a hardened agent keeps on loopback.
const _: () = assert!(
    GRPC_PORT == DEFAULT_LISTEN.port(),
    "setups.json's grpcPort is not the port of agent::DEFAULT_LISTEN"
);

/// The port a [`AgentSetup::Hardened`] agent serves the link on; its
/// default port stays on loopback.
pub const HARDENED_LINK_PORT: u16 = json::HARDENED.link_port;

/// What the agent may export in both setups: the test disk and `/tmp`
/// (the aio file of `basic/mayastor-clients` and the paths of the
/// bad-input rows).
pub const ALLOWED_PATHS: &[&str] = json::ALLOWED_PATHS;

/// Size in MiB of the target's blank data disk, `/dev/vdb`.
pub const DATA_DISK_MIB: u64 = json::DATA_DISK_MIB;

// setups.json names as many setups as the enum has (each variant's facts
// are matched by name in `AgentSetup::facts`).
const _: [AgentSetup; json::SETUP_COUNT] = AgentSetup::ALL;

/// An agent configuration a category runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentSetup {
    /// For the data path and its faults: `Control` on (`--faults`), gRPC on
    /// the link at [`GRPC_PORT`], no token.
    Faults,
    /// As a careful operator runs it: no `Control`, a token required, gRPC
    /// on loopback at its default port and on the link at
    /// [`HARDENED_LINK_PORT`] only.
    Hardened,
    /// Two nodes, `node1` and `node2`, each an agent as in
    /// [`AgentSetup::Faults`], publishing nexuses on their own port with
    /// rebuilds slowed to a rate a test can watch, and allowed to reset
    /// their VM (`Control.PowerCycle`).
    Replication,
}

impl AgentSetup {
    /// Every setup.
    pub const ALL: [AgentSetup; 3] = [
        AgentSetup::Faults,
        AgentSetup::Hardened,
        AgentSetup::Replication,
    ];

    /// What it turns on.
    const fn facts(self) -> &'static Facts {
        match self {
            Self::Faults => &json::FAULTS,
            Self::Hardened => &json::HARDENED,
            Self::Replication => &json::REPLICATION,
        }
    }

    /// The VMs that run an agent, the first at [`TARGET_IP`].
    pub fn targets(self) -> &'static [&'static str] {
        self.facts().targets
    }

    /// The link address of target number `k` (0 is [`TARGET_IP`]).
    pub fn target_ip(k: u8) -> String {
        let [a, b, c, d] = json::TARGET_OCTETS;
        std::net::Ipv4Addr::new(a, b, c, d.saturating_add(k)).to_string()
    }

    /// The port nexuses are published on, if not the agent's I/O port.
    pub fn nexus_port(self) -> Option<u16> {
        self.facts().nexus_port
    }

    /// Whether a target may reset its VM (`Control.PowerCycle`), which the
    /// harness must then let boot again rather than stop.
    pub fn power_cycle(self) -> bool {
        self.facts().power_cycle
    }

    /// Its name on kernel command lines and in messages.
    pub fn name(self) -> &'static str {
        self.facts().name
    }

    /// The setup called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether calls must carry a token.
    pub fn needs_token(self) -> bool {
        self.facts().token
    }

    /// The port the agent serves beyond loopback.
    pub fn link_port(self) -> u16 {
        self.facts().link_port
    }

    /// The gRPC address initiators reach the agent at, on a target whose
    /// link address is `link`.
    pub fn grpc_target(self, link: &str) -> String {
        format!("{link}:{}", self.link_port())
    }

    /// The agent's access flags on a target whose link address is `link`
    /// (`--listen`, `--faults`, `--allow-path`, `--token-file token_file`,
    /// and the replication flags);
    /// a harness adds `--address`, and `--listen` for a forward of its own.
    pub fn agent_args(self, link: &str, token_file: &str) -> Vec<String> {
        let facts = self.facts();
        let mut args = Vec::new();
        let mut flag = |name: &str, value: String| {
            args.push(name.to_string());
            args.push(value);
        };
        if facts.loopback {
            flag("--listen", DEFAULT_LISTEN.to_string());
        }
        if facts.token {
            flag("--token-file", token_file.to_string());
        }
        flag("--listen", self.grpc_target(link));
        for path in ALLOWED_PATHS {
            flag("--allow-path", path.to_string());
        }
        if facts.faults {
            args.push("--faults".into());
        }
        if let Some(port) = facts.nexus_port {
            args.extend(["--nexus-port".into(), port.to_string()]);
        }
        if let Some(rate) = facts.rebuild_rate {
            args.extend(["--rebuild-rate".into(), rate.to_string()]);
        }
        if facts.power_cycle {
            args.push("--allow-power-cycle".into());
        }
        args
    }
}

/// A plan cut into runs of consecutive categories with the same setup:
/// one boot of the QEMU runner each.
pub fn by_setup<'r>(plan: &[&'r Category]) -> Vec<(AgentSetup, Vec<&'r Category>)> {
    let mut groups: Vec<(AgentSetup, Vec<&Category>)> = Vec::new();
    for &cat in plan {
        match groups.last_mut() {
            Some((setup, cats)) if *setup == cat.setup => cats.push(cat),
            _ => groups.push((cat.setup, vec![cat])),
        }
    }
    groups
}

impl std::fmt::Display for AgentSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_categories_of_one_setup_share_a_boot() {
        let cat = |name, setup| Category {
            name,
            about: "",
            depends_on: &[],
            setup,
            leaves_state: false,
            cases: Vec::new(),
        };
        let all = [
            cat("a", AgentSetup::Faults),
            cat("b", AgentSetup::Faults),
            cat("c", AgentSetup::Hardened),
            cat("d", AgentSetup::Faults),
        ];
        let plan: Vec<&Category> = all.iter().collect();
        let groups: Vec<(AgentSetup, Vec<&str>)> = by_setup(&plan)
            .into_iter()
            .map(|(s, cats)| (s, cats.iter().map(|c| c.name).collect()))
            .collect();
        assert_eq!(
            groups,
            [
                (AgentSetup::Faults, vec!["a", "b"]),
                (AgentSetup::Hardened, vec!["c"]),
                (AgentSetup::Faults, vec!["d"]),
            ]
        );
        assert!(by_setup(&[]).is_empty());
    }

    #[test]
    fn names_round_trip() {
        for s in AgentSetup::ALL {
            assert_eq!(AgentSetup::from_name(s.name()), Some(s));
            // Reports name it by serde, the harnesses by setups.json.
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        assert_eq!(AgentSetup::from_name("open"), None);
    }

    #[test]
    fn the_hardened_agent_keeps_its_default_port_on_loopback() {
        let args = AgentSetup::Hardened
            .agent_args("192.168.1.2", "/run/token")
            .join(" ");
        assert!(args.contains("--listen 127.0.0.1:10124"), "{args}");
        assert!(args.contains("--listen 192.168.1.2:10125"), "{args}");
        assert!(!args.contains("192.168.1.2:10124"), "{args}");
        assert!(args.contains("--token-file /run/token"), "{args}");
        assert!(!args.contains("--faults"), "{args}");
        let faults = AgentSetup::Faults
            .agent_args("192.168.1.2", "/run/token")
            .join(" ");
        assert_eq!(
            faults,
            "--listen 192.168.1.2:10124 --allow-path /dev/vdb --allow-path /tmp --faults"
        );
    }

    #[test]
    fn the_run_defaults_name_the_setups_targets() {
        let faults = AgentSetup::Faults;
        assert_eq!(faults.targets(), ["target"]);
        assert_eq!(AgentSetup::target_ip(0), TARGET_IP);
        assert_eq!(
            faults.grpc_target(&AgentSetup::target_ip(0)),
            super::super::DEFAULT_TARGET
        );
        let replication = AgentSetup::Replication;
        assert_eq!(replication.targets(), ["node1", "node2"]);
        assert_eq!(
            replication.grpc_target(&AgentSetup::target_ip(1)),
            super::super::DEFAULT_NODE2
        );
        let args = replication.agent_args("192.168.1.3", "/t").join(" ");
        assert!(
            args.ends_with("--faults --nexus-port 4421 --rebuild-rate 4096 --allow-power-cycle"),
            "{args}"
        );
        assert!(replication.power_cycle());
        assert!(!faults.power_cycle() && !AgentSetup::Hardened.power_cycle());
        let hardened = AgentSetup::Hardened
            .agent_args("192.168.1.2", "/t")
            .join(" ");
        assert!(!hardened.contains("--allow-power-cycle"), "{hardened}");
    }
}
