//! Which VMs a run boots, what each does, and which networks join them:
//! data, so that another machine or network is a new value, not new code.

use super::Role;
use crate::suite::AgentSetup;

/// Size of a target's blank data disk, `/dev/vdb`: the NixOS checks' disk
/// (`src/suite/setups.json`).
pub const DATA_DISK_BYTES: u64 = crate::suite::setup::DATA_DISK_MIB << 20;
/// Prefix length of the link networks' addresses.
const LINK_PREFIX: u8 = 24;

/// The address of host number `host` on network `net`:
/// `192.168.<net + 1>.<host>`, so that a VM on two networks routes each
/// peer through the right NIC. The pair's one network is `192.168.1.0/24`,
/// as the NixOS tests' VLAN 1.
pub fn net_address(net: usize, host: u8) -> String {
    format!("192.168.{}.{host}", net + 1)
}

/// One VM of a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    /// Its name: the guest's hostname, its files' names, `vm exec NAME`.
    pub name: &'static str,
    /// What it runs: the agent, or the checks.
    pub role: Role,
    /// Its host number on each of its networks (see [`net_address`]).
    pub host: u8,
    /// Size of its blank data disk (`/dev/vdb`, behind a tiny `vda` as in
    /// the NixOS tests, where vda is the root disk); none if it has none.
    pub data_disk: Option<u64>,
    /// Whether a host loopback port is forwarded to its agent (through a
    /// `restrict=on` user NIC).
    pub forward: bool,
}

/// A network joining VMs: one NIC in each member, in the order of
/// [`Topology::networks`]. Two members are linked directly by a
/// `-netdev stream` over a unix socket, which the first member serves and
/// the second connects to; more members each connect to a socket of the
/// runner's frame relay (`super::relay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    /// Its VMs; the first serves the link's socket and boots first.
    pub members: Vec<&'static str>,
}

impl NetPlan {
    /// Whether the runner's relay joins the members (more than two).
    pub fn relayed(&self) -> bool {
        self.members.len() > 2
    }

    /// Whether VM `name` serves the network's socket (the first of two).
    pub fn served_by(&self, name: &str) -> bool {
        !self.relayed() && self.members.first() == Some(&name)
    }
}

/// The VMs of a run and their links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// In boot order: a network's server boots before its other members.
    pub vms: Vec<VmPlan>,
    /// The networks joining them.
    pub networks: Vec<NetPlan>,
}

impl Topology {
    /// A target with a blank data disk and an agent reachable from the
    /// host, linked to an initiator: what `basic`, `io` and `security` run
    /// on, and what the NixOS checks build.
    pub fn pair() -> Self {
        Self::for_setup(AgentSetup::Faults)
    }

    /// The VMs a setup needs (`setups.json`): its targets, each with a
    /// blank data disk, the first one's agent reachable from the host, at
    /// host numbers 2, 3, ...; and the initiator at 1; all on one network.
    pub fn for_setup(setup: AgentSetup) -> Self {
        let targets = setup.targets();
        let mut vms: Vec<VmPlan> = (2u8..)
            .zip(targets)
            .map(|(host, &name)| VmPlan {
                name,
                role: Role::Target,
                host,
                data_disk: Some(DATA_DISK_BYTES),
                forward: host == 2,
            })
            .collect();
        vms.push(VmPlan {
            name: "initiator",
            role: Role::Initiator,
            host: 1,
            data_disk: None,
            forward: false,
        });
        let members = vms.iter().map(|v| v.name).collect();
        Self {
            vms,
            networks: vec![NetPlan { members }],
        }
    }

    /// The VM called `name`.
    pub fn vm(&self, name: &str) -> Option<&VmPlan> {
        self.vms.iter().find(|v| v.name == name)
    }

    /// The VM whose agent the host reaches through the forward.
    pub fn forwarded(&self) -> Option<&VmPlan> {
        self.vms.iter().find(|v| v.forward)
    }

    /// The VM that runs the checks.
    pub fn initiator(&self) -> Option<&VmPlan> {
        self.vms.iter().find(|v| v.role == Role::Initiator)
    }

    /// The networks of VM `name`, with their indexes, in NIC order.
    pub fn networks_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (usize, &'a NetPlan)> + 'a {
        self.networks
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.members.contains(&name))
    }

    /// The address at which `from` reaches `to`: `to`'s address on a
    /// network they share; `None` if they share none.
    pub fn address_of(&self, to: &str, from: &str) -> Option<String> {
        let to_vm = self.vm(to)?;
        self.networks_of(to)
            .find(|(_, n)| n.members.contains(&from))
            .map(|(i, _)| net_address(i, to_vm.host))
    }

    /// The guest's addresses, one per NIC in order (`addr/prefix`): its
    /// address on each of its networks, then the forward's.
    pub fn addresses(&self, vm: &VmPlan) -> Vec<String> {
        let mut ips: Vec<String> = self
            .networks_of(vm.name)
            .map(|(i, _)| format!("{}/{LINK_PREFIX}", net_address(i, vm.host)))
            .collect();
        if vm.forward {
            ips.push(format!("{}/{LINK_PREFIX}", super::FORWARD_IP));
        }
        ips
    }

