//! The table of bad inputs: what is wrong, the call, the status code and a
//! fragment of the message that names the problem.

use tonic::Code::{
    self, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
};

use super::{Call, Fixture, Row};

/// Every bad input, for what `fx` says exists on the target; rows whose
/// part of the fixture is absent are left out.
// One row a line reads as the table it is; rustfmt would spread each over six.
#[rustfmt::skip]
pub fn rows(fx: &Fixture) -> Vec<Row> {
    let Fixture { dir, shared, malloc, .. } = fx;
    // Bdevs are named by their URI without the query (aio) or by the path (malloc).
    let shared_name = shared.split('?').next().unwrap_or_default();
    let huge_uri = format!("aio:///{}", "u".repeat(5000));
    let huge_uri_len = format!("bdev URI is {} bytes long; at most 4096", huge_uri.len());
    let n256 = "n".repeat(256);
    let f300 = "f".repeat(300);
    let x5000 = "x".repeat(5000);
    let huge_host = format!("nqn.{}", "h".repeat(220));
    let many_hosts: Vec<String> = (0..65).map(|i| format!("nqn.2014-08.org.example:h{i}")).collect();
    let at = |path: &Option<String>| path.as_ref().map(|p| create(&format!("aio://{p}")));
    [
        // Create: the URI.
        row("unknown scheme", create("nvmf:///x"), InvalidArgument, "unsupported scheme `nvmf`"),
        row("not a URI", create("m0"), InvalidArgument, "`m0` is not a URI"),
        row("empty URI", create(""), InvalidArgument, "the bdev URI is empty"),
        row("huge URI", create(&huge_uri), InvalidArgument, &huge_uri_len),
        row("host in the URI", create("aio://dev/vdb"), InvalidArgument, "names a host (`dev`)"),
        row("two slashes only", create("aio:/dev/vdb"), InvalidArgument, "lacks the `//` after `aio:`"),
        row("fragment", create("aio:///dev/vdb#p1"), InvalidArgument, "has a fragment"),
        row("unknown parameter", create("malloc:///m1?size_mb=1&colour=red"), InvalidArgument, "unknown parameter `colour` for malloc bdevs"),
        row("size_mb on aio", create(&format!("aio://{dir}?size_mb=1")), InvalidArgument, "unknown parameter `size_mb` for aio bdevs"),
        row("parameter twice", create("malloc:///m1?size_mb=1&size_mb=2"), InvalidArgument, "parameter `size_mb` is given more than once"),
        row("bad uuid", create("malloc:///m1?size_mb=1&uuid=xyz"), InvalidArgument, "uuid=`xyz` is not a usable UUID"),
        // Create: the aio path.
        row("aio with nothing after //", create("aio://"), InvalidArgument, "`aio://` names no file"),
        row("no aio path", create("aio:///"), InvalidArgument, "`aio:///` names no file"),
        row("path not allowed", create("aio:///etc/passwd"), PermissionDenied, "/etc/passwd is outside the paths this agent may export"),
        row("missing path", create(&format!("aio://{dir}/nvmfcheck-missing")), NotFound, &format!("{dir}/nvmfcheck-missing does not exist")),
        row("path is a directory", create(&format!("aio://{dir}")), InvalidArgument, &format!("{dir} is a directory")),
        row("character device", at(&fx.char_device), InvalidArgument, "is a character device"),
        row("empty file", at(&fx.empty_file), InvalidArgument, "holds 0 bytes, less than one"),
        row("huge file name", create(&format!("aio://{dir}/{f300}")), InvalidArgument, "is too long for Linux"),
        row("duplicate create of the shared bdev", create(shared), AlreadyExists, &format!("bdev `{shared_name}` already exists")),
        row("same file, other path", at(&fx.same_file), AlreadyExists, &format!("is already used by bdev `{shared_name}`")),
        // Create: the malloc name and size.
        row("duplicate create", create(&format!("malloc:///{malloc}?size_mb=1")), AlreadyExists, &format!("bdev `{malloc}` already exists")),
        row("missing size_mb", create("malloc:///m1"), InvalidArgument, "`malloc:///m1` lacks size_mb"),
        row("malformed size_mb", create("malloc:///m1?size_mb=abc"), InvalidArgument, "size_mb=`abc` is not a whole number"),
        row("negative size_mb", create("malloc:///m1?size_mb=-1"), InvalidArgument, "size_mb=`-1` is not a whole number"),
        row("zero size_mb", create("malloc:///m1?size_mb=0"), InvalidArgument, "needs at least 1 MiB"),
        row("bad blk_size", create("malloc:///m1?size_mb=1&blk_size=1024"), InvalidArgument, "blk_size=`1024` is not a block size this target offers; give blk_size=512 or blk_size=4096"),
        row("blk_size not a number", create(&format!("aio://{dir}?blk_size=4k")), InvalidArgument, "blk_size=`4k` is not a block size this target offers"),
        row("malformed num_blocks", create("malloc:///m1?num_blocks=ten"), InvalidArgument, "num_blocks=`ten` is not a whole number of blocks"),
        row("zero num_blocks", create("malloc:///m1?num_blocks=0"), InvalidArgument, "num_blocks=0: a malloc bdev needs at least one block"),
        row("huge num_blocks", create("malloc:///m1?num_blocks=2147483649"), InvalidArgument, "num_blocks=2147483649 of 512 bytes is more than the largest malloc bdev"),
        row("size_mb and num_blocks", create("malloc:///m1?size_mb=1&num_blocks=8"), InvalidArgument, "gives both size_mb and num_blocks; give one of them"),
        row("huge size_mb", create("malloc:///m1?size_mb=1048577"), InvalidArgument, "size_mb=1048577 is more than the largest malloc bdev"),
        row("size_mb beyond free RAM", create("malloc:///m1?size_mb=1048576"), InvalidArgument, "size_mb=1048576 does not fit"),
        row("empty malloc name", create("malloc:///?size_mb=1"), InvalidArgument, "has no bdev name"),
        row("name with /", create("malloc:///a/b?size_mb=1"), InvalidArgument, "name `a/b` contains `/`"),
        row("name with %2F", create("malloc:///a%2Fb?size_mb=1"), InvalidArgument, "name `a/b` contains `/`"),
        row("name ..", create("malloc:///..?size_mb=1"), InvalidArgument, "contains a `.` or `..` path segment"),
        row("path with ..", create("malloc:///../etc?size_mb=1"), InvalidArgument, "contains a `.` or `..` path segment"),
        row("name with a space", create("malloc:///a%20b?size_mb=1"), InvalidArgument, "name `a b` contains ' '"),
        row("huge malloc name", create(&format!("malloc:///{n256}?size_mb=1")), InvalidArgument, "name is 256 bytes long; at most 255"),
        // Destroy.
        row("destroy unknown", destroy("malloc:///nope"), NotFound, "no bdev is named `nope`"),
        row("destroy while shared", destroy(shared), FailedPrecondition, &format!("bdev `{shared_name}` is shared at nvmf://")),
        row("destroy by bare name", destroy(malloc), InvalidArgument, &format!("`{malloc}` is not a URI")),
        row("destroy, unknown scheme", destroy(&format!("iscsi:///{malloc}")), InvalidArgument, "unsupported scheme `iscsi`"),
        // Share.
        row("share unknown name", share("nope", "nvmf"), NotFound, "no bdev is named `nope`"),
        row("share empty name", share("", "nvmf"), NotFound, "the bdev name is empty"),
        row("share huge name", share(&x5000, "nvmf"), InvalidArgument, "name is 5000 bytes long; at most 4096"),
        row("unknown protocol", share(malloc, "iscsi"), InvalidArgument, "share protocol \"iscsi\" is not supported"),
        row("empty protocol", share(malloc, ""), InvalidArgument, "share protocol \"\" (empty) is not supported"),
        row("huge protocol", share(malloc, &x5000), InvalidArgument, "share protocol is 5000 bytes long; at most 4096"),
        row("empty allowed host", share_to(malloc, &[""]), InvalidArgument, "allowed host \"\" is empty"),
        row("allowed host without nqn.", share_to(malloc, &["iqn.2004-10.com.example:h"]), InvalidArgument, "does not start with \"nqn.\""),
        row("allowed host with /", share_to(malloc, &["nqn.a/../b"]), InvalidArgument, "allowed host \"nqn.a/../b\" contains `/`"),
        row("allowed host with a space", share_to(malloc, &["nqn.a b"]), InvalidArgument, "contains whitespace"),
        row("allowed host with a newline", share_to(malloc, &["nqn.a\nb"]), InvalidArgument, "\"nqn.a\\nb\" contains a control character"),
        row("huge allowed host", share_to(malloc, &[huge_host.as_str()]), InvalidArgument, "is 224 bytes long"),
        row("too many allowed hosts", Call::Share(malloc.clone(), "nvmf".into(), many_hosts), InvalidArgument, "65 allowed hosts were given; at most 64"),
        // Unshare.
        row("unshare huge name", unshare(&x5000), InvalidArgument, "name is 5000 bytes long; at most 4096"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A row, or none when its call needs a part of the fixture that is absent.
fn row(what: &'static str, call: impl Into<Option<Call>>, code: Code, says: &str) -> Option<Row> {
    Some(Row {
        what,
        call: call.into()?,
        code,
        says: says.to_string(),
    })
}

fn create(uri: &str) -> Call {
    Call::Create(uri.to_string())
}

fn destroy(uri: &str) -> Call {
    Call::Destroy(uri.to_string())
}

fn share(name: &str, proto: &str) -> Call {
    Call::Share(name.to_string(), proto.to_string(), Vec::new())
}

/// Share over nvmf to `hosts`.
fn share_to(name: &str, hosts: &[&str]) -> Call {
    let hosts = hosts.iter().map(|h| h.to_string()).collect();
    Call::Share(name.to_string(), "nvmf".to_string(), hosts)
}

fn unshare(name: &str) -> Call {
    Call::Unshare(name.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn fixture() -> Fixture {
        Fixture::complete()
    }

    #[test]
    fn every_row_has_its_own_name() {
        let rows = rows(&fixture());
        let names: BTreeSet<_> = rows.iter().map(|r| r.what).collect();
        assert_eq!(names.len(), rows.len());
    }

    #[test]
    fn rows_without_their_fixture_part_are_left_out() {
        let all = rows(&fixture());
        let bare = Fixture {
            same_file: None,
            empty_file: None,
            char_device: None,
            ..fixture()
        };
        let some = rows(&bare);
        let gone: Vec<_> = all
            .iter()
            .filter(|r| !some.contains(r))
            .map(|r| r.what)
            .collect();
        assert_eq!(
            gone,
            ["character device", "empty file", "same file, other path"]
        );
    }
}
