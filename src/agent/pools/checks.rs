//! The checks of what a pool or replica call carries, made before anything
//! is read from LVM or changed.

use std::path::PathBuf;

use uuid::Uuid;

use super::error::PoolError;
use crate::agent::limits::{shown, MAX_ARG_LEN};
use crate::proto::mayastor::ShareProtocolReplica;

/// The longest pool name, in bytes (LVM allows 127; 64 is plenty and
/// keeps `/dev/<pool>/<uuid>` short).
pub const MAX_POOL_NAME: usize = 64;

/// Checks a pool name: one LVM takes as a volume group name as it is
/// (`lib/misc/lvm-string.c`'s `validate_name`).
pub fn pool_name(name: &str) -> Result<(), PoolError> {
    let problem = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_POOL_NAME {
        "is too long"
    } else if name.starts_with('-') {
        "starts with -"
    } else if name == "." || name == ".." {
        "is . or .."
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+_.-".contains(&b))
    {
        "has a character LVM does not allow in a volume group name"
    } else {
        return Ok(());
    };
    Err(PoolError::BadName {
        name: shown(name),
        problem,
    })
}

/// Checks a replica uuid, which names its logical volume: it must be a
/// uuid in its usual form, so that List shows it as the client gave it.
pub fn replica_uuid(uuid: &str) -> Result<Uuid, PoolError> {
    parse_uuid(uuid).map_err(|problem| PoolError::BadUuid {
        uuid: shown(uuid),
        problem,
    })
}

/// A uuid as the `Mayastor` calls take one (lower case, with hyphens, not
/// nil), or what is wrong with it.
pub fn parse_uuid(uuid: &str) -> Result<Uuid, &'static str> {
    if uuid.is_empty() {
        return Err("is empty");
    }
    let parsed = Uuid::try_parse(uuid).map_err(|_| "is not a uuid")?;
    if parsed.is_nil() {
        return Err("is the nil uuid");
    }
    if parsed.hyphenated().to_string() != uuid {
        return Err("is not in lower case with hyphens");
    }
    Ok(parsed)
}

/// The path of a pool's disk: a path (`/dev/vdb`) or an `aio://` URI of one
/// (`aio:///dev/vdb`), as Mayastor takes them.
pub fn disk(disk: &str) -> Result<PathBuf, PoolError> {
    let bad = |problem: &str| PoolError::BadDisk {
        disk: shown(disk),
        problem: problem.to_string(),
    };
    if disk.len() > MAX_ARG_LEN {
        return Err(bad("is too long"));
    }
    let path = match disk.split_once("://") {
        Some(("aio", path)) => path,
        Some(_) => return Err(bad(
            "has a scheme other than aio://; give a device path such as /dev/vdb or aio:///dev/vdb",
        )),
        None => disk,
    };
    if !path.starts_with('/') {
        return Err(bad(
            "is not an absolute path; give a device path such as /dev/vdb",
        ));
    }
    if path.contains(['?', '#', '%']) || path.chars().any(char::is_control) {
        return Err(bad(
            "has parameters or characters a disk path does not have; give the bare path, e.g. /dev/vdb",
        ));
    }
    Ok(PathBuf::from(path))
}

/// The share protocol of a replica call: `None` for REPLICA_NONE, `Some(())`
/// for REPLICA_NVMF; anything else is refused.
pub fn protocol(value: i32) -> Result<bool, PoolError> {
    match ShareProtocolReplica::try_from(value) {
        Ok(ShareProtocolReplica::ReplicaNone) => Ok(false),
        Ok(ShareProtocolReplica::ReplicaNvmf) => Ok(true),
        Ok(other) => Err(PoolError::Protocol(other.as_str_name().to_string())),
        Err(_) => Err(PoolError::Protocol(format!("{value} (not a protocol)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn pool_names() {
        for good in ["pool1", "p.1_x+y-z", "P", &"a".repeat(64)] {
            pool_name(good).unwrap();
        }
        for bad in [
            "",
            "-p",
            ".",
            "..",
            "a/b",
            "a b",
            "pööl",
            "a\n",
            &"a".repeat(65),
        ] {
            let e = pool_name(bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}");
            assert!(e.to_string().contains("e.g. pool1"), "{e}");
        }
    }

    #[test]
    fn replica_uuids() {
        let u = "0b9e1c4a-5c3e-4f6a-9d2b-7e8f00112233";
        assert_eq!(replica_uuid(u).unwrap().to_string(), u);
        for (bad, says) in [
            ("", "is empty"),
            ("r1", "is not a uuid"),
            ("00000000-0000-0000-0000-000000000000", "nil"),
            ("0B9E1C4A-5C3E-4F6A-9D2B-7E8F00112233", "lower case"),
            ("0b9e1c4a5c3e4f6a9d2b7e8f00112233", "lower case"),
        ] {
            let e = replica_uuid(bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
            assert_eq!(e.code(), Code::InvalidArgument);
        }
    }

    #[test]
    fn disks() {
        assert_eq!(disk("/dev/vdb").unwrap(), PathBuf::from("/dev/vdb"));
        assert_eq!(disk("aio:///dev/vdb").unwrap(), PathBuf::from("/dev/vdb"));
        for (bad, says) in [
            ("malloc:///m0?size_mb=8", "scheme"),
            ("vdb", "absolute"),
            ("aio://dev/vdb", "absolute"),
            ("aio:///dev/vdb?blk_size=4096", "bare path"),
            ("/dev/vdb\n", "bare path"),
        ] {
            let e = disk(bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn protocols() {
        assert!(!protocol(0).unwrap());
        assert!(protocol(1).unwrap());
        assert!(protocol(2)
            .unwrap_err()
            .to_string()
            .contains("REPLICA_ISCSI"));
        assert!(protocol(7)
            .unwrap_err()
            .to_string()
            .contains("7 (not a protocol)"));
    }
}
