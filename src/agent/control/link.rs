//! The network interface that carries the agent's NVMe address, and
//! setting it down or up with iproute2's `ip link set`.

use std::net::Ipv4Addr;
use std::time::Duration;

use nix::net::if_::InterfaceFlags;

use super::ControlError;
use crate::cmd::Cmd;

/// Deadline of one `ip link set`.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the interface that has `address`.
pub fn interface_of(address: Ipv4Addr) -> Result<String, ControlError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| ControlError::NoInterface {
        address,
        why: format!("cannot list the interfaces: {e}"),
    })?;
    for a in addrs {
        let ip = a
            .address
            .as_ref()
            .and_then(|s| s.as_sockaddr_in())
            .map(|s| s.ip());
        if ip != Some(address) {
            continue;
        }
        if a.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            return Err(ControlError::NoInterface {
                address,
                why: format!(
                    "it is on the loopback interface {}, which cannot stand for a network link",
                    a.interface_name
                ),
            });
        }
        return Ok(a.interface_name);
    }
    Err(ControlError::NoInterface {
        address,
        why: "no interface has it".into(),
    })
}

/// Sets `interface` up or down.
pub async fn set(interface: &str, up: bool) -> Result<(), ControlError> {
    Cmd::new("ip")
        .args([
            "link",
            "set",
            "dev",
            interface,
            if up { "up" } else { "down" },
        ])
        .timeout(IP_TIMEOUT)
        .run()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_absent_addresses_have_no_link() {
        let err = interface_of(Ipv4Addr::LOCALHOST).unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
        // TEST-NET-3, which no test machine carries.
        let err = interface_of(Ipv4Addr::new(203, 0, 113, 77))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no interface has it"), "{err}");
    }
}
