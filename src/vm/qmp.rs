//! A minimal QMP client: a clean quit.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::VmError;

/// A QMP connection in command mode.
#[derive(Debug)]
pub struct Qmp {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    deadline: Duration,
}

fn err(what: impl std::fmt::Display) -> VmError {
    VmError::Channel(format!("QMP: {what}"))
}

impl Qmp {
    /// Connects and negotiates capabilities; each reply must come within
    /// `deadline`.
    pub async fn connect(path: &Path, deadline: Duration) -> Result<Self, VmError> {
        let stream = tokio::time::timeout(deadline, UnixStream::connect(path))
            .await
            .map_err(|_| err(format!("connecting to {} timed out", path.display())))?
            .map_err(|e| err(format!("cannot connect to {}: {e}", path.display())))?;
        let (read, write) = stream.into_split();
        let mut qmp = Self {
            lines: BufReader::new(read).lines(),
            write,
            deadline,
        };
        let greeting = qmp.next().await?;
        if greeting.get("QMP").is_none() {
            return Err(err(format!("unexpected greeting {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    async fn next(&mut self) -> Result<Value, VmError> {
        let line = tokio::time::timeout(self.deadline, self.lines.next_line())
            .await
            .map_err(|_| err("no reply in time"))?
            .map_err(err)?
            .ok_or_else(|| err("QEMU closed the connection"))?;
        serde_json::from_str(&line).map_err(|e| err(format!("bad reply {line:?}: {e}")))
    }

    /// Runs one command and returns its `return` value; events are skipped.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, VmError> {
        let mut msg = json!({ "execute": command, "arguments": arguments }).to_string();
        msg.push('\n');
        self.write.write_all(msg.as_bytes()).await.map_err(err)?;
        loop {
            let reply = self.next().await?;
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(e) = reply.get("error") {
                return Err(err(format!("{command} failed: {e}")));
            }
        }
    }

    /// Asks QEMU to quit; the connection then closes.
    pub async fn quit(mut self) -> Result<(), VmError> {
        match self.execute("quit", json!({})).await {
            Ok(_) => Ok(()),
            // QEMU may close before it answers.
            Err(VmError::Channel(m)) if m.contains("closed") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A scripted QMP server: greeting, then one canned reply per command.
    #[tokio::test]
    async fn negotiates_skips_events_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut lines = BufReader::new(r).lines();
            w.write_all(b"{\"QMP\": {\"version\": {}}}\n")
                .await
                .unwrap();
            let mut seen = Vec::new();
            while let Some(l) = lines.next_line().await.unwrap() {
                let v: Value = serde_json::from_str(&l).unwrap();
                let cmd = v["execute"].as_str().unwrap().to_string();
                let reply = match cmd.as_str() {
                    "set_link" => "{\"event\": \"NIC_RX_FILTER_CHANGED\"}\n{\"return\": {}}\n",
                    "bad" => "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\n",
                    _ => "{\"return\": {}}\n",
                };
                seen.push(cmd);
                w.write_all(reply.as_bytes()).await.unwrap();
            }
            seen
        });
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).await.unwrap();
        q.execute("set_link", json!({ "name": "link0", "up": false }))
            .await
            .unwrap();
        let e = q.execute("bad", json!({})).await.unwrap_err();
        assert!(e.to_string().contains("bad failed"), "{e}");
        q.quit().await.unwrap();
        assert_eq!(
            server.await.unwrap(),
            ["qmp_capabilities", "set_link", "bad", "quit"]
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp");
        let _listener = UnixListener::bind(&path).unwrap();
        let e = Qmp::connect(&path, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no reply"), "{e}");
    }
}
