//! Upstream's wire facts for the `Mayastor` messages the agent is to serve
//! first, checked on the bytes prost writes and on the enums' names and
//! numbers: renumbering or retyping a field, or renaming an enum value, in
//! `proto/mayastor.proto` fails here; renaming a field or message fails to
//! compile. The numbers are those of openebs/mayastor's
//! `rpc/proto/mayastor.proto` at 970cf775.

use prost::Message;

use super::mayastor::*;

/// A field's key, for field numbers up to 15 (a one-byte key): wire type 0
/// is a varint, 2 is length-delimited.
fn key(tag: u8, wire_type: u8) -> u8 {
    assert!(tag <= 15, "field {tag} has a longer key");
    tag << 3 | wire_type
}

/// A varint field holding a value below 128 (one byte).
fn varint(tag: u8, value: u8) -> Vec<u8> {
    assert!(value < 128);
    vec![key(tag, 0), value]
}

/// A string or message field shorter than 128 bytes.
fn bytes(tag: u8, value: &[u8]) -> Vec<u8> {
    let len = u8::try_from(value.len()).unwrap();
    assert!(len < 128);
    [&[key(tag, 2), len][..], value].concat()
}

/// Asserts that `message` encodes as `fields`, in that order (prost writes
/// fields in the order the proto declares them).
fn encodes_as(message: &(impl Message + std::fmt::Debug), fields: &[Vec<u8>]) {
    assert_eq!(message.encode_to_vec(), fields.concat(), "{message:?}");
}

#[test]
fn pool_messages_have_upstreams_numbers() {
    encodes_as(
        &CreatePoolRequest {
            name: "p".into(),
            disks: vec!["a".into(), "b".into()],
        },
        &[bytes(1, b"p"), bytes(2, b"a"), bytes(2, b"b")],
    );
    // Upstream leaves number 4 out of Pool.
    encodes_as(
        &Pool {
            name: "p".into(),
            disks: vec!["a".into()],
            state: PoolState::PoolOnline.into(),
            capacity: 7,
            used: 8,
        },
        &[
            bytes(1, b"p"),
            bytes(2, b"a"),
            varint(3, 1),
            varint(5, 7),
            varint(6, 8),
        ],
    );
    encodes_as(&DestroyPoolRequest { name: "p".into() }, &[bytes(1, b"p")]);
}

#[test]
fn replica_messages_have_upstreams_numbers() {
    encodes_as(
        &CreateReplicaRequest {
            uuid: "u".into(),
            pool: "p".into(),
            size: 9,
            thin: true,
            share: ShareProtocolReplica::ReplicaNvmf.into(),
        },
        &[
            bytes(1, b"u"),
            bytes(2, b"p"),
            varint(3, 9),
            varint(4, 1),
            varint(5, 1),
        ],
    );
    // Replica has thin before size, unlike the request.
    encodes_as(
        &Replica {
            uuid: "u".into(),
            pool: "p".into(),
            thin: true,
            size: 9,
            share: ShareProtocolReplica::ReplicaNvmf.into(),
            uri: "r".into(),
        },
        &[
            bytes(1, b"u"),
            bytes(2, b"p"),
            varint(3, 1),
            varint(4, 9),
            varint(5, 1),
            bytes(6, b"r"),
        ],
    );
    encodes_as(
        &ShareReplicaRequest {
            uuid: "u".into(),
            share: ShareProtocolReplica::ReplicaNvmf.into(),
        },
        &[bytes(1, b"u"), varint(2, 1)],
    );
}

