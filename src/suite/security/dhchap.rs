//! `security/dh-hmac-chap`: a share for a host with a DH-HMAC-CHAP key
//! admits that host only with its key, and with a controller key the
//! target proves itself too. The keys are made on the initiator with
//! `nvme gen-dhchap-key` and given to the agent with `Security.SetHostKey`.
//! A kernel whose target cannot authenticate hosts (Debian 12's 6.1 lacks
//! `CONFIG_NVME_TARGET_AUTH`) skips the case, saying so.

use std::sync::OnceLock;

use crate::nvme::{self, ConnectOptions};

use super::super::{fabric, Case, CaseFuture, CheckError, Env, Steps};
use super::{
    connect_and_verify, host_nqn, ram_disk, refused_at_connect, remove, security, share_for,
};

/// The RAM disk the case shares.
const BDEV: (&str, &str) = ("sec-dh", "malloc:///sec-dh?size_mb=16");

/// The host the case gives a key, for its cleanup to remove.
static HOST: OnceLock<String> = OnceLock::new();

pub(super) fn case() -> Case {
    Case {
        name: "dh-hmac-chap",
        about: "a host with a DH-HMAC-CHAP key connects only with it; with a controller key both sides prove themselves",
        run,
        cleanup: Some(cleanup),
    }
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let timeout = env.settings.nvme_timeout;
        let host = HOST.get_or_init(host_nqn).clone();
        let key = steps
            .run(
                "should give the host a key made by nvme gen-dhchap-key (Security.SetHostKey)",
                async {
                    let key = nvme::gen_dhchap_key(&host, timeout).await?;
                    match security(env).await?.set_host_key(&host, &key, "").await {
                        Err(e) if e.to_string().contains("CONFIG_NVME_TARGET_AUTH") => {
                            Err(CheckError::Unsupported(e.to_string()))
                        }
                        other => Ok(other.map(|()| key)?),
                    }
                },
            )
            .await?;
        let bdev = ram_disk(env, steps, BDEV).await?;
        let share = share_for(env, steps, &bdev, &host).await?;
        let as_host = |secret: Option<&str>, ctrl: Option<&str>| ConnectOptions {
            hostnqn: Some(host.clone()),
            dhchap_secret: secret.map(str::to_string),
            dhchap_ctrl_secret: ctrl.map(str::to_string),
            ..fabric::connect_options(env)
        };
        refused_at_connect(
            env,
            steps,
            "the host without a key",
            &share,
            &as_host(None, None),
        )
        .await?;
        let wrong = nvme::gen_dhchap_key(&host, timeout).await?;
        let with_wrong = as_host(Some(&wrong), None);
        refused_at_connect(env, steps, "the host with a wrong key", &share, &with_wrong).await?;
        connect_and_verify(env, steps, &bdev, &share, &as_host(Some(&key), None)).await?;

        let ctrl_key = steps
            .run(
                "should give the target a controller key too (bidirectional)",
                async {
                    let ctrl_key = nvme::gen_dhchap_key(&share.nqn, timeout).await?;
                    security(env)
                        .await?
                        .set_host_key(&host, &key, &ctrl_key)
                        .await?;
                    Ok(ctrl_key)
                },
            )
            .await?;
        let both = as_host(Some(&key), Some(&ctrl_key));
        connect_and_verify(env, steps, &bdev, &share, &both).await?;
        let impostor = as_host(Some(&key), Some(&wrong));
        refused_at_connect(
            env,
            steps,
            "a controller that proves another key than the host expects",
            &share,
            &impostor,
        )
        .await
    })
}

fn cleanup<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        remove(env, steps, BDEV.0).await?;
        if let Some(host) = HOST.get() {
            let security = security(env).await?;
            // A host the case never keyed has no entry; that is fine.
            if let Err(e) = security.remove_host(host).await {
                if e.code() != Some(tonic::Code::NotFound) {
                    return Err(e.into());
                }
            }
        }
        Ok(())
    })
}
