//! Bdev URIs: `aio:///<path>[?blk_size=<b>]` and
//! `malloc:///<name>?size_mb=<n>|num_blocks=<n>[&blk_size=<b>]`, with the
//! parameters Mayastor's v0 URIs take (`uuid` on both).
//!
//! Parsing is strict so that every mistake is caught before anything is
//! touched, and each error says what was wrong and how to write it instead.
//! The `url` crate does the parsing; a few checks look at the raw text too,
//! because `url` silently resolves `.` and `..` segments (`malloc:///a/../b`
//! would otherwise become `malloc:///b`).

use std::collections::HashMap;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;
use url::Url;
use uuid::Uuid;

/// Longest URI accepted (Linux's `PATH_MAX`).
pub const MAX_URI_LEN: usize = super::limits::MAX_ARG_LEN;
/// Longest malloc bdev name (Linux's `NAME_MAX`: the name is a file name).
pub const MAX_MALLOC_NAME_LEN: usize = 255;
/// Largest malloc bdev, in MiB (1 TiB); the RAM actually free is checked at
/// create time as well.
pub const MAX_SIZE_MB: u64 = 1 << 20;
/// The block sizes `blk_size=` may ask for (Mayastor's: "must be one of 512
/// or 4096").
pub const BLK_SIZES: [u32; 2] = [512, 4096];
/// A malloc bdev's block size when its URI gives none (Mayastor's default).
pub const DEFAULT_BLK_SIZE: u32 = 512;

/// What a bdev URI says, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUri {
    /// The bdev's name: the URI without its query for `aio`
    /// (`aio:///dev/vdb`), the path's single segment for `malloc` (`m0`).
    pub name: String,
    /// Which backend and its parameters.
    pub kind: UriKind,
    /// The `uuid=` parameter, if given.
    pub uuid: Option<Uuid>,
    /// The `blk_size=` parameter, if given: one of [`BLK_SIZES`].
    pub blk_size: Option<u32>,
}

/// What a Create URI asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BdevSpec {
    /// The bdev's name (see [`ParsedUri::name`]).
    pub name: String,
    /// Backend and parameters.
    pub backend: Backend,
    /// The `uuid=` parameter, if given.
    pub uuid: Option<Uuid>,
}

/// The backend of a bdev, with the parameters its URI gave (kept so that
/// List shows the URI it was created with).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Backend {
    /// A block device or regular file.
    Aio {
        /// Absolute path.
        path: PathBuf,
        /// `blk_size=`, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blk_size: Option<u32>,
    },
    /// A RAM disk.
    Malloc {
        /// `size_mb=` or `num_blocks=`.
        #[serde(flatten)]
        size: MallocSize,
        /// `blk_size=`, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blk_size: Option<u32>,
    },
}

/// How big a malloc bdev is, in the URI's terms (exactly one is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MallocSize {
    /// `size_mb=`: MiB.
    SizeMb(u64),
    /// `num_blocks=`: blocks of the bdev's block size.
    NumBlocks(u64),
}

impl MallocSize {
    /// Bytes, for blocks of `blk_size` bytes.
    pub fn bytes(self, blk_size: u32) -> u64 {
        match self {
            MallocSize::SizeMb(mb) => mb << 20,
            MallocSize::NumBlocks(n) => n.saturating_mul(u64::from(blk_size)),
        }
    }
}

impl std::fmt::Display for MallocSize {
    /// As written in a URI: `size_mb=64`, `num_blocks=1000`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MallocSize::SizeMb(mb) => write!(f, "size_mb={mb}"),
            MallocSize::NumBlocks(n) => write!(f, "num_blocks={n}"),
        }
    }
}

/// The backend a URI names, with the size optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriKind {
    /// A block device or regular file.
    Aio {
        /// Absolute path, percent-decoded.
        path: PathBuf,
    },
    /// A RAM disk.
    Malloc {
        /// `size_mb=` or `num_blocks=`; required by Create, optional in
        /// Destroy.
        size: Option<MallocSize>,
    },
}