    /// Fails naming the mistake if the topology cannot boot: names that
    /// repeat or are not file-name safe, host numbers that repeat, networks
    /// naming unknown VMs or one twice, a direct link served by a VM that
    /// boots after the other, no initiator, more than one forward.
    pub fn check(&self) -> Result<(), String> {
        for (i, vm) in self.vms.iter().enumerate() {
            let safe = !vm.name.is_empty()
                && vm
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !safe {
                return Err(format!(
                    "VM name {:?}: use lowercase letters and digits",
                    vm.name
                ));
            }
            if self.vms[..i].iter().any(|v| v.name == vm.name) {
                return Err(format!("VM name {:?} is used twice", vm.name));
            }
            if self.vms[..i].iter().any(|v| v.host == vm.host) || vm.host == 0 || vm.host == 255 {
                return Err(format!(
                    "VM {}: host number {} is taken or not a host",
                    vm.name, vm.host
                ));
            }
        }
        let index = |name: &str| self.vms.iter().position(|v| v.name == name);
        for n in &self.networks {
            let shown = n.members.join(" + ");
            if n.members.len() < 2 {
                return Err(format!("network {shown}: a network joins two VMs or more"));
            }
            let at: Vec<Option<usize>> = n.members.iter().map(|m| index(m)).collect();
            if at.iter().any(Option::is_none) {
                return Err(format!("network {shown}: no such VM"));
            }
            if n.members
                .iter()
                .enumerate()
                .any(|(i, m)| n.members[..i].contains(m))
            {
                return Err(format!("network {shown}: a VM is in it twice"));
            }
            match (at[0], at[1]) {
                _ if n.relayed() => {}
                (Some(s), Some(c)) if s < c => {}
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "network {shown}: its first VM serves the link and must come first in \
                         the VM list"
                    ))
                }
                _ => return Err(format!("network {shown}: no such VM")),
            }
        }
        if self.initiator().is_none() {
            return Err("no VM runs the checks (role initiator)".into());
        }
        if self.vms.iter().filter(|v| v.forward).count() > 1 {
            return Err("more than one VM has the host's forward".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trio() -> Topology {
        let node = |name, host| VmPlan {
            name,
            role: Role::Target,
            host,
            data_disk: Some(DATA_DISK_BYTES),
            forward: false,
        };
        let mut t = Topology::pair();
        t.vms = vec![node("node1", 2), node("node2", 3), t.vms[1].clone()];
        t.networks[0].members = vec!["node1", "node2", "initiator"];
        t
    }

    #[test]
    fn the_pair_is_a_target_serving_the_link_to_an_initiator() {
        let t = Topology::pair();
        t.check().unwrap();
        assert_eq!(t.forwarded().unwrap().name, "target");
        assert_eq!(t.initiator().unwrap().name, "initiator");
        let target = t.vm("target").unwrap();
        assert_eq!(
            t.addresses(target),
            ["192.168.1.2/24", "10.0.2.15/24"].map(String::from)
        );
        let nets: Vec<_> = t
            .networks_of("initiator")
            .map(|(i, n)| (i, n.served_by("initiator")))
            .collect();
        assert_eq!(nets, [(0, false)]);
    }

    #[test]
    fn the_pairs_addresses_are_the_ones_setups_json_gives() {
        let t = Topology::pair();
        assert_eq!(
            t.address_of("target", "initiator"),
            Some(crate::suite::setup::TARGET_IP.to_string())
        );
        assert_eq!(
            t.address_of("initiator", "target"),
            Some(crate::suite::setup::INITIATOR_IP.to_string())
        );
    }

    #[test]
    fn a_third_vm_is_data() {
        let mut t = Topology::pair();
        t.vms.insert(
            1,
            VmPlan {
                name: "node2",
                role: Role::Target,
                host: 3,
                data_disk: Some(DATA_DISK_BYTES),
                forward: false,
            },
        );
        t.networks.push(NetPlan {
            members: vec!["node2", "initiator"],
        });
        t.check().unwrap();
        let initiator = t.vm("initiator").unwrap();
        assert_eq!(
            t.addresses(initiator),
            ["192.168.1.1/24", "192.168.2.1/24"].map(String::from)
        );
        assert_eq!(t.address_of("node2", "initiator").unwrap(), "192.168.2.3");
        assert_eq!(t.address_of("target", "initiator").unwrap(), "192.168.1.2");
        assert_eq!(t.address_of("target", "node2"), None);
    }

    #[test]
    fn three_vms_on_one_network_meet_at_the_relay() {
        let t = trio();
        t.check().unwrap();
        let net = &t.networks[0];
        assert!(net.relayed());
        assert!(t.vms.iter().all(|v| !net.served_by(v.name)));
        assert_eq!(t.address_of("node2", "node1").unwrap(), "192.168.1.3");
        assert_eq!(t.address_of("node1", "initiator").unwrap(), "192.168.1.2");
    }

    #[test]
    fn bad_topologies_are_refused_naming_the_mistake() {
        let mut twice = Topology::pair();
        twice.vms[1].name = "target";
        assert!(twice.check().unwrap_err().contains("used twice"));
        let mut unsafe_name = Topology::pair();
        unsafe_name.vms[0].name = "../x";
        assert!(unsafe_name.check().unwrap_err().contains("lowercase"));
        let mut order = Topology::pair();
        order.networks[0].members.reverse();
        assert!(order.check().unwrap_err().contains("must come first"));
        let mut unknown = Topology::pair();
        unknown.networks[0].members[1] = "nobody";
        assert!(unknown.check().unwrap_err().contains("no such VM"));
        let mut twice_in = Topology::pair();
        twice_in.networks[0].members.push("target");
        assert!(twice_in.check().unwrap_err().contains("twice"));
        let mut alone = Topology::pair();
        alone.networks[0].members.pop();
        assert!(alone.check().unwrap_err().contains("two VMs or more"));
        let mut none = Topology::pair();
        none.vms[1].role = Role::Target;
        assert!(none.check().unwrap_err().contains("runs the checks"));
    }
}
