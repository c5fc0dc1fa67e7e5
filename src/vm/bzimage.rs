//! Extracting the uncompressed `vmlinux` ELF from a bzImage.
//!
//! QEMU loads an ELF kernel carrying a PVH note directly (with qboot), which
//! under TCG is much faster than letting the guest decompress a bzImage.

use std::io::Read;

use super::VmError;

/// Offsets in the x86 boot protocol's setup header.
const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC: usize = 0x202;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// Where the compressed kernel lies inside a bzImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// Byte offset of the payload from the start of the file.
    pub offset: usize,
    /// Length in bytes.
    pub length: usize,
}

fn le32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at + 4)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Locates the compressed payload using the setup header.
pub fn payload(image: &[u8]) -> Result<Payload, VmError> {
    let bad = |why: &str| VmError::Kernel(format!("not a bzImage: {why}"));
    if image.get(HEADER_MAGIC..HEADER_MAGIC + 4) != Some(b"HdrS") {
        return Err(bad("no `HdrS` setup header at 0x202"));
    }
    // A setup_sects of 0 means 4, as the boot protocol says.
    let sects = match image.get(SETUP_SECTS).copied().unwrap_or(0) {
        0 => 4,
        n => usize::from(n),
    };
    let setup_len = (sects + 1) * 512;
    let rel = le32(image, PAYLOAD_OFFSET).ok_or_else(|| bad("truncated header"))?;
    let length = le32(image, PAYLOAD_LENGTH).ok_or_else(|| bad("truncated header"))?;
    let offset = setup_len + rel as usize;
    let length = length as usize;
    if offset
        .checked_add(length)
        .is_none_or(|end| end > image.len())
    {
        return Err(bad("payload lies beyond the end of the file"));
    }
    Ok(Payload { offset, length })
}

/// Returns the uncompressed ELF kernel held in `image`.
///
/// An image that already is an ELF file is returned as it is; only xz
/// payloads (Debian's `CONFIG_KERNEL_XZ`) are supported otherwise.
pub fn vmlinux(image: &[u8]) -> Result<Vec<u8>, VmError> {
    if image.starts_with(ELF_MAGIC) {
        return Ok(image.to_vec());
    }
    let p = payload(image)?;
    let data = &image[p.offset..p.offset + p.length];
    if !data.starts_with(XZ_MAGIC) {
        return Err(VmError::Kernel(format!(
            "the bzImage payload is not xz-compressed (starts with {:02x?}); pass an \
             uncompressed vmlinux with --kernel",
            &data[..data.len().min(6)]
        )));
    }
    let mut out = Vec::with_capacity(data.len() * 4);
    // The kernel appends the uncompressed size after the xz stream, so read
    // a single stream and ignore what follows it.
    liblzma::read::XzDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| VmError::Kernel(format!("cannot decompress the bzImage payload: {e}")))?;
    if !out.starts_with(ELF_MAGIC) {
        return Err(VmError::Kernel(
            "the decompressed bzImage payload is not an ELF file".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A synthetic bzImage: `sects` setup sectors, then `payload`.
    fn image(sects: u8, payload: &[u8]) -> Vec<u8> {
        let setup = (usize::from(if sects == 0 { 4 } else { sects }) + 1) * 512;
        let mut img = vec![0u8; setup];
        img[SETUP_SECTS] = sects;
        img[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        img[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&16u32.to_le_bytes());
        img[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img.extend_from_slice(&[0xaa; 16]);
        img.extend_from_slice(payload);
        img.extend_from_slice(&[0, 0, 0, 0]);
        img
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn finds_the_payload_after_the_setup_sectors() {
        let img = image(27, b"abc");
        assert_eq!(
            payload(&img).unwrap(),
            Payload {
                offset: 28 * 512 + 16,
                length: 3
            }
        );
        // setup_sects 0 means 4.
        assert_eq!(payload(&image(0, b"x")).unwrap().offset, 5 * 512 + 16);
    }

    #[test]
    fn decompresses_an_xz_payload_to_elf() {
        let elf = b"\x7fELF and the rest of a kernel".repeat(100);
        assert_eq!(vmlinux(&image(30, &xz(&elf))).unwrap(), elf);
    }

    #[test]
    fn an_elf_file_is_returned_unchanged() {
        assert_eq!(vmlinux(b"\x7fELFxyz").unwrap(), b"\x7fELFxyz");
    }

    #[test]
    fn rejects_what_is_not_a_bzimage() {
        let err = vmlinux(&[0u8; 4096]).unwrap_err().to_string();
        assert!(err.contains("HdrS"), "{err}");
        let mut img = image(4, b"abc");
        img.truncate(5 * 512 + 8);
        assert!(payload(&img).unwrap_err().to_string().contains("beyond"));
        let err = vmlinux(&image(4, b"gzip")).unwrap_err().to_string();
        assert!(err.contains("not xz"), "{err}");
    }
}
