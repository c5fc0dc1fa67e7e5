//! [`Target`]: a client for a target's `BdevRpc` service.

use std::time::Duration;

use super::{AuthChannel, ClientError, Service};
use crate::proto::mayastor::{
    bdev_rpc_client::BdevRpcClient, Bdev, BdevShareRequest, BdevUri, CreateReply, Null,
};
use crate::token::Token;

/// A connection to one target's `BdevRpc` service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Target(Service<BdevRpcClient<AuthChannel>>);

impl Target {
    /// Connects to `host:port`, giving up after `timeout`; each later call
    /// also gets `timeout` as its deadline.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        Self::connect_with_token(addr, timeout, None).await
    }

    /// [`Target::connect`] to an agent started with `--token-file`: every
    /// call carries `token`.
    pub async fn connect_with_token(
        addr: &str,
        timeout: Duration,
        token: Option<Token>,
    ) -> Result<Self, ClientError> {
        Ok(Self(
            Service::connect(addr, timeout, token, BdevRpcClient::new).await?,
        ))
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        self.0.addr()
    }

    /// `BdevRpc.List`: every bdev on the target.
    pub async fn list(&self) -> Result<Vec<Bdev>, ClientError> {
        let reply = self.0.rpc().list(Null {}).await;
        Ok(reply
            .map_err(self.0.error("BdevRpc.List"))?
            .into_inner()
            .bdevs)
    }

    /// `BdevRpc.Create`: creates a bdev from a URI; returns its name.
    pub async fn create(&self, uri: &str) -> Result<String, ClientError> {
        let req = BdevUri {
            uri: uri.to_string(),
        };
        let reply = self.0.rpc().create(req).await;
        Ok(reply
            .map_err(self.0.error("BdevRpc.Create"))?
            .into_inner()
            .name)
    }

    /// `BdevRpc.Destroy`: destroys the bdev created from `uri`.
    pub async fn destroy(&self, uri: &str) -> Result<(), ClientError> {
        let req = BdevUri {
            uri: uri.to_string(),
        };
        self.0
            .rpc()
            .destroy(req)
            .await
            .map_err(self.0.error("BdevRpc.Destroy"))?;
        Ok(())
    }

    /// `BdevRpc.Share`: exports a bdev over `proto` (`nvmf`) to the host
    /// NQNs `allowed_hosts` (none: any host); returns the share URI, e.g.
    /// `nvmf://192.168.1.2:8430/nqn.2019-05.io.openebs:<uuid>`. Sharing a
    /// shared bdev again changes which hosts it admits.
    pub async fn share(
        &self,
        name: &str,
        proto: &str,
        allowed_hosts: &[String],
    ) -> Result<String, ClientError> {
        let req = BdevShareRequest {
            name: name.to_string(),
            proto: proto.to_string(),
            allowed_hosts: allowed_hosts.to_vec(),
        };
        let reply = self.0.rpc().share(req).await;
        Ok(reply
            .map_err(self.0.error("BdevRpc.Share"))?
            .into_inner()
            .uri)
    }

    /// `BdevRpc.Unshare`: stops exporting a bdev.
    pub async fn unshare(&self, name: &str) -> Result<(), ClientError> {
        let req = CreateReply {
            name: name.to_string(),
        };
        self.0
            .rpc()
            .unshare(req)
            .await
            .map_err(self.0.error("BdevRpc.Unshare"))?;
        Ok(())
    }

    /// The bdev called `name`, if the target lists one.
    pub async fn find(&self, name: &str) -> Result<Option<Bdev>, ClientError> {
        Ok(self.list().await?.into_iter().find(|b| b.name == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rejects_addresses_without_a_port() {
        for addr in [
            "localhost",
            ":10124",
            "host:notaport",
            "host:99999",
            "host:0",
        ] {
            let err = Target::connect(addr, Duration::from_millis(100))
                .await
                .unwrap_err();
            assert!(matches!(err, ClientError::Address { .. }), "{addr}: {err}");
            assert!(err.to_string().contains("host:port"), "{err}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_target_fails_within_its_deadline() {
        // Bind then drop a listener so the port is closed on loopback.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let start = std::time::Instant::now();
        let err = Target::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("cannot reach"), "{err}");
    }
}
