//! The slog root logger, built once from `[logging]`.
//!
//! Terminal or JSON drain behind `slog-async`, which drops records rather
//! than block a worker when the terminal is slow; the returned guard flushes
//! the queue when dropped at exit. Never log secrets, tokens or bodies.

use crate::config::{LogFormat, LoggingSettings};
use slog::{Drain, Level, Logger, o};

/// Keeps the async drain alive; dropping it flushes pending records.
pub struct LogGuard {
    _guard: slog_async::AsyncGuard,
}

fn level(name: &str) -> Level {
    match name {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "warning" => Level::Warning,
        "error" => Level::Error,
        "critical" => Level::Critical,
        _ => Level::Info,
    }
}

/// Builds the root logger. Records go to stderr.
pub fn root_logger(settings: &LoggingSettings) -> (Logger, LogGuard) {
    let min_level = level(&settings.level);
    let (drain, guard) = match settings.format {
        LogFormat::Terminal => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            let drain = slog_term::FullFormat::new(decorator).build().fuse();
            slog_async::Async::new(drain)
                .chan_size(8192)
                .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
                .build_with_guard()
        }
        LogFormat::Json => {
            let drain = slog_json::Json::new(std::io::stderr())
                .add_default_keys()
                .build()
                .fuse();
            slog_async::Async::new(drain)
                .chan_size(8192)
                .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
                .build_with_guard()
        }
    };
    // Filter before the async channel: a record below the level must cost a
    // comparison, not an allocation and a cross-thread send.
    let logger = Logger::root(
        drain.filter_level(min_level).fuse(),
        o!("service" => "switchyard"),
    );
    (logger, LogGuard { _guard: guard })
}
