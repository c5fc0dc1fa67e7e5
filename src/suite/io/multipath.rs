//! Case `multipath`: the subsystem connected through both of the target's
//! ports is one block device with two paths; while the I/O port goes down
//! for a while and comes back, a verify job on that device goes on through
//! the other path and passes.

use std::time::Duration;

use crate::fio::{FioJob, Rw, Verify};
use crate::nvme;

use super::{cleanup, control, fabric, only_controller, resilient, Session};
use crate::suite::during::{fio_during, Expect, WARM_UP, WARM_UP_IOS};
use crate::suite::steps::ensure;
use crate::suite::{Case, CaseFuture, CheckError, Env, Steps};

/// How long the I/O port stays down.
const PORT_DOWN: u32 = 5;

/// Bytes the verify job writes: long enough to outlast the fault.
const SIZE: u64 = 16 << 20;

pub(super) fn case() -> Case {
    Case {
        name: "multipath",
        about: "connected through ports 8430 and 8420: one block device, two paths; a verify job \
                passes while port 8430 is down for 5 s and comes back",
        run,
        cleanup: Some(cleanup),
    }
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let s = &env.settings;
        let opts = resilient(env);
        let session = Session::open(env, steps, &opts).await?;
        let nqn = session.share.nqn.clone();
        let first = only_controller(env, steps, &nqn).await?;
        let second = session.share.on_port(s.discovery_port);
        steps
            .run(
                &format!(
                    "should connect a second path through port {}",
                    s.discovery_port
                ),
                async { Ok(nvme::connect(&second, &nqn, &opts).await?) },
            )
            .await?;
        steps
            .run("should see one block device with two live paths", async {
                let conn = nvme::connection(&nqn, s.nvme_timeout)
                    .await?
                    .ok_or_else(|| CheckError::Failed(format!("{nqn} has no controller")))?;
                ensure(conn.controllers.len() == 2, || {
                    format!("{nqn} has controllers {:?}, expected two", conn.controllers)
                })?;
                let ns = fabric::namespace_of(&conn, &session.bdev)?;
                ensure(ns.device == session.ns.device, || {
                    format!(
                        "the namespace moved from {} to {}",
                        session.ns.device.display(),
                        ns.device.display()
                    )
                })?;
                for c in &conn.controllers {
                    let state = nvme::controller_state(c, s.nvme_timeout).await?;
                    ensure(state == "live", || format!("path {c} is {state}"))?;
                }
                Ok(())
            })
            .await?;
        let control = control(env).await?;
        let job = FioJob::new(&session.ns.device, Rw::RandWrite, SIZE)
            .name("multipath")
            .iodepth(8)
            .verify(Verify::Crc32c);
        let port = session.share.transport.trsvcid;
        let name = format!(
            "should verify on the multipath device while port {port} is down for {PORT_DOWN} s"
        );
        let (_, seen) = fio_during(
            steps,
            &name,
            &nqn,
            &[job],
            s.fio_timeout,
            Expect::Pass,
            |w| {
                let first = first.clone();
                async move {
                    w.wait_for_io(WARM_UP_IOS, WARM_UP).await?;
                    control.port_down(port, PORT_DOWN).await?;
                    let failing = format!("path {first} (port {port}) failing");
                    w.wait_for(&failing, Duration::from_secs(15), |s| s.left_live(&first))
                        .await?;
                    let back = Duration::from_secs(PORT_DOWN.into()) + Duration::from_secs(30);
                    w.wait_for("both paths live again", back, |s| s.all_live(2))
                        .await
                }
            },
        )
        .await?;
        steps
            .run(
                "should have kept I/O going through the other path meanwhile",
                async {
                    let down = Duration::from_secs(PORT_DOWN.into());
                    ensure(seen.longest_stall < down, || {
                        format!(
                            "I/O stalled for {:.1} s, as long as the port was down: it did not \
                             fail over to the other path",
                            seen.longest_stall.as_secs_f64()
                        )
                    })
                },
            )
            .await?;
        session.close(env, steps).await
    })
}
