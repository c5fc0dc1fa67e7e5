//! Which VMs a run boots, what each does, and how they are linked: data,
//! so that another machine or link is a new value, not new code.

use super::Role;

/// Size of a target's blank data disk, `/dev/vdb`.
pub const DATA_DISK_BYTES: u64 = 512 << 20;
/// Prefix length of the link networks' addresses.
const LINK_PREFIX: u8 = 24;

/// The address of host number `host` on link `link`: each link is a
/// network of its own, `192.168.<link + 1>.0/24`, so that a VM on two
/// links routes each peer through the right NIC. The pair's one link is
/// `192.168.1.0/24`, as on the NixOS tests' VLAN 1.
pub fn link_address(link: usize, host: u8) -> String {
    format!("192.168.{}.{host}", link + 1)
}

/// One VM of a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    /// Its name: the guest's hostname, its files' names, `vm exec NAME`.
    pub name: &'static str,
    /// What it runs: the agent, or the checks.
    pub role: Role,
    /// Its host number on each link network (see [`link_address`]).
    pub host: u8,
    /// Size of its blank data disk (`/dev/vdb`, behind a tiny `vda` as in
    /// the NixOS tests, where vda is the root disk); none if it has none.
    pub data_disk: Option<u64>,
    /// Whether a host loopback port is forwarded to its agent (through a
    /// `restrict=on` user NIC).
    pub forward: bool,
}

/// A point-to-point link between two VMs: a `-netdev stream` over a unix
/// socket, which `server` listens on and `client` connects to. Each link
/// is one NIC in each of its VMs, in the order of [`Topology::links`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPlan {
    /// The VM that serves the socket; it starts first.
    pub server: &'static str,
    /// The VM that connects to it.
    pub client: &'static str,
}

/// The VMs of a run and their links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// In boot order: a link's server boots before its client.
    pub vms: Vec<VmPlan>,
    /// The links between them.
    pub links: Vec<LinkPlan>,
}

impl Topology {
    /// A target with a blank data disk and an agent reachable from the
    /// host, linked to an initiator: what `basic`, `io` and `security` run
    /// on, and what the NixOS checks build.
    pub fn pair() -> Self {
        Self {
            vms: vec![
                VmPlan {
                    name: "target",
                    role: Role::Target,
                    host: 2,
                    data_disk: Some(DATA_DISK_BYTES),
                    forward: true,
                },
                VmPlan {
                    name: "initiator",
                    role: Role::Initiator,
                    host: 1,
                    data_disk: None,
                    forward: false,
                },
            ],
            links: vec![LinkPlan {
                server: "target",
                client: "initiator",
            }],
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

    /// The links of VM `name`, each with whether it serves the socket, in
    /// NIC order.
    pub fn links_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (usize, &'a LinkPlan, bool)> + 'a {
        self.links
            .iter()
            .enumerate()
            .filter(move |(_, l)| l.server == name || l.client == name)
            .map(move |(i, l)| (i, l, l.server == name))
    }

    /// The address at which `from` reaches `to`: `to`'s address on their
    /// link; `None` if they share no link.
    pub fn address_of(&self, to: &str, from: &str) -> Option<String> {
        let to_vm = self.vm(to)?;
        self.links_of(to)
            .find(|(_, l, _)| l.server == from || l.client == from)
            .map(|(i, _, _)| link_address(i, to_vm.host))
    }

    /// The guest's addresses, one per NIC in order (`addr/prefix`): its
    /// address on each of its links, then the forward's.
    pub fn addresses(&self, vm: &VmPlan) -> Vec<String> {
        let mut ips: Vec<String> = self
            .links_of(vm.name)
            .map(|(i, _, _)| format!("{}/{LINK_PREFIX}", link_address(i, vm.host)))
            .collect();
        if vm.forward {
            ips.push(format!("{}/{LINK_PREFIX}", super::FORWARD_IP));
        }
        ips
    }

    /// Fails naming the mistake if the topology cannot boot: names that
    /// repeat or are not file-name safe, links naming unknown VMs or
    /// served by a VM that boots after its client, no initiator, more
    /// than one forward.
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
        for l in &self.links {
            match (index(l.server), index(l.client)) {
                (Some(s), Some(c)) if s < c => {}
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "link {} -> {}: the server must come first in the VM list",
                        l.server, l.client
                    ))
                }
                _ => return Err(format!("link {} -> {}: no such VM", l.server, l.client)),
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
        let links: Vec<_> = t.links_of("initiator").map(|(i, _, s)| (i, s)).collect();
        assert_eq!(links, [(0, false)]);
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
        t.links.push(LinkPlan {
            server: "node2",
            client: "initiator",
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
    fn bad_topologies_are_refused_naming_the_mistake() {
        let mut twice = Topology::pair();
        twice.vms[1].name = "target";
        assert!(twice.check().unwrap_err().contains("used twice"));
        let mut unsafe_name = Topology::pair();
        unsafe_name.vms[0].name = "../x";
        assert!(unsafe_name.check().unwrap_err().contains("lowercase"));
        let mut order = Topology::pair();
        order.links[0] = LinkPlan {
            server: "initiator",
            client: "target",
        };
        assert!(order.check().unwrap_err().contains("must come first"));
        let mut unknown = Topology::pair();
        unknown.links[0].client = "nobody";
        assert!(unknown.check().unwrap_err().contains("no such VM"));
        let mut none = Topology::pair();
        none.vms[1].role = Role::Target;
        assert!(none.check().unwrap_err().contains("runs the checks"));
    }
}
