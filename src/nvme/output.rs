//! What nvme-cli 2.3 prints, parsed; and hints for its failures.
//!
//! The shapes come from nvme-cli v2.3's `fabrics.c` (`json_discovery_log`,
//! `json_connect_msg`, `nvmf_disconnect`) and libnvme v1.3's
//! `src/nvme/fabrics.c` (the strings for trtype, subtype, treq, eflags) and
//! `src/nvme/util.c` (the connect error strings that [`hint`] recognises).

use serde::{Deserialize, Serialize};

use super::sysfs::{is_controller_name, Sysfs};
use super::Transport;
use crate::agent::limits::shown;

/// One record of a discovery log page, with nvme-cli's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryEntry {
    /// Transport type: `tcp`, `rdma`, `fc`, `loop`.
    pub trtype: String,
    /// Address family: `ipv4`, `ipv6`, ...
    #[serde(default)]
    pub adrfam: String,
    /// `nvme subsystem`, `discovery subsystem referral` or
    /// `current discovery subsystem`.
    pub subtype: String,
    /// Transport requirements, e.g. `not specified`.
    #[serde(default)]
    pub treq: String,
    /// Port id on the target.
    pub portid: u16,
    /// Transport service id: the TCP port, as text.
    pub trsvcid: String,
    /// The subsystem's NQN.
    pub subnqn: String,
    /// Transport address.
    pub traddr: String,
    /// Entry flags (absent in nvme-cli before 2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eflags: Option<String>,
    /// TCP security type (TCP entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sectype: Option<String>,
}

#[derive(Deserialize)]
struct DiscoveryLog {
    records: Vec<DiscoveryEntry>,
}

#[derive(Deserialize)]
struct ConnectMsg {
    device: String,
}

/// Parses `nvme discover -o json`.
pub(super) fn parse_discovery(stdout: &str) -> Result<Vec<DiscoveryEntry>, String> {
    serde_json::from_str::<DiscoveryLog>(stdout)
        .map(|log| log.records)
        .map_err(|e| format!("not a discovery log: {e}"))
}

/// Parses `nvme connect -o json`: the new controller's name, e.g. `nvme0`.
pub(super) fn parse_connect(stdout: &str) -> Result<String, String> {
    let msg: ConnectMsg =
        serde_json::from_str(stdout).map_err(|e| format!("no controller name: {e}"))?;
    if is_controller_name(&msg.device) {
        Ok(msg.device)
    } else {
        Err(format!(
            "{} is not a controller name like nvme0",
            shown(&msg.device)
        ))
    }
}

/// Parses `nvme disconnect -n <nqn>`, which prints
/// `NQN:<nqn> disconnected <n> controller(s)`.
pub(super) fn parse_disconnect(stdout: &str, subnqn: &str) -> Result<u32, String> {
    let prefix = format!("NQN:{subnqn} disconnected ");
    stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&prefix)?
                .strip_suffix(" controller(s)")
        })
        .ok_or_else(|| format!("no line `{prefix}<n> controller(s)`"))?
        .parse()
        .map_err(|e| format!("the controller count is not a number: {e}"))
}