/// A bdev URI that cannot be used; every variant is gRPC `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// Nothing was given.
    #[error("the bdev URI is empty; give aio:///<path> or malloc:///<name>?size_mb=<n>")]
    Empty,
    /// Longer than [`MAX_URI_LEN`].
    #[error("the bdev URI is {len} bytes long; at most {MAX_URI_LEN} are accepted")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Not a URI at all.
    #[error(
        "`{uri}` is not a URI ({reason}); write it like aio:///dev/vdb or malloc:///m0?size_mb=64"
    )]
    Malformed {
        /// What was given.
        uri: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A scheme other than `aio` and `malloc`.
    #[error("unsupported scheme `{scheme}` in `{uri}`: this agent creates aio:///<path> (block device or file) and malloc:///<name>?size_mb=<n> (RAM disk)")]
    UnknownScheme {
        /// What was given.
        uri: String,
        /// Its scheme.
        scheme: String,
    },
    /// A host, user or port between `//` and the path.
    #[error("`{uri}` names a host (`{authority}`) but bdevs are local: write {scheme}:///<path> with three slashes")]
    Authority {
        /// What was given.
        uri: String,
        /// Its scheme.
        scheme: String,
        /// The part between `//` and the path.
        authority: String,
    },
    /// `aio:/dev/vdb` instead of `aio:///dev/vdb`.
    #[error(
        "`{uri}` lacks the `//` after `{scheme}:`; write {scheme}:///<path> with three slashes"
    )]
    NoSlashes {
        /// What was given.
        uri: String,
        /// Its scheme.
        scheme: String,
    },
    /// A `#fragment`.
    #[error("`{uri}` has a fragment (`#...`); remove it")]
    Fragment {
        /// What was given.
        uri: String,
    },
    /// A `.` or `..` path segment.
    #[error("`{uri}` contains a `.` or `..` path segment; give the path without them")]
    DotSegment {
        /// What was given.
        uri: String,
    },
    /// The path is not UTF-8 or holds a control character once decoded.
    #[error("the path in `{uri}` is not valid: {reason}")]
    BadPath {
        /// What was given.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `aio:///` with no file.
    #[error("`{uri}` names no file; give the device or file path, e.g. aio:///dev/vdb")]
    NoAioPath {
        /// What was given.
        uri: String,
    },
    /// `malloc:///?size_mb=1`.
    #[error("`{uri}` has no bdev name; write malloc:///<name>?size_mb=<n>, e.g. malloc:///m0?size_mb=64")]
    NoMallocName {
        /// What was given.
        uri: String,
    },
    /// A malloc name with `/` (also `%2F`).
    #[error("malloc bdev name `{name}` contains `/`; a malloc name is one word such as m0")]
    MallocNameSlash {
        /// The name.
        name: String,
    },
    /// A malloc name with a character that is not allowed.
    #[error("malloc bdev name `{name}` contains {ch:?}; use letters, digits, `.`, `_` and `-`, starting with a letter or digit")]
    MallocNameChar {
        /// The name.
        name: String,
        /// The first offending character.
        ch: char,
    },
    /// A malloc name longer than [`MAX_MALLOC_NAME_LEN`].
    #[error("malloc bdev name is {len} bytes long; at most {MAX_MALLOC_NAME_LEN} are accepted")]
    MallocNameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Create of a malloc bdev without `size_mb` or `num_blocks` (raised by
    /// Create).
    #[error("`{uri}` lacks size_mb; write malloc:///{name}?size_mb=<MiB>, e.g. size_mb=64, or give num_blocks=<blocks>")]
    MissingSizeMb {
        /// What was given.
        uri: String,
        /// The bdev name.
        name: String,
    },
    /// `size_mb` is not a whole number.
    #[error("size_mb=`{value}` is not a whole number of MiB; give e.g. size_mb=64")]
    BadSizeMb {
        /// The value given, escaped.
        value: String,
    },
    /// `size_mb=0`.
    #[error("size_mb=0: a malloc bdev needs at least 1 MiB")]
    ZeroSizeMb,
    /// `size_mb` above [`MAX_SIZE_MB`].
    #[error("size_mb={value} is more than the largest malloc bdev, {MAX_SIZE_MB} MiB (1 TiB)")]
    HugeSizeMb {
        /// The value given.
        value: u64,
    },
    /// `num_blocks` is not a whole number.
    #[error("num_blocks=`{value}` is not a whole number of blocks; give e.g. num_blocks=131072")]
    BadNumBlocks {
        /// The value given, escaped.
        value: String,
    },
    /// `num_blocks=0`.
    #[error("num_blocks=0: a malloc bdev needs at least one block")]
    ZeroNumBlocks,
    /// `num_blocks` × block size above [`MAX_SIZE_MB`].
    #[error("num_blocks={value} of {blk_size} bytes is more than the largest malloc bdev, {MAX_SIZE_MB} MiB (1 TiB)")]
    HugeNumBlocks {
        /// The value given.
        value: u64,
        /// The block size it counts.
        blk_size: u32,
    },
    /// Both `size_mb` and `num_blocks`.
    #[error("`{uri}` gives both size_mb and num_blocks; give one of them")]
    SizeAndBlocks {
        /// What was given.
        uri: String,
    },
    /// `blk_size` other than 512 or 4096.
    #[error("blk_size=`{value}` is not a block size this target offers; give blk_size=512 or blk_size=4096")]
    BadBlkSize {
        /// The value given, escaped.
        value: String,
    },
    /// `uuid` is not a UUID, or is the nil UUID.
    #[error(
        "uuid=`{value}` is not a usable UUID; give one like 0e1f5bd4-8f32-4b2a-9d5c-6c1c35f2b0a7"
    )]
    BadUuid {
        /// The value given, escaped.
        value: String,
    },
    /// The same parameter twice.
    #[error("parameter `{key}` is given more than once in `{uri}`")]
    DuplicateParam {
        /// What was given.
        uri: String,
        /// The parameter, escaped.
        key: String,
    },
    /// A parameter the scheme does not take.
    #[error("unknown parameter `{key}` for {scheme} bdevs; allowed: {allowed}")]
    UnknownParam {
        /// The scheme.
        scheme: &'static str,
        /// The parameter, escaped.
        key: String,
        /// The parameters the scheme takes.
        allowed: &'static str,
    },
}

