//! DH-HMAC-CHAP keys of hosts (the `Security` service): kept in the host's
//! directory in configfs, `hosts/<nqn>/dhchap_key` and `dhchap_ctrl_key`.
//! A host given a key is kept while no share admits it, so that a share
//! made later admits it only with the key; the kernel cannot clear a key,
//! so RemoveHost removes the whole entry.

use tracing::info;

use super::{check_host, BdevTable, RequestError};

/// The lengths of the base64 part of a key `nvme gen-dhchap-key` makes:
/// a 32, 48 or 64-byte secret and its 4-byte CRC.
const KEY_BASE64_LENS: [usize; 3] = [48, 72, 92];

/// Checks the form of a key without ever showing it.
fn check_key(which: &'static str, key: &str) -> Result<(), RequestError> {
    let mut parts = key.split(':');
    let well_formed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("DHHC-1"), Some(hash), Some(secret), Some("")) => {
            parts.next().is_none()
                && ["00", "01", "02", "03"].contains(&hash)
                && KEY_BASE64_LENS.contains(&secret.len())
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        }
        _ => false,
    };
    if well_formed {
        Ok(())
    } else {
        Err(RequestError::BadKey { which })
    }
}

impl BdevTable {
    /// `Security.SetHostKey`: gives `host` a key and, if `ctrl_key` is not
    /// empty, the controller key for bidirectional authentication. The
    /// host's directory is made if missing (and then is the agent's).
    pub fn set_host_key(
        &mut self,
        host: &str,
        key: &str,
        ctrl_key: &str,
    ) -> Result<(), RequestError> {
        check_host(host)?;
        check_key("key", key)?;
        if !ctrl_key.is_empty() {
            check_key("ctrl_key", ctrl_key)?;
        }
        let made = !self.nvmet.has_host(host);
        if made {
            self.nvmet.make_host(host)?;
        }
        let undo = |t: &Self| {
            if made {
                let _ = t.nvmet.remove_host(host);
            }
        };
        if !self.nvmet.host_auth(host) {
            undo(self);
            return Err(RequestError::NoHostAuth);
        }
        let ctrl = (!ctrl_key.is_empty()).then_some(ctrl_key);
        if let Err(e) = self.nvmet.set_host_keys(host, key, ctrl) {
            undo(self);
            return Err(e.into());
        }
        if made {
            self.hosts_made.insert(host.to_string());
        }
        self.hosts_keyed.insert(host.to_string());
        if let Err(e) = self.save() {
            // Not recorded as keyed, the entry could be dropped as unused
            // at the next start and a later share would admit the host
            // without a key: undo what can be.
            if made {
                undo(self);
                self.hosts_made.remove(host);
            }
            self.hosts_keyed.remove(host);
            return Err(e.into());
        }
        let bidirectional = if ctrl.is_some() {
            " and a controller key"
        } else {
            ""
        };
        info!("host {host} has a DH-HMAC-CHAP key{bidirectional}");
        Ok(())
    }

    /// `Security.RemoveHost`: removes the entry of a host the agent made,
    /// keys included, once no share admits it.
    pub fn remove_host(&mut self, host: &str) -> Result<(), RequestError> {
        check_host(host)?;
        if !self.nvmet.has_host(host) {
            return Err(RequestError::UnknownHost {
                host: host.to_string(),
            });
        }
        if !self.hosts_made.contains(host) {
            return Err(RequestError::HostNotOurs {
                host: host.to_string(),
            });
        }
        if self.nvmet.host_in_use(host)? {
            return Err(RequestError::HostInUse {
                host: host.to_string(),
            });
        }
        self.nvmet.remove_host(host)?;
        self.hosts_made.remove(host);
        self.hosts_keyed.remove(host);
        self.save()?;
        info!("removed host {host} and its keys");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key as `nvme gen-dhchap-key --hmac 1` printed it.
    pub(crate) const KEY: &str = "DHHC-1:01:jzvPioFYW+Pgjmtw15pV1F9s9goZ9HeCbn7SxLDJGt/Ax6t7:";

    #[test]
    fn keys_in_the_kernels_form_pass_and_others_do_not_show() {
        check_key("key", KEY).unwrap();
        for bad in [
            "",
            "DHHC-1:01:short:",
            "DHHC-2:01:jzvPioFYW+Pgjmtw15pV1F9s9goZ9HeCbn7SxLDJGt/Ax6t7:",
            "DHHC-1:07:jzvPioFYW+Pgjmtw15pV1F9s9goZ9HeCbn7SxLDJGt/Ax6t7:",
            "DHHC-1:01:jzvPioFYW+Pgjmtw15pV1F9s9goZ9HeCbn7SxLDJGt/Ax6t7",
            "DHHC-1:01:jzvPioFYW+Pgjmtw15pV1F9s9goZ9HeCbn7SxLDJGt/Ax6t!:",
            "DHHC-1:01:jzvPioFYW+Pgjmtw15pV1F9s9goZ9HeCbn7SxLDJGt/Ax6t7::",
        ] {
            let err = check_key("key", bad).unwrap_err().to_string();
            assert!(err.contains("nvme gen-dhchap-key"), "{bad}: {err}");
            if bad.len() > 10 {
                assert!(!err.contains(&bad[10..]), "the key shows in {err}");
            }
        }
    }
}