/// A likely cause and fix for a failed nvme-cli call, from its stderr and
/// which modules are loaded.
pub(super) fn hint(stderr: &str, t: Option<&Transport>, sys: &Sysfs) -> Option<String> {
    let modprobe = "run `modprobe nvme-tcp` (it loads nvme-fabrics and nvme-core too)";
    let target = t.map_or_else(
        || "the target".to_string(),
        |t| format!("{}:{}", t.traddr, t.trsvcid),
    );
    if stderr.contains("Failed to scan topology") {
        Some(format!(
            "the NVMe host driver is not loaded (no /sys/class/nvme-subsystem): {modprobe}"
        ))
    } else if stderr.contains("failed to open nvme-fabrics device") {
        Some(format!("/dev/nvme-fabrics is missing: {modprobe}"))
    } else if stderr.contains("connection refused") {
        Some(format!(
            "nothing accepts NVMe/TCP connections at {target}: check the address and port, \
             and that the target serves that port (e.g. the bdev is shared)"
        ))
    } else if stderr.contains("already connected") {
        Some("this path is already connected: disconnect it first (`nvmfcheck nvme disconnect --nqn <nqn>`)".into())
    } else if !sys.module_loaded("nvme_tcp") {
        Some(format!("the nvme-tcp module is not loaded: {modprobe}"))
    } else if stderr.contains("failed to write to nvme-fabrics device")
        || stderr.contains("invalid arguments/configuration")
        || stderr.contains("failed to get discovery log")
    {
        Some(format!(
            "the kernel refused the connection to {target} (e.g. the host NQN is not allowed, \
             or the NQN is unknown there): its reason is in `dmesg`"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from nvme-cli 2.3 (`nvme discover -t tcp -a 127.0.0.1 -s 8420
    // -o json`) against a Linux 6.1 nvmet port in a QEMU guest; the shape is
    // that of nvme-cli v2.3 fabrics.c `json_discovery_log()` (json-c pretty
    // print) with the strings of libnvme v1.3 src/nvme/fabrics.c.
    const DISCOVERY: &str = r#"{
  "genctr":3,
  "records":[
    {
      "trtype":"tcp",
      "adrfam":"ipv4",
      "subtype":"current discovery subsystem",
      "treq":"not specified, sq flow control disable supported",
      "portid":1,
      "trsvcid":"8420",
      "subnqn":"nqn.2014-08.org.nvmexpress.discovery",
      "traddr":"127.0.0.1",
      "eflags":"none",
      "sectype":"none"
    },
    {
      "trtype":"tcp",
      "adrfam":"ipv4",
      "subtype":"nvme subsystem",
      "treq":"not specified, sq flow control disable supported",
      "portid":1,
      "trsvcid":"8420",
      "subnqn":"nqn.2019-05.io.openebs:5e1e6d9e-0000-4000-8000-000000000001",
      "traddr":"127.0.0.1",
      "eflags":"none",
      "sectype":"none"
    }
  ]
}
"#;

    #[test]
    fn discovery_log_parses_into_entries() {
        let entries = parse_discovery(DISCOVERY).unwrap();
        assert_eq!(entries.len(), 2);
        let e = &entries[1];
        assert_eq!(e.subtype, "nvme subsystem");
        assert_eq!(e.trtype, "tcp");
        assert_eq!(e.adrfam, "ipv4");
        assert_eq!(e.traddr, "127.0.0.1");
        assert_eq!(e.trsvcid, "8420");
        assert_eq!(e.portid, 1);
        assert_eq!(
            e.subnqn,
            "nqn.2019-05.io.openebs:5e1e6d9e-0000-4000-8000-000000000001"
        );
        assert_eq!(e.eflags.as_deref(), Some("none"));
        assert_eq!(entries[0].subtype, "current discovery subsystem");
    }

    // An RDMA record of the same function: no sectype, extra rdma_* fields.
    #[test]
    fn discovery_log_tolerates_other_transports_and_empty_logs() {
        let rdma = r#"{"genctr":1,"records":[{"trtype":"rdma","adrfam":"ipv4",
            "subtype":"nvme subsystem","treq":"not specified","portid":2,"trsvcid":"4420",
            "subnqn":"nqn.x","traddr":"10.0.0.1","eflags":"none","rdma_prtype":"not specified",
            "rdma_qptype":"connected","rdma_cms":"rdma-cm","rdma_pkey":0}]}"#;
        let entries = parse_discovery(rdma).unwrap();
        assert_eq!(entries[0].sectype, None);
        assert!(parse_discovery(r#"{"genctr":0,"records":[]}"#)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn discovery_log_rejects_other_output() {
        assert!(parse_discovery("").is_err());
        assert!(parse_discovery("Discovery Log Number of Records 1").is_err());
        let err = parse_discovery(r#"{"records":[{"trtype":"tcp"}]}"#).unwrap_err();
        assert!(err.contains("missing field"), "{err}");
    }

    // nvme-cli v2.3 fabrics.c `json_connect_msg()`.
    #[test]
    fn connect_message_gives_the_controller() {
        assert_eq!(
            parse_connect("{\n  \"device\":\"nvme3\"\n}\n").unwrap(),
            "nvme3"
        );
        assert!(parse_connect("").is_err());
        assert!(parse_connect(r#"{"device":"nvme0n1"}"#).is_err());
        assert!(parse_connect(r#"{"device":"../x"}"#).is_err());
        // Beyond u32: no controller sysfs could show.
        assert!(parse_connect(r#"{"device":"nvme4300000000"}"#).is_err());
        let err = parse_connect(r#"{"device":"\n"}"#).unwrap_err();
        assert!(err.starts_with(r#""\n" is not"#), "{err}");
    }

    // nvme-cli v2.3 fabrics.c `nvmf_disconnect()`: a printf, no JSON.
    #[test]
    fn disconnect_line_gives_the_count() {
        let out = "NQN:nqn.2019-05.io.openebs:abc disconnected 2 controller(s)\n";
        assert_eq!(
            parse_disconnect(out, "nqn.2019-05.io.openebs:abc").unwrap(),
            2
        );
        let none = "NQN:nqn.x disconnected 0 controller(s)\n";
        assert_eq!(parse_disconnect(none, "nqn.x").unwrap(), 0);
        assert!(parse_disconnect(out, "nqn.2019-05.io.openebs:other").is_err());
        assert!(parse_disconnect("", "nqn.x").is_err());
    }

    #[test]
    fn hints_name_the_module_or_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let sys = Sysfs::at(dir.path());
        let t = Transport::new("192.168.1.2", 8430).unwrap();
        let h = hint(
            "Failed to scan topology: No such file or directory",
            None,
            &sys,
        )
        .unwrap();
        assert!(h.contains("modprobe nvme-tcp"), "{h}");
        let h = hint(
            "Failed to open /dev/nvme-fabrics: No such file or directory\n\
             failed to add controller, error failed to open nvme-fabrics device",
            Some(&t),
            &sys,
        )
        .unwrap();
        assert!(h.contains("/dev/nvme-fabrics is missing"), "{h}");
        let h = hint(
            "could not add new controller: connection refused",
            Some(&t),
            &sys,
        )
        .unwrap();
        assert!(h.contains("192.168.1.2:8430"), "{h}");
        let h = hint(
            "could not add new controller: invalid arguments/configuration",
            Some(&t),
            &sys,
        )
        .unwrap();
        assert!(h.contains("nvme-tcp module is not loaded"), "{h}");

        std::fs::create_dir_all(dir.path().join("sys/module/nvme_tcp")).unwrap();
        let h = hint(
            "could not add new controller: invalid arguments/configuration",
            Some(&t),
            &sys,
        )
        .unwrap();
        assert!(h.contains("dmesg"), "{h}");
        assert_eq!(hint("something else", Some(&t), &sys), None);
    }

    /// Properties over generated nvme-cli output (see `crate::props`).
    mod props {
        use proptest::prelude::*;
        use proptest::sample::select;

        use super::*;
        use crate::nvme::sysfs::is_controller_name;
        use crate::props::{assert_one_line, config, json_output, json_with, nqn, text};

        fn entry() -> impl Strategy<Value = DiscoveryEntry> {
            let s = || prop_oneof![text(12), "[a-z ]{0,20}"];
            (
                (select(&["tcp", "rdma", "fc", "loop"][..]), s(), s(), s()),
                (any::<u16>(), any::<u16>(), nqn(), s()),
                (prop::option::of(s()), prop::option::of(s())),
            )
                .prop_map(
                    |(
                        (trtype, adrfam, subtype, treq),
                        (portid, svc, subnqn, traddr),
                        (eflags, sectype),
                    )| {
                        DiscoveryEntry {
                            trtype: trtype.into(),
                            adrfam,
                            subtype,
                            treq,
                            portid,
                            trsvcid: svc.to_string(),
                            subnqn,
                            traddr,
                            eflags,
                            sectype,
                        }
                    },
                )
        }

        proptest! {
            #![proptest_config(config(256))]

            #[test]
            fn any_output_is_parsed_or_refused(
                out in json_output(&["genctr", "records", "device"], DISCOVERY)
            ) {
                if let Err(reason) = parse_discovery(&out) {
                    assert_one_line(&reason);
                }
                match parse_connect(&out) {
                    Ok(device) => prop_assert!(is_controller_name(&device), "{device}"),
                    Err(reason) => assert_one_line(&reason),
                }
                let _ = parse_disconnect(&out, "nqn.x");
            }

            #[test]
            fn records_with_bad_fields_are_refused(
                records in proptest::collection::vec(
                    json_with(&["trtype", "adrfam", "subtype", "treq", "portid", "trsvcid", "subnqn", "traddr", "eflags"]),
                    0..4,
                )
            ) {
                let out = serde_json::json!({ "genctr": 1, "records": records }).to_string();
                if let Err(reason) = parse_discovery(&out) {
                    assert_one_line(&reason);
                }
            }

            /// A log as nvme-cli prints it (pretty, with fields this
            /// version ignores) gives the entries it was made from.
            #[test]
            fn discovery_logs_give_their_entries(
                entries in proptest::collection::vec(entry(), 0..5), genctr in any::<u64>()
            ) {
                let mut records = serde_json::to_value(&entries).unwrap();
                for r in records.as_array_mut().unwrap() {
                    r["rdma_pkey"] = 0.into();
                }
                let log = serde_json::json!({ "genctr": genctr, "records": records });
                let out = serde_json::to_string_pretty(&log).unwrap();
                prop_assert_eq!(parse_discovery(&out), Ok(entries));
            }

            #[test]
            fn connect_gives_the_controller_it_names(device in prop_oneof!["nvme[0-9]{1,12}", text(10)]) {
                let out = serde_json::json!({ "device": device }).to_string();
                prop_assert_eq!(parse_connect(&out).ok(), is_controller_name(&device).then_some(device));
            }

            #[test]
            fn disconnect_gives_the_count(
                nqn in nqn(), n in any::<u32>(), before in text(30), after in text(30)
            ) {
                let out = format!("{before}\nNQN:{nqn} disconnected {n} controller(s)\n{after}");
                // A line of the same form for the same NQN before it would be
                // read first; the generated text has none.
                prop_assume!(!before.contains(&format!("NQN:{nqn} ")));
                prop_assert_eq!(parse_disconnect(&out, &nqn), Ok(n));
            }
        }
    }
}