/// Parses and validates a bdev URI. `size_mb` is optional here (Destroy
/// needs only the name); Create refuses a malloc URI without it.
pub fn parse(uri: &str) -> Result<ParsedUri, UriError> {
    if uri.is_empty() {
        return Err(UriError::Empty);
    }
    if uri.len() > MAX_URI_LEN {
        return Err(UriError::TooLong { len: uri.len() });
    }
    // The URL parser drops surrounding spaces and any tab or newline without
    // a word; refuse them instead so that what is used is what was written.
    if uri.trim() != uri || uri.chars().any(char::is_control) {
        return Err(UriError::Malformed {
            uri: uri.escape_debug().to_string(),
            reason: "it has spaces around it or a control character in it".to_string(),
        });
    }
    let url = Url::parse(uri).map_err(|e| UriError::Malformed {
        uri: uri.to_string(),
        reason: e.to_string(),
    })?;
    let scheme: &'static str = match url.scheme() {
        "aio" => "aio",
        "malloc" => "malloc",
        other => {
            return Err(UriError::UnknownScheme {
                uri: uri.to_string(),
                scheme: other.to_string(),
            })
        }
    };
    if url.fragment().is_some() {
        return Err(UriError::Fragment {
            uri: uri.to_string(),
        });
    }
    check_authority(uri, scheme, &url)?;
    if has_dot_segment(uri) {
        return Err(UriError::DotSegment {
            uri: uri.to_string(),
        });
    }
    let path = decode_path(uri, url.path())?;
    let mut params = query_params(uri, &url)?;
    let uuid = params
        .remove("uuid")
        .map(|v| match Uuid::parse_str(&v) {
            Ok(u) if !u.is_nil() => Ok(u),
            _ => Err(UriError::BadUuid {
                value: v.escape_debug().to_string(),
            }),
        })
        .transpose()?;
    let blk_size = params
        .remove("blk_size")
        .map(|v| parse_blk_size(&v))
        .transpose()?;
    let parsed = match scheme {
        "aio" => {
            reject_unknown(params, "aio", "blk_size, uuid")?;
            // `aio://` has an empty path, `aio:///` the root: neither names a file.
            if path.is_empty() || path == "/" {
                return Err(UriError::NoAioPath {
                    uri: uri.to_string(),
                });
            }
            ParsedUri {
                name: format!("aio://{}", url.path()),
                kind: UriKind::Aio {
                    path: PathBuf::from(path),
                },
                uuid,
                blk_size,
            }
        }
        _ => {
            let size_mb = params
                .remove("size_mb")
                .map(|v| parse_size(&v))
                .transpose()?;
            let num_blocks = params
                .remove("num_blocks")
                .map(|v| parse_num_blocks(&v, blk_size.unwrap_or(DEFAULT_BLK_SIZE)))
                .transpose()?;
            reject_unknown(params, "malloc", "size_mb, num_blocks, blk_size, uuid")?;
            let name = malloc_name(uri, &path)?;
            let size = match (size_mb, num_blocks) {
                (Some(_), Some(_)) => {
                    return Err(UriError::SizeAndBlocks {
                        uri: uri.to_string(),
                    })
                }
                (Some(mb), None) => Some(MallocSize::SizeMb(mb)),
                (None, Some(n)) => Some(MallocSize::NumBlocks(n)),
                (None, None) => None,
            };
            ParsedUri {
                name,
                kind: UriKind::Malloc { size },
                uuid,
                blk_size,
            }
        }
    };
    Ok(parsed)
}

/// Parses a Create URI: [`parse`], and a malloc URI must give `size_mb`
/// or `num_blocks`.
pub fn parse_create(uri: &str) -> Result<BdevSpec, UriError> {
    let ParsedUri {
        name,
        kind,
        uuid,
        blk_size,
    } = parse(uri)?;
    let backend = match kind {
        UriKind::Aio { path } => Backend::Aio { path, blk_size },
        UriKind::Malloc { size: Some(size) } => Backend::Malloc { size, blk_size },
        UriKind::Malloc { size: None } => {
            return Err(UriError::MissingSizeMb {
                uri: uri.to_string(),
                name,
            })
        }
    };
    Ok(BdevSpec {
        name,
        backend,
        uuid,
    })
}

/// The URI a bdev was created with, without uuid (Mayastor's alias).
pub fn alias(name: &str, backend: &Backend) -> String {
    let query = match backend {
        Backend::Aio { blk_size: None, .. } => return name.to_string(),
        Backend::Aio {
            blk_size: Some(b), ..
        } => return format!("{name}?blk_size={b}"),
        Backend::Malloc { size, blk_size } => match blk_size {
            Some(b) => format!("{size}&blk_size={b}"),
            None => size.to_string(),
        },
    };
    format!("malloc:///{name}?{query}")
}

/// The URI a bdev is listed with (Mayastor's `uri` field): its alias with
/// the uuid it was given, so that creating from it yields the same bdev.
pub fn canonical(name: &str, backend: &Backend, uuid: Uuid) -> String {
    let alias = alias(name, backend);
    let sep = if alias.contains('?') { '&' } else { '?' };
    format!("{alias}{sep}uuid={uuid}")
}

/// The aio bdev name for a file path (recovering a share from configfs).
pub fn aio_name(path: &std::path::Path) -> Option<String> {
    let mut url = Url::parse("aio:///").ok()?;
    // `set_path` leaves `%` as it is, but `parse` decodes it: a file named
    // `%41` would be named as the file `A`.
    url.set_path(&path.to_str()?.replace('%', "%25"));
    Some(format!("aio://{}", url.path()))
}

