//! Shared by the agent's integration tests: the table of bad inputs with the
//! gRPC code and message fragment each must give (docs/bad-input.md lists
//! the same rows), run against the configfs model here and against the
//! kernel target in the VM.

#![allow(dead_code)] // each test binary uses part of it

use std::path::Path;

use nvmfcheck::proto::mayastor::bdev_rpc_client::BdevRpcClient;
use nvmfcheck::proto::mayastor::{BdevShareRequest, BdevUri, CreateReply};
use tonic::transport::Channel;
use tonic::Code;

/// One call of the table.
#[derive(Debug, Clone)]
pub enum Call {
    /// `Create(uri)`.
    Create(String),
    /// `Destroy(uri)`.
    Destroy(String),
    /// `Share(name, proto)`.
    Share(String, String),
    /// `Unshare(name)`.
    Unshare(String),
}

/// A bad input and what it must give.
#[derive(Debug, Clone)]
pub struct Row {
    /// What is wrong, in words.
    pub what: &'static str,
    /// The call.
    pub call: Call,
    /// The status code.
    pub code: Code,
    /// A fragment of the message.
    pub says: String,
}

fn row(what: &'static str, call: Call, code: Code, says: &str) -> Row {
    Row {
        what,
        call,
        code,
        says: says.to_string(),
    }
}

fn create(u: &str) -> Call {
    Call::Create(u.to_string())
}

/// Makes what the rows refer to, in `dir`: a 4 MiB file `disk` shared as
/// an aio bdev, a symlink `link` to it, and malloc bdev `m0` (not shared).
pub async fn prepare(c: &mut BdevRpcClient<Channel>, dir: &Path) {
    let disk = dir.join("disk");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    std::os::unix::fs::symlink(&disk, dir.join("link")).unwrap();
    let aio = format!("aio://{}", disk.display());
    c.create(BdevUri { uri: aio.clone() }).await.unwrap();
    c.share(BdevShareRequest {
        name: aio,
        proto: "nvmf".into(),
    })
    .await
    .unwrap();
    c.create(BdevUri {
        uri: "malloc:///m0?size_mb=1".into(),
    })
    .await
    .unwrap();
}

