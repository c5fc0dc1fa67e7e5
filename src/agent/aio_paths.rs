//! Which files and devices an aio bdev may be made on: only those under an
//! `--allow-path` prefix, and never the agent's own state directory. Without
//! this, anyone who reaches the gRPC port could export the target's root
//! disk, or the agent's state file, read-write to any host.
//!
//! A path is checked twice: as given, before the filesystem is touched (so
//! that a refused path reveals nothing about what exists), then resolved
//! (so that `..` and symbolic links cannot lead out of an allowed prefix).

use std::path::{Component, Path, PathBuf};

/// Why an aio path is refused (gRPC `PERMISSION_DENIED`).
#[derive(Debug, thiserror::Error)]
pub enum PathRefused {
    /// The agent allows no aio path at all.
    #[error("aio bdevs are off: the agent allows no path; start it with --allow-path PREFIX (NixOS: services.nvmfcheck-agent.allowPaths) to allow {}", .0.display())]
    NoneAllowed(PathBuf),
    /// The path lies outside every allowed prefix.
    #[error("{} is outside the paths this agent may export ({allowed}); give a path under one, or start the agent with --allow-path for it", .path.display())]
    Outside {
        /// The path, as given or as resolved.
        path: PathBuf,
        /// The allowed prefixes.
        allowed: String,
    },
    /// The path names the agent's own state.
    #[error("{} lies in the agent's state directory {}, which is never exported", .path.display(), .state_dir.display())]
    StateDir {
        /// The path as resolved.
        path: PathBuf,
        /// The state directory.
        state_dir: PathBuf,
    },
}

/// The aio path policy.
#[derive(Debug, Clone)]
pub struct AioPaths {
    /// Allowed prefixes, as given and as resolved.
    allowed: Vec<PathBuf>,
    state_dir: PathBuf,
}

impl AioPaths {
    /// Allows paths under `allowed` (absolute prefixes), except those in
    /// `state_dir`.
    pub fn new(allowed: &[PathBuf], state_dir: &Path) -> Self {
        let mut all: Vec<PathBuf> = Vec::new();
        for prefix in allowed {
            for p in [Some(prefix.clone()), std::fs::canonicalize(prefix).ok()]
                .into_iter()
                .flatten()
            {
                if !all.contains(&p) {
                    all.push(p);
                }
            }
        }
        Self {
            allowed: all,
            state_dir: std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf()),
        }
    }

    /// Whether an aio bdev may be made on `path`.
    pub fn check(&self, path: &Path) -> Result<(), PathRefused> {
        if self.allowed.is_empty() {
            return Err(PathRefused::NoneAllowed(path.to_path_buf()));
        }
        self.under_allowed(path)?;
        // A path that does not resolve is left to the device probe, which
        // reports it missing; only one that exists can be exported.
        let Ok(real) = std::fs::canonicalize(path) else {
            return Ok(());
        };
        if real.starts_with(&self.state_dir) {
            return Err(PathRefused::StateDir {
                path: real,
                state_dir: self.state_dir.clone(),
            });
        }
        self.under_allowed(&real)
    }

    fn under_allowed(&self, path: &Path) -> Result<(), PathRefused> {
        // `starts_with` compares components, so `/dev/vdb1` is not under
        // `/dev/vdb`; `..` is refused here and judged after resolving.
        let plain = path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if plain && self.allowed.iter().any(|p| path.starts_with(p)) {
            return Ok(());
        }
        Err(PathRefused::Outside {
            path: path.to_path_buf(),
            allowed: self
                .allowed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Setup {
        dir: tempfile::TempDir,
    }

    impl Setup {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for d in ["disks", "state", "other"] {
                std::fs::create_dir(dir.path().join(d)).unwrap();
            }
            for f in ["disks/a", "state/state.json", "other/secret"] {
                std::fs::write(dir.path().join(f), b"x").unwrap();
            }
            Self { dir }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn policy(&self, allowed: &[&str]) -> AioPaths {
            let allowed: Vec<PathBuf> = allowed.iter().map(|a| self.path(a)).collect();
            AioPaths::new(&allowed, &self.path("state"))
        }
    }

    #[test]
    fn only_paths_under_an_allowed_prefix_pass() {
        let s = Setup::new();
        let p = s.policy(&["disks"]);
        p.check(&s.path("disks/a")).unwrap();
        // Missing files are the device probe's to report.
        p.check(&s.path("disks/missing")).unwrap();
        let err = p.check(&s.path("other/secret")).unwrap_err();
        assert!(matches!(err, PathRefused::Outside { .. }), "{err}");
        assert!(err.to_string().contains("--allow-path"), "{err}");
        // A sibling that shares the prefix's characters is not under it.
        std::fs::write(s.path("disks2"), b"x").unwrap();
        assert!(p.check(&s.path("disks2")).is_err());
        // A single file may be allowed by itself.
        s.policy(&["disks/a"]).check(&s.path("disks/a")).unwrap();
    }

    #[test]
    fn dot_dot_and_links_cannot_lead_out() {
        let s = Setup::new();
        let p = s.policy(&["disks"]);
        let err = p.check(&s.path("disks/../other/secret")).unwrap_err();
        assert!(matches!(err, PathRefused::Outside { .. }), "{err}");
        std::os::unix::fs::symlink(s.path("other/secret"), s.path("disks/link")).unwrap();
        let err = p.check(&s.path("disks/link")).unwrap_err();
        assert!(err.to_string().contains("other/secret"), "{err}");
    }

    #[test]
    fn the_state_directory_is_never_allowed() {
        let s = Setup::new();
        // Allowing everything (the temp dir's root) still keeps state out.
        let root = AioPaths::new(&[PathBuf::from("/")], &s.path("state"));
        root.check(&s.path("disks/a")).unwrap();
        let err = root.check(&s.path("state/state.json")).unwrap_err();
        assert!(matches!(err, PathRefused::StateDir { .. }), "{err}");
        std::os::unix::fs::symlink(s.path("state/state.json"), s.path("disks/st")).unwrap();
        assert!(matches!(
            root.check(&s.path("disks/st")),
            Err(PathRefused::StateDir { .. })
        ));
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let s = Setup::new();
        let err = AioPaths::new(&[], &s.path("state"))
            .check(&s.path("disks/a"))
            .unwrap_err();
        assert!(matches!(err, PathRefused::NoneAllowed(_)), "{err}");
        assert!(err.to_string().contains("--allow-path PREFIX"), "{err}");
    }
}