#[test]
fn nexus_messages_have_upstreams_numbers() {
    encodes_as(
        &CreateNexusRequest {
            uuid: "n".into(),
            size: 9,
            children: vec!["a".into(), "b".into()],
        },
        &[bytes(1, b"n"), varint(2, 9), bytes(3, b"a"), bytes(3, b"b")],
    );
    let child = Child {
        uri: "a".into(),
        state: ChildState::ChildDegraded.into(),
        rebuild_progress: 42,
    };
    let child_bytes = [bytes(1, b"a"), varint(2, 2), varint(3, 42)];
    encodes_as(&child, &child_bytes);
    encodes_as(
        &Nexus {
            uuid: "n".into(),
            size: 9,
            state: NexusState::NexusDegraded.into(),
            children: vec![child],
            device_uri: "d".into(),
            rebuilds: 1,
        },
        &[
            bytes(1, b"n"),
            varint(2, 9),
            varint(3, 2),
            bytes(4, &child_bytes.concat()),
            bytes(5, b"d"),
            varint(6, 1),
        ],
    );
    encodes_as(
        &AddChildNexusRequest {
            uuid: "n".into(),
            uri: "a".into(),
            norebuild: true,
        },
        &[bytes(1, b"n"), bytes(2, b"a"), varint(3, 1)],
    );
    encodes_as(
        &PublishNexusRequest {
            uuid: "n".into(),
            key: "k".into(),
            share: ShareProtocolNexus::NexusNvmf.into(),
        },
        &[bytes(1, b"n"), bytes(2, b"k"), varint(3, 1)],
    );
    encodes_as(
        &ChildNexusRequest {
            uuid: "n".into(),
            uri: "a".into(),
            action: ChildAction::Online.into(),
        },
        &[bytes(1, b"n"), bytes(2, b"a"), varint(3, 1)],
    );
}

#[test]
fn rebuild_messages_have_upstreams_numbers() {
    encodes_as(
        &StartRebuildRequest {
            uuid: "n".into(),
            uri: "a".into(),
        },
        &[bytes(1, b"n"), bytes(2, b"a")],
    );
    encodes_as(
        &RebuildStateReply {
            state: "running".into(),
        },
        &[bytes(1, b"running")],
    );
    encodes_as(&RebuildProgressReply { progress: 50 }, &[varint(1, 50)]);
}

/// An enum's parser by value name: `from_str_name`, as the number.
type ByName<'a> = &'a dyn Fn(&str) -> Option<i32>;

#[test]
fn enums_have_upstreams_names_and_numbers() {
    let pool = |n: &str| PoolState::from_str_name(n).map(i32::from);
    let replica = |n: &str| ShareProtocolReplica::from_str_name(n).map(i32::from);
    let nexus_share = |n: &str| ShareProtocolNexus::from_str_name(n).map(i32::from);
    let child = |n: &str| ChildState::from_str_name(n).map(i32::from);
    let nexus = |n: &str| NexusState::from_str_name(n).map(i32::from);
    let ana = |n: &str| NvmeAnaState::from_str_name(n).map(i32::from);
    let action = |n: &str| ChildAction::from_str_name(n).map(i32::from);
    let values: &[(ByName, &str, i32)] = &[
        (&pool, "POOL_UNKNOWN", 0),
        (&pool, "POOL_ONLINE", 1),
        (&pool, "POOL_DEGRADED", 2),
        (&pool, "POOL_FAULTED", 3),
        (&replica, "REPLICA_NONE", 0),
        (&replica, "REPLICA_NVMF", 1),
        (&replica, "REPLICA_ISCSI", 2),
        (&nexus_share, "NEXUS_NBD", 0),
        (&nexus_share, "NEXUS_NVMF", 1),
        (&nexus_share, "NEXUS_ISCSI", 2),
        (&child, "CHILD_UNKNOWN", 0),
        (&child, "CHILD_ONLINE", 1),
        (&child, "CHILD_DEGRADED", 2),
        (&child, "CHILD_FAULTED", 3),
        (&nexus, "NEXUS_UNKNOWN", 0),
        (&nexus, "NEXUS_ONLINE", 1),
        (&nexus, "NEXUS_DEGRADED", 2),
        (&nexus, "NEXUS_FAULTED", 3),
        (&ana, "NVME_ANA_INVALID_STATE", 0),
        (&ana, "NVME_ANA_OPTIMIZED_STATE", 1),
        (&ana, "NVME_ANA_NON_OPTIMIZED_STATE", 2),
        (&ana, "NVME_ANA_INACCESSIBLE_STATE", 3),
        (&ana, "NVME_ANA_PERSISTENT_LOSS_STATE", 4),
        (&ana, "NVME_ANA_CHANGE_STATE", 15),
        // Lower case upstream.
        (&action, "offline", 0),
        (&action, "online", 1),
    ];
    for (parse, name, number) in values {
        assert_eq!(parse(name), Some(*number), "{name}");
    }
}

#[test]
fn services_have_upstreams_names() {
    assert_eq!(
        super::mayastor::mayastor_server::SERVICE_NAME,
        "mayastor.Mayastor"
    );
    assert_eq!(
        super::mayastor::bdev_rpc_server::SERVICE_NAME,
        "mayastor.BdevRpc"
    );
}
