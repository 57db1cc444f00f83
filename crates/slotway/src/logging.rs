//! Logging to stderr, as text or JSON lines, with a level that a reload can change.
use crate::config::LogFormat;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// Changes the log filter of the running process (config reload).
pub struct LogControl {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
}

impl LogControl {
    /// A control that changes nothing (for embedding slotway without its logging, e.g. in tests).
    pub fn none() -> LogControl {
        LogControl { handle: None }
    }

    /// Replaces the filter, e.g. `debug` or `slotway=trace`; the text was validated with the config.
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let Some(handle) = &self.handle else { return Ok(()) };
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    }
}

/// Installs the global subscriber. JSON lines carry `timestamp`, `level`, `target`, `message` and the event's own
/// fields at the top level (stable names: they are the code's field names, e.g. `client`, `node`, `error`).
/// Secrets are [`crate::config::Secret`]s, which print as `<redacted>` in either format.
pub fn init(format: LogFormat, level: &str) -> LogControl {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    LogControl { handle: Some(handle) }
}
