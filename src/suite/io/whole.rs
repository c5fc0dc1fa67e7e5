//! Case `whole-device`: every block of the namespace takes a sequential
//! write and reads back, so that nothing past some offset (a size or
//! offset bug in the target) goes unchecked.

use crate::fio::{FioJob, Rw, Verify};

use super::{cleanup, fabric, size_name, Session};
use crate::suite::{Case, CaseFuture, Env, Steps};

/// Block size of the job.
const BS: u32 = 128 << 10;

/// Queue depth of the job.
const QD: u32 = 8;

pub(super) fn case() -> Case {
    Case {
        name: "whole-device",
        about: "sequential 128 KiB write and crc32c verify of the entire namespace",
        run,
        cleanup: Some(cleanup),
    }
}

fn run<'a>(env: &'a Env, steps: &'a mut Steps) -> CaseFuture<'a> {
    Box::pin(async move {
        let session = Session::open(env, steps, &fabric::connect_options(env)).await?;
        let ns = &session.ns;
        let job = FioJob::new(&ns.device, Rw::Write, ns.size_bytes)
            .name("whole")
            .bs(BS)
            .iodepth(QD)
            .verify(Verify::Crc32c);
        let name = format!(
            "should write and verify all {} sequentially at 128 KiB, QD {QD}",
            size_name(ns.size_bytes)
        );
        steps.fio(&name, &[job], env.settings.fio_timeout).await?;
        session.close(env, steps).await
    })
}
