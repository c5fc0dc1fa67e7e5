//! One module per subcommand: argument types and a `main` that calls the
//! library and turns its results into output and an exit status.

pub mod agent;
pub mod bdev;
pub mod bench;
pub mod fio;
pub mod nvme;
pub mod progress;
pub mod run;
pub mod vm;

/// Logs go to stderr so that stdout stays machine-readable (JSON replies);
/// `RUST_LOG` picks the level, `info` by default.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Parses a deadline in seconds: a positive, finite number.
pub fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds above 0 and at most 86400 (e.g. 10 or 0.5)"
        )),
    }
}