fn check_authority(uri: &str, scheme: &str, url: &Url) -> Result<(), UriError> {
    let rest = &uri[scheme.len() + 1..];
    let Some(after) = rest.strip_prefix("//") else {
        return Err(UriError::NoSlashes {
            uri: uri.to_string(),
            scheme: scheme.to_string(),
        });
    };
    let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
    if !authority.is_empty() || url.port().is_some() || !url.username().is_empty() {
        return Err(UriError::Authority {
            uri: uri.to_string(),
            scheme: scheme.to_string(),
            authority: authority.to_string(),
        });
    }
    Ok(())
}

/// Whether the raw path has a `.` or `..` segment (also percent-encoded),
/// which the URL parser would resolve away without telling.
fn has_dot_segment(uri: &str) -> bool {
    let path = uri.split(['?', '#']).next().unwrap_or_default();
    path.split('/').skip(1).any(|segment| {
        let decoded = percent_decode_str(segment).decode_utf8_lossy();
        decoded == "." || decoded == ".."
    })
}

fn decode_path(uri: &str, encoded: &str) -> Result<String, UriError> {
    let path = percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| UriError::BadPath {
            uri: uri.to_string(),
            reason: "it is not UTF-8 once percent-decoded",
        })?;
    if path.chars().any(char::is_control) {
        return Err(UriError::BadPath {
            uri: uri.to_string(),
            reason: "it contains a control character (such as a newline)",
        });
    }
    Ok(path.into_owned())
}

fn query_params(uri: &str, url: &Url) -> Result<HashMap<String, String>, UriError> {
    let mut params = HashMap::new();
    for (key, value) in url.query_pairs() {
        let key = key.into_owned();
        if params.insert(key.clone(), value.into_owned()).is_some() {
            return Err(UriError::DuplicateParam {
                uri: uri.to_string(),
                key: key.escape_debug().to_string(),
            });
        }
    }
    Ok(params)
}

fn reject_unknown(
    params: HashMap<String, String>,
    scheme: &'static str,
    allowed: &'static str,
) -> Result<(), UriError> {
    let mut unknown: Vec<String> = params.into_keys().collect();
    unknown.sort();
    match unknown.into_iter().next() {
        Some(key) => Err(UriError::UnknownParam {
            scheme,
            key: key.escape_debug().to_string(),
            allowed,
        }),
        None => Ok(()),
    }
}

fn parse_size(value: &str) -> Result<u64, UriError> {
    let bad = || UriError::BadSizeMb {
        value: value.escape_debug().to_string(),
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // All digits: the only way to fail now is overflow, which is "huge".
    let n: u64 = value.parse().unwrap_or(u64::MAX);
    match n {
        0 => Err(UriError::ZeroSizeMb),
        n if n > MAX_SIZE_MB => Err(UriError::HugeSizeMb { value: n }),
        n => Ok(n),
    }
}

fn parse_num_blocks(value: &str, blk_size: u32) -> Result<u64, UriError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UriError::BadNumBlocks {
            value: value.escape_debug().to_string(),
        });
    }
    // All digits: the only way to fail now is overflow, which is "huge".
    let n: u64 = value.parse().unwrap_or(u64::MAX);
    match n {
        0 => Err(UriError::ZeroNumBlocks),
        n if n.saturating_mul(u64::from(blk_size)) > MAX_SIZE_MB << 20 => {
            Err(UriError::HugeNumBlocks { value: n, blk_size })
        }
        n => Ok(n),
    }
}

fn parse_blk_size(value: &str) -> Result<u32, UriError> {
    Some(value)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .filter(|b| BLK_SIZES.contains(b))
        .ok_or_else(|| UriError::BadBlkSize {
            value: value.escape_debug().to_string(),
        })
}