/// The table, for a `dir` made ready by [`prepare`].
pub fn rows(dir: &Path) -> Vec<Row> {
    use Code::*;
    let d = dir.display();
    let disk = format!("aio://{d}/disk");
    let long_name = format!("malloc:///{}?size_mb=1", "n".repeat(256));
    let long_uri = format!("aio:///{}", "u".repeat(5000));
    let long = "x".repeat(5000);
    vec![
        row(
            "unknown scheme",
            create("nvmf:///x"),
            InvalidArgument,
            "unsupported scheme `nvmf`",
        ),
        row("not a URI", create("m0"), InvalidArgument, "is not a URI"),
        row(
            "empty URI",
            create(""),
            InvalidArgument,
            "the bdev URI is empty",
        ),
        row(
            "missing path",
            create(&format!("aio://{d}/missing")),
            NotFound,
            "does not exist",
        ),
        row(
            "path is a directory",
            create(&format!("aio://{d}")),
            InvalidArgument,
            "is a directory",
        ),
        row(
            "character device",
            create("aio:///dev/null"),
            InvalidArgument,
            "is a character device",
        ),
        row(
            "empty file",
            create(&format!("aio://{d}/empty")),
            InvalidArgument,
            "less than one",
        ),
        row(
            "host in the URI",
            create("aio://dev/vdb"),
            InvalidArgument,
            "three slashes",
        ),
        row(
            "two slashes only",
            create("aio:/dev/vdb"),
            InvalidArgument,
            "lacks the `//`",
        ),
        row(
            "no aio path",
            create("aio:///"),
            InvalidArgument,
            "names no file",
        ),
        row(
            "fragment",
            create("aio:///dev/vdb#p1"),
            InvalidArgument,
            "fragment",
        ),
        row(
            "duplicate create",
            create("malloc:///m0?size_mb=1"),
            AlreadyExists,
            "already exists",
        ),
        row(
            "same file, other path",
            create(&format!("aio://{d}/link")),
            AlreadyExists,
            "already used by bdev",
        ),
        row(
            "missing size_mb",
            create("malloc:///m1"),
            InvalidArgument,
            "lacks size_mb",
        ),
        row(
            "malformed size_mb",
            create("malloc:///m1?size_mb=abc"),
            InvalidArgument,
            "not a whole number",
        ),
        row(
            "negative size_mb",
            create("malloc:///m1?size_mb=-1"),
            InvalidArgument,
            "not a whole number",
        ),
        row(
            "zero size_mb",
            create("malloc:///m1?size_mb=0"),
            InvalidArgument,
            "at least 1 MiB",
        ),
        row(
            "huge size_mb",
            create("malloc:///m1?size_mb=1048577"),
            InvalidArgument,
            "largest malloc bdev",
        ),
        row(
            "size_mb beyond free RAM",
            create("malloc:///m1?size_mb=1048576"),
            InvalidArgument,
            "does not fit",
        ),
        row(
            "empty malloc name",
            create("malloc:///?size_mb=1"),
            InvalidArgument,
            "has no bdev name",
        ),
        row(
            "name with /",
            create("malloc:///a/b?size_mb=1"),
            InvalidArgument,
            "contains `/`",
        ),
        row(
            "name with %2F",
            create("malloc:///a%2Fb?size_mb=1"),
            InvalidArgument,
            "contains `/`",
        ),
        row(
            "name ..",
            create("malloc:///..?size_mb=1"),
            InvalidArgument,
            "`.` or `..`",
        ),
        row(
            "path with ..",
            create("malloc:///../etc?size_mb=1"),
            InvalidArgument,
            "`.` or `..`",
        ),
        row(
            "name with a space",
            create("malloc:///a%20b?size_mb=1"),
            InvalidArgument,
            "contains ' '",
        ),
        row(
            "huge malloc name",
            create(&long_name),
            InvalidArgument,
            "at most 255",
        ),
        row(
            "huge file name",
            create(&format!("aio://{d}/{}", "f".repeat(300))),
            InvalidArgument,
            "too long for Linux",
        ),
        row(
            "huge URI",
            create(&long_uri),
            InvalidArgument,
            "at most 4096",
        ),
        row(
            "unknown parameter",
            create("malloc:///m1?size_mb=1&colour=red"),
            InvalidArgument,
            "unknown parameter `colour`",
        ),
        row(
            "size_mb on aio",
            create(&format!("{disk}?size_mb=1")),
            InvalidArgument,
            "unknown parameter `size_mb`",
        ),
        row(
            "parameter twice",
            create("malloc:///m1?size_mb=1&size_mb=2"),
            InvalidArgument,
            "more than once",
        ),
        row(
            "bad uuid",
            create("malloc:///m1?size_mb=1&uuid=xyz"),
            InvalidArgument,
            "not a usable UUID",
        ),
        row(
            "destroy unknown",
            Call::Destroy("malloc:///nope".into()),
            NotFound,
            "no bdev is named `nope`",
        ),
        row(
            "destroy while shared",
            Call::Destroy(disk.clone()),
            FailedPrecondition,
            "unshare it first",
        ),
        row(
            "destroy by bare name",
            Call::Destroy("m0".into()),
            InvalidArgument,
            "is not a URI",
        ),
        row(
            "destroy, unknown scheme",
            Call::Destroy("iscsi:///m0".into()),
            InvalidArgument,
            "unsupported scheme",
        ),
        row(
            "share unknown name",
            Call::Share("nope".into(), "nvmf".into()),
            NotFound,
            "no bdev is named `nope`",
        ),
        row(
            "share empty name",
            Call::Share(String::new(), "nvmf".into()),
            InvalidArgument,
            "name is empty",
        ),
        row(
            "share huge name",
            Call::Share(long.clone(), "nvmf".into()),
            InvalidArgument,
            "at most 4096",
        ),
        row(
            "unknown protocol",
            Call::Share("m0".into(), "iscsi".into()),
            InvalidArgument,
            "\"iscsi\" is not supported",
        ),
        row(
            "empty protocol",
            Call::Share("m0".into(), String::new()),
            InvalidArgument,
            "(empty) is not supported",
        ),
        row(
            "unshare unknown name",
            Call::Unshare("nope".into()),
            NotFound,
            "no bdev is named `nope`",
        ),
        row(
            "unshare empty name",
            Call::Unshare(String::new()),
            InvalidArgument,
            "name is empty",
        ),
        row(
            "unshare huge name",
            Call::Unshare(long),
            InvalidArgument,
            "at most 4096",
        ),
    ]
}

/// Runs every row; returns one line per row that did not give its code
/// and message.
pub async fn check(c: &mut BdevRpcClient<Channel>, dir: &Path) -> Vec<String> {
    std::fs::File::create(dir.join("empty")).unwrap();
    let mut failures = Vec::new();
    for row in rows(dir) {
        let result = match row.call.clone() {
            Call::Create(uri) => c.create(BdevUri { uri }).await.map(|_| ()),
            Call::Destroy(uri) => c.destroy(BdevUri { uri }).await.map(|_| ()),
            Call::Share(name, proto) => c.share(BdevShareRequest { name, proto }).await.map(|_| ()),
            Call::Unshare(name) => c.unshare(CreateReply { name }).await.map(|_| ()),
        };
        match result {
            Ok(()) => failures.push(format!("{}: accepted", row.what)),
            Err(s) if s.code() != row.code || !s.message().contains(&row.says) => {
                failures.push(format!(
                    "{}: got {:?} {:?}, want {:?} with {:?}",
                    row.what,
                    s.code(),
                    s.message(),
                    row.code,
                    row.says
                ))
            }
            Err(_) => {}
        }
    }
    // Not an error: unsharing a bdev that is not shared succeeds.
    if let Err(s) = c.unshare(CreateReply { name: "m0".into() }).await {
        failures.push(format!("unshare of an unshared bdev: {s:?}"));
    }
    failures
}
