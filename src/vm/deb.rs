//! Unpacking a Debian package: an `ar` archive holding `data.tar.xz`.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::{io_error, VmError};

const AR_MAGIC: &[u8] = b"!<arch>\n";
const AR_HEADER_LEN: usize = 60;

/// One member of an `ar` archive: its name, where its data starts, its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Name without the trailing `/` or padding.
    pub name: String,
    /// Byte offset of the member's data.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Lists the members of an `ar` archive (the format of `.deb` files).
pub fn members(mut ar: impl Read + Seek) -> Result<Vec<Member>, VmError> {
    let bad = |why: String| VmError::Kernel(format!("not a Debian package (ar archive): {why}"));
    let mut magic = [0u8; 8];
    ar.read_exact(&mut magic)
        .map_err(|e| bad(format!("cannot read the header: {e}")))?;
    if magic != AR_MAGIC {
        return Err(bad("no `!<arch>` magic".into()));
    }
    let mut out = Vec::new();
    let mut offset = AR_MAGIC.len() as u64;
    loop {
        let mut header = [0u8; AR_HEADER_LEN];
        match ar.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(bad(format!("cannot read a member header: {e}"))),
        }
        if &header[58..60] != b"`\n" {
            return Err(bad(format!("corrupt member header at byte {offset}")));
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = String::from_utf8_lossy(&header[48..58])
            .trim()
            .parse()
            .map_err(|_| bad(format!("bad size of member `{name}`")))?;
        offset += AR_HEADER_LEN as u64;
        out.push(Member { name, offset, size });
        // Members are padded to an even length.
        offset += size + size % 2;
        ar.seek(SeekFrom::Start(offset))
            .map_err(|e| bad(format!("cannot seek: {e}")))?;
    }
    Ok(out)
}

/// Unpacks the files of `deb` (its `data.tar.xz`) below `dest`.
pub fn unpack(deb: &Path, dest: &Path) -> Result<(), VmError> {
    let what = || format!("cannot read {}", deb.display());
    let mut file = File::open(deb).map_err(io_error(what()))?;
    let data = members(&mut file)?
        .into_iter()
        .find(|m| m.name.starts_with("data.tar"))
        .ok_or_else(|| VmError::Kernel(format!("{} has no data.tar member", deb.display())))?;
    if data.name != "data.tar.xz" {
        return Err(VmError::Kernel(format!(
            "{} holds `{}`; only data.tar.xz is supported",
            deb.display(),
            data.name
        )));
    }
    file.seek(SeekFrom::Start(data.offset))
        .map_err(io_error(what()))?;
    let xz = liblzma::read::XzDecoder::new(BufReader::new(file.take(data.size)));
    let mut tar = tar::Archive::new(xz);
    tar.set_preserve_permissions(true);
    tar.unpack(dest).map_err(io_error(format!(
        "cannot unpack {} into {}",
        deb.display(),
        dest.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn ar_member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut m = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            100644,
            data.len()
        )
        .into_bytes();
        m.extend_from_slice(data);
        if data.len() % 2 == 1 {
            m.push(b'\n');
        }
        m
    }

    fn deb(data_tar_xz: &[u8]) -> Vec<u8> {
        let mut d = AR_MAGIC.to_vec();
        d.extend(ar_member("debian-binary", b"2.0\n"));
        d.extend(ar_member("control.tar.xz", b"odd"));
        d.extend(ar_member("data.tar.xz", data_tar_xz));
        d
    }

    #[test]
    fn lists_members_with_padding() {
        let d = deb(b"xyz");
        let m = members(Cursor::new(&d)).unwrap();
        let names: Vec<_> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["debian-binary", "control.tar.xz", "data.tar.xz"]);
        let last = &m[2];
        assert_eq!(&d[last.offset as usize..][..last.size as usize], b"xyz");
    }

    #[test]
    fn rejects_other_files() {
        assert!(members(Cursor::new(b"PK\x03\x04 zip")).is_err());
    }

    #[test]
    fn unpacks_data_tar_xz() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        tar.append_data(&mut h, "./boot/vmlinuz-1", &b"hello"[..])
            .unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&tar.into_inner().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.deb");
        std::fs::write(&path, deb(&xz.finish().unwrap())).unwrap();
        let out = dir.path().join("root");
        unpack(&path, &out).unwrap();
        assert_eq!(std::fs::read(out.join("boot/vmlinuz-1")).unwrap(), b"hello");
    }
}