fn malloc_name(uri: &str, path: &str) -> Result<String, UriError> {
    let name = path.strip_prefix('/').unwrap_or(path);
    if name.is_empty() {
        return Err(UriError::NoMallocName {
            uri: uri.to_string(),
        });
    }
    if name.len() > MAX_MALLOC_NAME_LEN {
        return Err(UriError::MallocNameTooLong { len: name.len() });
    }
    if name.contains('/') {
        return Err(UriError::MallocNameSlash {
            name: name.to_string(),
        });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let bad = name
        .chars()
        .enumerate()
        .find(|&(i, c)| !allowed(c) || (i == 0 && !c.is_ascii_alphanumeric()));
    if let Some((_, ch)) = bad {
        return Err(UriError::MallocNameChar {
            name: name.to_string(),
            ch,
        });
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(uri: &str) -> ParsedUri {
        parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    fn err(uri: &str) -> UriError {
        match parse(uri) {
            Ok(p) => panic!("{uri} was accepted as {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn aio_name_is_the_uri_without_query() {
        let p = ok("aio:///dev/vdb");
        assert_eq!(p.name, "aio:///dev/vdb");
        assert_eq!(
            p.kind,
            UriKind::Aio {
                path: "/dev/vdb".into()
            }
        );
        assert_eq!(p.uuid, None);
        let u = "0e1f5bd4-8f32-4b2a-9d5c-6c1c35f2b0a7";
        let p = ok(&format!("aio:///dev/vdb?uuid={u}"));
        assert_eq!(p.name, "aio:///dev/vdb");
        assert_eq!(p.uuid, Some(Uuid::parse_str(u).unwrap()));
    }

    #[test]
    fn aio_paths_are_percent_decoded() {
        let p = ok("aio:///tmp/a%20b");
        assert_eq!(
            p.kind,
            UriKind::Aio {
                path: "/tmp/a b".into()
            }
        );
        assert_eq!(p.name, "aio:///tmp/a%20b");
        assert_eq!(aio_name(std::path::Path::new("/tmp/a b")).unwrap(), p.name);
        assert_eq!(
            aio_name(std::path::Path::new("/dev/vdb")).unwrap(),
            "aio:///dev/vdb"
        );
        // A `%` in a file name is the file's, not an escape.
        let name = aio_name(std::path::Path::new("/tmp/%41%A0")).unwrap();
        assert_eq!(name, "aio:///tmp/%2541%25A0");
        assert_eq!(
            ok(&name).kind,
            UriKind::Aio {
                path: "/tmp/%41%A0".into()
            }
        );
    }

    #[test]
    fn malloc_name_and_size() {
        let p = ok("malloc:///m0?size_mb=64");
        assert_eq!(p.name, "m0");
        assert_eq!(
            p.kind,
            UriKind::Malloc {
                size: Some(MallocSize::SizeMb(64))
            }
        );
        assert_eq!(p.blk_size, None);
        assert_eq!(ok("malloc:///m0").kind, UriKind::Malloc { size: None });
        let p = ok("malloc:///m0?num_blocks=1000&blk_size=4096");
        assert_eq!(
            p.kind,
            UriKind::Malloc {
                size: Some(MallocSize::NumBlocks(1000))
            }
        );
        assert_eq!(p.blk_size, Some(4096));
        assert_eq!(MallocSize::NumBlocks(1000).bytes(4096), 4_096_000);
        assert_eq!(MallocSize::SizeMb(64).bytes(512), 64 << 20);
    }

    /// The URIs Mayastor's own Python tests and fixtures send.
    #[test]
    fn upstream_client_uris_are_accepted() {
        let u = "0e1f5bd4-8f32-4b2a-9d5c-6c1c35f2b0a7";
        for (uri, blk) in [
            ("malloc:///malloc0?size_mb=64&blk_size=4096", Some(4096)),
            (
                &format!("malloc:///m?size_mb=64&uuid={u}&blk_size=4096"),
                Some(4096),
            ),
            ("aio:///tmp/aio-file.img?blk_size=4096", Some(4096)),
            ("malloc:///m?num_blocks=131072", None),
            ("aio:///dev/vdb?blk_size=512", Some(512)),
        ] {
            parse_create(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(ok(uri).blk_size, blk, "{uri}");
        }
        assert_eq!(ok("aio:///tmp/f?blk_size=4096").name, "aio:///tmp/f");
    }

    #[test]
    fn canonical_uris_parse_back_to_the_same_bdev() {
        let u = Uuid::new_v4();
        for uri in [
            "aio:///dev/vdb",
            "aio:///tmp/f?blk_size=4096",
            "malloc:///m0?size_mb=8",
            "malloc:///m0?size_mb=8&blk_size=512",
            "malloc:///m0?num_blocks=100&blk_size=4096",
        ] {
            let spec = parse_create(uri).unwrap();
            assert_eq!(alias(&spec.name, &spec.backend), uri);
            let again = parse_create(&canonical(&spec.name, &spec.backend, u)).unwrap();
            assert_eq!(again.name, spec.name);
            assert_eq!(again.backend, spec.backend);
            assert_eq!(again.uuid, Some(u));
        }
    }

    #[test]
    fn create_needs_a_size() {
        let msg = parse_create("malloc:///m0").unwrap_err().to_string();
        assert!(msg.contains("size_mb=<MiB>"), "{msg}");
        assert_eq!(
            parse_create("malloc:///m0?size_mb=3").unwrap().backend,
            Backend::Malloc {
                size: MallocSize::SizeMb(3),
                blk_size: None
            }
        );
    }

    #[test]
    fn block_size_and_block_count_errors() {
        for v in ["1024", "0", "abc", "", "+512", "4096.0", "65536"] {
            assert!(
                matches!(
                    err(&format!("malloc:///m0?size_mb=1&blk_size={v}")),
                    UriError::BadBlkSize { .. }
                ),
                "{v}"
            );
            assert!(
                matches!(
                    err(&format!("aio:///dev/vdb?blk_size={v}")),
                    UriError::BadBlkSize { .. }
                ),
                "{v}"
            );
        }
        for v in ["abc", "-1", "", "1.5"] {
            assert!(
                matches!(
                    err(&format!("malloc:///m0?num_blocks={v}")),
                    UriError::BadNumBlocks { .. }
                ),
                "{v}"
            );
        }
        assert_eq!(err("malloc:///m0?num_blocks=0"), UriError::ZeroNumBlocks);
        // 1 TiB is the cap, counted in the block size given.
        assert!(ok("malloc:///m0?num_blocks=2147483648").blk_size.is_none());
        assert!(matches!(
            err("malloc:///m0?num_blocks=2147483649"),
            UriError::HugeNumBlocks { blk_size: 512, .. }
        ));
        assert!(matches!(
            err("malloc:///m0?num_blocks=268435457&blk_size=4096"),
            UriError::HugeNumBlocks { blk_size: 4096, .. }
        ));
        assert!(matches!(
            err("malloc:///m0?size_mb=1&num_blocks=8"),
            UriError::SizeAndBlocks { .. }
        ));
        let msg = err("malloc:///m0?size_mb=1&blk_size=1024").to_string();
        assert!(
            msg.contains("`1024`") && msg.contains("512") && msg.contains("4096"),
            "{msg}"
        );
    }

    #[test]
    fn scheme_errors() {
        assert_eq!(err(""), UriError::Empty);
        assert!(
            matches!(err("nvmf://1.2.3.4:8430/nqn"), UriError::UnknownScheme { scheme, .. } if scheme == "nvmf")
        );
        assert!(matches!(err("bdev:///x"), UriError::UnknownScheme { .. }));
        assert!(matches!(err("/dev/vdb"), UriError::Malformed { .. }));
        assert!(matches!(err(" aio:///dev/vdb"), UriError::Malformed { .. }));
        assert!(matches!(
            err("aio:///dev/v\ndb"),
            UriError::Malformed { .. }
        ));
        assert!(matches!(err("m0"), UriError::Malformed { .. }));
        let long = format!("aio:///{}", "a".repeat(MAX_URI_LEN));
        assert!(matches!(err(&long), UriError::TooLong { .. }));
    }

    #[test]
    fn authority_and_slash_errors() {
        assert!(
            matches!(err("aio://dev/vdb"), UriError::Authority { authority, .. } if authority == "dev")
        );
        assert!(matches!(
            err("aio://host:1/dev/vdb"),
            UriError::Authority { .. }
        ));
        assert!(matches!(
            err("aio://u@h/dev/vdb"),
            UriError::Authority { .. }
        ));
        assert!(matches!(err("aio:/dev/vdb"), UriError::NoSlashes { .. }));
        assert!(matches!(
            err("malloc:m0?size_mb=1"),
            UriError::NoSlashes { .. }
        ));
        assert!(matches!(err("aio:///dev/vdb#x"), UriError::Fragment { .. }));
        assert!(matches!(err("aio://"), UriError::NoAioPath { .. }));
        assert!(matches!(err("aio:///"), UriError::NoAioPath { .. }));
    }

    #[test]
    fn dot_segments_are_refused_not_resolved() {
        for uri in [
            "malloc:///..?size_mb=1",
            "malloc:///.?size_mb=1",
            "malloc:///a/../b?size_mb=1",
            "malloc:///%2e%2e?size_mb=1",
            "aio:///dev/../etc/passwd",
            "aio:///dev/./vdb",
        ] {
            assert!(matches!(err(uri), UriError::DotSegment { .. }), "{uri}");
        }
        // `..` inside a name is just characters.
        assert_eq!(ok("malloc:///a..b?size_mb=1").name, "a..b");
    }

    #[test]
    fn malloc_name_errors() {
        assert!(matches!(
            err("malloc:///?size_mb=1"),
            UriError::NoMallocName { .. }
        ));
        assert!(matches!(
            err("malloc:///a/b?size_mb=1"),
            UriError::MallocNameSlash { .. }
        ));
        assert!(matches!(
            err("malloc:///a%2Fb?size_mb=1"),
            UriError::MallocNameSlash { .. }
        ));
        assert!(matches!(
            err("malloc:///a%20b?size_mb=1"),
            UriError::MallocNameChar { ch: ' ', .. }
        ));
        assert!(matches!(
            err("malloc:///-x?size_mb=1"),
            UriError::MallocNameChar { ch: '-', .. }
        ));
        assert!(matches!(
            err("malloc:///a%0Ab?size_mb=1"),
            UriError::BadPath { .. }
        ));
        let long = format!(
            "malloc:///{}?size_mb=1",
            "m".repeat(MAX_MALLOC_NAME_LEN + 1)
        );
        assert!(matches!(err(&long), UriError::MallocNameTooLong { .. }));
        let max = format!("malloc:///{}?size_mb=1", "m".repeat(MAX_MALLOC_NAME_LEN));
        assert_eq!(ok(&max).name.len(), MAX_MALLOC_NAME_LEN);
    }

    #[test]
    fn size_errors() {
        for v in ["abc", "-1", "1.5", "", "0x10", " 1", "1e3"] {
            assert!(
                matches!(
                    err(&format!("malloc:///m0?size_mb={v}")),
                    UriError::BadSizeMb { .. }
                ),
                "{v}"
            );
        }
        assert_eq!(err("malloc:///m0?size_mb=0"), UriError::ZeroSizeMb);
        assert_eq!(err("malloc:///m0?size_mb=00"), UriError::ZeroSizeMb);
        assert!(matches!(
            err("malloc:///m0?size_mb=1048577"),
            UriError::HugeSizeMb { .. }
        ));
        assert!(matches!(
            err("malloc:///m0?size_mb=99999999999999999999999"),
            UriError::HugeSizeMb { .. }
        ));
        assert_eq!(
            ok("malloc:///m0?size_mb=1048576").kind,
            UriKind::Malloc {
                size: Some(MallocSize::SizeMb(MAX_SIZE_MB))
            }
        );
    }

    #[test]
    fn parameter_errors() {
        assert!(
            matches!(err("aio:///dev/vdb?size_mb=1"), UriError::UnknownParam { key, .. } if key == "size_mb")
        );
        assert!(matches!(
            err("aio:///dev/vdb?num_blocks=512"),
            UriError::UnknownParam { .. }
        ));
        assert!(
            matches!(err("malloc:///m0?size_mb=1&foo=2"), UriError::UnknownParam { key, .. } if key == "foo")
        );
        assert!(matches!(
            err("malloc:///m0?size_mb=1&size_mb=2"),
            UriError::DuplicateParam { .. }
        ));
        assert!(matches!(
            err("aio:///dev/vdb?uuid=nope"),
            UriError::BadUuid { .. }
        ));
        assert!(matches!(
            err("aio:///dev/vdb?uuid=00000000-0000-0000-0000-000000000000"),
            UriError::BadUuid { .. }
        ));
        // Percent-decoded values and keys are shown escaped.
        for uri in [
            "malloc:///m0?size_mb=%0A",
            "aio:///dev/vdb?uuid=%1B[2J",
            "aio:///dev/vdb?%0D=1",
            "malloc:///m0?size_mb=1&%07=1&%07=2",
        ] {
            let msg = err(uri).to_string();
            assert!(!msg.chars().any(char::is_control), "{uri}: {msg:?}");
        }
    }

    #[test]
    fn messages_name_the_input_and_the_fix() {
        let msg = err("aio://dev/vdb").to_string();
        assert!(
            msg.contains("aio://dev/vdb") && msg.contains("three slashes"),
            "{msg}"
        );
        let msg = err("foo:///x").to_string();
        assert!(
            msg.contains("foo") && msg.contains("aio:///<path>"),
            "{msg}"
        );
    }

    /// Properties over generated URIs (see `crate::props`).
    mod props {
        use proptest::prelude::*;
        use proptest::sample::select;
        use tonic::Code;

        use super::super::*;
        use crate::agent::limits;
        use crate::props::{assert_clean, char_any, config, mutated, text, uuid, MAX_MESSAGE_LEN};

        /// What real clients send (Mayastor's Python tests and fixtures,
        /// `mayastor-client`, this project's cases): checked first, and
        /// mangled into near misses.
        const SEEDS: &[&str] = &[
            "aio:///dev/vdb",
            "aio:///dev/vdb?blk_size=512",
            "aio:///tmp/aio-file.img?blk_size=4096",
            "malloc:///malloc0?size_mb=64&blk_size=4096",
            "malloc:///m?size_mb=64&uuid=0e1f5bd4-8f32-4b2a-9d5c-6c1c35f2b0a7&blk_size=4096",
            "malloc:///m?num_blocks=131072",
            "malloc:///m0?size_mb=64",
        ];

        /// A URI put together from the grammar's parts, right and wrong, so
        /// that every check of the parser is reached.
        fn near_uri() -> impl Strategy<Value = String> {
            // Mostly right, so that the checks after the scheme's are reached.
            let scheme = prop_oneof![
                4 => select(&["aio", "malloc"][..]),
                1 => select(&["AIO", "Malloc", "nvmf", "bdev", ""][..]),
            ];
            let sep = prop_oneof![
                4 => Just(":///"),
                1 => select(&["://", ":/", ":", "://h", "://u@", "://:1", "://[::1]"][..]),
            ];
            let segment = prop_oneof![
                "[a-zA-Z0-9._-]{1,12}",
                select(
                    &[".", "..", "%2e", "%2E%2e", "%2F", "%00", "%0a", "%ff", "%", "%zz", "dev"][..]
                )
                .prop_map(String::from),
                text(6),
            ];
            let path = proptest::collection::vec(segment, 0..4).prop_map(|s| s.join("/"));
            let key = select(
                &[
                    "size_mb",
                    "num_blocks",
                    "blk_size",
                    "uuid",
                    "foo",
                    "",
                    "size%5Fmb",
                    "%0a",
                ][..],
            );
            let value = prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                (0..=3 * MAX_SIZE_MB).prop_map(|n| n.to_string()),
                select(
                    &[
                        "512",
                        "4096",
                        "0",
                        "00",
                        "",
                        "%0a",
                        "%1b[31m",
                        "99999999999999999999999"
                    ][..]
                )
                .prop_map(String::from),
                uuid().prop_map(|u| u.to_string()),
                text(8),
            ];
            let query = proptest::collection::vec((key, value), 0..4).prop_map(|kv| {
                let pairs: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("?{}", pairs.join("&"))
            });
            let tail = select(&["", "?", "#", "#x"][..]);
            (scheme, sep, path, prop::option::of(query), tail)
                .prop_map(|(s, sep, p, q, t)| format!("{s}{sep}{p}{}{t}", q.unwrap_or_default()))
        }

        /// Any input is either a bdev whose listed URI creates the same bdev
        /// again, or an error whose message is one clean line once the
        /// agent caps it.
        fn check(uri: &str) {
            let parsed = parse(uri);
            match parse_create(uri) {
                Ok(spec) => {
                    let p = parsed.expect("Create accepted what parse refused");
                    assert_eq!((&p.name, p.uuid), (&spec.name, spec.uuid));
                    let u = spec.uuid.unwrap_or(Uuid::from_u128(1));
                    for again in [
                        canonical(&spec.name, &spec.backend, u),
                        alias(&spec.name, &spec.backend),
                    ] {
                        let back = parse_create(&again)
                            .unwrap_or_else(|e| panic!("{uri} lists as {again}, refused: {e}"));
                        assert_eq!(
                            (&back.name, &back.backend),
                            (&spec.name, &spec.backend),
                            "{again}"
                        );
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert_clean(&msg, MAX_URI_LEN * 2);
                    let status = limits::status(Code::InvalidArgument, msg);
                    assert_clean(status.message(), MAX_MESSAGE_LEN);
                }
            }
        }

        #[test]
        fn seeds_are_accepted() {
            for uri in SEEDS {
                parse_create(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
                check(uri);
            }
        }

        /// A path segment a file may have (no `/`, no control character,
        /// not `.` or `..`).
        fn file_name() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                char_any().prop_filter("not / or control", |c| *c != '/' && !c.is_control()),
                1..12,
            )
            .prop_map(|c| c.into_iter().collect::<String>())
            .prop_filter("not a dot segment", |s| s != "." && s != "..")
        }

        /// A malloc bdev as a URI gives it: name, size, block size and uuid.
        fn malloc_bdev() -> impl Strategy<Value = (String, MallocSize, Option<u32>, Option<Uuid>)> {
            let name = "[a-zA-Z0-9][a-zA-Z0-9._-]{0,30}";
            let size = prop::option::of(select(&BLK_SIZES[..])).prop_flat_map(|blk| {
                let most = (MAX_SIZE_MB << 20) / u64::from(blk.unwrap_or(DEFAULT_BLK_SIZE));
                let size = prop_oneof![
                    (1..=MAX_SIZE_MB).prop_map(MallocSize::SizeMb),
                    (1..=most).prop_map(MallocSize::NumBlocks),
                ];
                (size, Just(blk))
            });
            (name, size, prop::option::of(uuid())).prop_map(|(n, (s, b), u)| (n, s, b, u))
        }

        /// `s` with the characters that `encode` picks percent-encoded.
        fn percent_encoded(s: &str, encode: &[bool]) -> String {
            s.chars()
                .zip(encode.iter().cycle())
                .map(|(c, &e)| {
                    if e {
                        format!("%{:02X}", c as u32)
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        }

        proptest! {
            #![proptest_config(config(512))]

            #[test]
            fn any_input_is_a_bdev_or_a_clean_error(
                uri in prop_oneof![text(64), near_uri(), select(SEEDS).prop_flat_map(mutated)]
            ) {
                check(&uri);
            }

            #[test]
            fn malloc_uris_give_what_they_say(
                (name, size, blk_size, uuid) in malloc_bdev(),
                encode in proptest::collection::vec(any::<bool>(), 1..8),
                order in Just([0, 1, 2]).prop_shuffle(),
            ) {
                let params = [
                    Some(size.to_string()),
                    blk_size.map(|b| format!("blk_size={b}")),
                    uuid.map(|u| format!("uuid={u}")),
                ];
                let query: Vec<&str> = order.iter().filter_map(|&i| params[i].as_deref()).collect();
                let uri = format!("malloc:///{}?{}", percent_encoded(&name, &encode), query.join("&"));
                let spec = parse_create(&uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
                let backend = Backend::Malloc { size, blk_size };
                prop_assert_eq!(spec, BdevSpec { name: name.clone(), backend: backend.clone(), uuid });
                prop_assert_eq!(parse_create(&alias(&name, &backend)).map(|s| s.backend), Ok(backend));
            }

            #[test]
            fn aio_names_of_files_give_the_file(
                segments in proptest::collection::vec(file_name(), 1..4)
            ) {
                let path = format!("/{}", segments.join("/"));
                let name = aio_name(std::path::Path::new(&path)).expect("a UTF-8 path has a name");
                let spec = parse_create(&name).unwrap_or_else(|e| panic!("{path:?} as {name}: {e}"));
                prop_assert_eq!(&spec.name, &name);
                prop_assert_eq!(spec.backend, Backend::Aio { path: path.into(), blk_size: None });
            }

            #[test]
            fn sizes_are_held_to_their_bounds(
                n in prop_oneof![any::<u64>(), 0..=MAX_SIZE_MB + 1, 0..=(MAX_SIZE_MB << 20) / 512 + 1],
                blk in select(&BLK_SIZES[..]),
            ) {
                let mb = parse(&format!("malloc:///m0?size_mb={n}"));
                prop_assert_eq!(mb.is_ok(), (1..=MAX_SIZE_MB).contains(&n));
                let blocks = parse(&format!("malloc:///m0?num_blocks={n}&blk_size={blk}"));
                let bytes = n.checked_mul(u64::from(blk));
                prop_assert_eq!(blocks.is_ok(), n > 0 && bytes.is_some_and(|b| b <= MAX_SIZE_MB << 20));
            }
        }
    }
}
