//! The shared secret of `--token-file`: an agent given one answers every
//! call that lacks `authorization: Bearer <token>` with `UNAUTHENTICATED`,
//! and the clients ([`crate::client`]) send it.
//!
//! The token travels in clear text, as everything on the agent's port does
//! (there is no TLS): it keeps other local users and stray hosts out, not
//! an eavesdropper on the link.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Status};

/// The metadata key the token travels in.
const HEADER: &str = "authorization";

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file cannot be read.
    #[error("cannot read the token file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no token, or an unusable one.
    #[error("the token file {} {problem}; put one line of 1 to {MAX_TOKEN_LEN} printable ASCII characters in it, e.g. `head -c 32 /dev/urandom | base64 > FILE`", .path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        problem: &'static str,
    },
    /// Other users could read the agent's secret.
    #[error("the token file {} is readable by other users (mode {mode:o}); run `chmod o-rwx {}`", .path.display(), .path.display())]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// A bearer token, read from a file.
#[derive(Clone)]
pub struct Token {
    header: MetadataValue<Ascii>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads the token from `path`: its content without surrounding
    /// whitespace, printable ASCII only.
    pub fn read(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |problem| TokenError::Bad {
            path: path.to_path_buf(),
            problem,
        };
        let token = text.trim_ascii();
        if token.is_empty() {
            return Err(bad("is empty"));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad("is too long"));
        }
        if !token.iter().all(u8::is_ascii_graphic) {
            return Err(bad("holds characters other than printable ASCII"));
        }
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(token);
        let header = MetadataValue::try_from(value.as_slice())
            .map_err(|_| bad("holds characters other than printable ASCII"))?;
        Ok(Self { header })
    }

    /// [`Token::read`] for the agent, which also refuses a file that other
    /// users may read: it is the secret that guards the target.
    pub fn read_private(path: &Path) -> Result<Self, TokenError> {
        let meta = std::fs::metadata(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(TokenError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        Self::read(path)
    }

    /// Adds the token to a request's metadata.
    pub fn attach<T>(&self, request: &mut Request<T>) {
        request.metadata_mut().insert(HEADER, self.header.clone());
    }

    /// Whether `request` carries this token, compared in constant time so
    /// that the answer's timing tells nothing about the token.
    pub fn admits<T>(&self, request: &Request<T>) -> bool {
        let want = self.header.as_bytes();
        request.metadata().get(HEADER).is_some_and(|got| {
            let got = got.as_bytes();
            got.len() == want.len()
                && got.iter().zip(want).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0
        })
    }

    /// `UNAUTHENTICATED`, naming what the call lacked.
    pub fn refusal<T>(request: &Request<T>) -> Status {
        let what = if request.metadata().get(HEADER).is_some() {
            "a wrong token"
        } else {
            "no token"
        };
        Status::unauthenticated(format!(
            "this agent requires `authorization: Bearer <token>` (its --token-file) and the call had {what}; nvmfcheck's commands send it with --token-file FILE"
        ))
    }
}

/// A client-side interceptor that sends the token, if there is one.
#[derive(Debug, Clone, Default)]
pub struct SendToken(pub Option<Token>);

impl tonic::service::Interceptor for SendToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            token.attach(&mut request);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_token_admits_itself_and_nothing_else() {
        let (_d, path) = file("s3cret\n", 0o600);
        let token = Token::read_private(&path).unwrap();
        let mut with = Request::new(());
        token.attach(&mut with);
        assert!(token.admits(&with));
        assert!(!token.admits(&Request::new(())));
        let (_d2, other) = file("s3cres", 0o600);
        let mut wrong = Request::new(());
        Token::read(&other).unwrap().attach(&mut wrong);
        assert!(!token.admits(&wrong));
        assert!(Token::refusal(&wrong).message().contains("a wrong token"));
        let refused = Token::refusal(&Request::new(()));
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(refused.message().contains("no token"), "{refused:?}");
    }

    #[test]
    fn unusable_and_exposed_files_are_refused_with_the_fix() {
        for (content, problem) in [
            ("  \n", "is empty"),
            ("two words", "printable ASCII"),
            ("caf\u{e9}", "printable ASCII"),
        ] {
            let (_d, path) = file(content, 0o600);
            let err = Token::read(&path).unwrap_err().to_string();
            assert!(err.contains(problem), "{content:?}: {err}");
        }
        let (_d, long) = file(&"x".repeat(MAX_TOKEN_LEN + 1), 0o600);
        assert!(Token::read(&long)
            .unwrap_err()
            .to_string()
            .contains("too long"));
        let (_d, open) = file("s3cret", 0o644);
        let err = Token::read_private(&open).unwrap_err().to_string();
        assert!(err.contains("chmod o-rwx"), "{err}");
        // A client may read a copy that is not private.
        assert!(Token::read(&open).is_ok());
        let err = Token::read(Path::new("/nonexistent/token")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/token"), "{err}");
    }
}
