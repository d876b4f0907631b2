//! Where log lines go and what they look like: one `tracing` subscriber on stderr, in one of
//! three shapes.
//!
//! - `text`: for a terminal — local timestamps, level, target, fields; colours only on a TTY,
//!   and never when `NO_COLOR` is set (no-color.org).
//! - `journald`: under systemd (chosen by `auto` when `JOURNAL_STREAM` says stderr is the
//!   journal) — no timestamp (the journal stamps every line) and no colours, and each line starts
//!   with its syslog priority, `<3>` … `<7>` (sd-daemon(3)), so `journalctl -p err` filters by
//!   level.
//! - `json`: one JSON object per line, for log shippers.
//!
//! Levels carry meaning (STYLE: ERROR only when data is at risk or an operator must act; WARN
//! for what the agent recovers from by itself; INFO for state changes; DEBUG per request). The
//! filter is `RUST_LOG` (default `info`). This module decides nothing about what is logged.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, fmt as tfmt};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `journald` when stderr is connected to the systemd journal, else `text`.
    Auto,
    Text,
    Journald,
    Json,
}

impl LogFormat {
    /// `Auto` resolved by the environment: systemd sets `JOURNAL_STREAM` for a service whose
    /// stderr goes to the journal.
    pub fn resolve(self, journal_stream: Option<&str>) -> LogFormat {
        match (self, journal_stream) {
            (LogFormat::Auto, Some(s)) if !s.is_empty() => LogFormat::Journald,
            (LogFormat::Auto, _) => LogFormat::Text,
            (other, _) => other,
        }
    }
}

/// Installs the subscriber for the whole process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = std::env::var("JOURNAL_STREAM").ok();
    let builder = tfmt().with_writer(std::io::stderr).with_env_filter(filter);
    // `try_init`: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = match format.resolve(journal.as_deref()) {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Journald => {
            builder.with_ansi(false).event_format(Journald(tfmt::format().without_time())).try_init()
        }
        LogFormat::Text | LogFormat::Auto => {
            let no_color = std::env::var_os("NO_COLOR");
            builder
                .with_ansi(colours(std::io::IsTerminal::is_terminal(&std::io::stderr()), no_color.as_deref()))
                .try_init()
        }
    };
}

/// Runs `f` with this thread's WARN and ERROR lines captured instead of printed: one JSON
/// object per line with `json`, else plain text without colours. For `check --json` (its
/// warnings go into its object) and for tests of what a load warns.
pub fn capture_warnings<T>(json: bool, f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let builder = tfmt().with_writer(move || writer.clone()).with_ansi(false).with_max_level(Level::WARN);
    let out = if json {
        tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), f)
    } else {
        tracing::subscriber::with_default(builder.finish(), f)
    };
    let bytes = buffer.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    (out, String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether text lines are coloured: only on a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string (no-color.org).
pub fn colours(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// How a fatal error (the one that ends the process: a refused configuration, a held lock, a
/// damaged database) is printed on stderr, in the shape `--log-format` chose for every other
/// line: `error: …` as text; under `journald` every line of it behind `<3>` (err), so
/// `journalctl -p warning` shows why the service stopped; under `json` one object with level
/// `ERROR`, as the log lines are.
pub fn fatal_line(format: LogFormat, journal_stream: Option<&str>, message: &str) -> String {
    match format.resolve(journal_stream) {
        LogFormat::Journald => {
            let mut out = String::new();
            for line in message.lines() {
                out.push_str(&format!("<{}>ERROR auditrelay: {line}\n", priority(&Level::ERROR)));
            }
            if out.is_empty() {
                out.push_str("<3>ERROR auditrelay: (no message)\n");
            }
            out
        }
        LogFormat::Json => {
            let line = serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "ERROR",
                "message": message,
                "target": "auditrelay",
            });
            format!("{line}\n")
        }
        LogFormat::Text | LogFormat::Auto => format!("error: {message}\n"),
    }
}

/// Prints [`fatal_line`] on stderr with the environment's `JOURNAL_STREAM`.
pub fn fatal(format: LogFormat, message: &str) {
    let journal = std::env::var("JOURNAL_STREAM").ok();
    eprint!("{}", fatal_line(format, journal.as_deref(), message));
}

/// The syslog priority journald reads from a `<N>` line prefix.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The default line format, without time, behind a priority prefix.
struct Journald(Format<Full, ()>);

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn auto_means_journald_only_under_the_journal() {
        assert_eq!(LogFormat::Auto.resolve(Some("8:12345")), LogFormat::Journald);
        assert_eq!(LogFormat::Auto.resolve(None), LogFormat::Text);
        assert_eq!(LogFormat::Auto.resolve(Some("")), LogFormat::Text);
        assert_eq!(LogFormat::Json.resolve(Some("8:1")), LogFormat::Json);
        assert_eq!(LogFormat::Text.resolve(Some("8:1")), LogFormat::Text);
    }

    #[test]
    fn no_color_set_and_not_empty_means_no_colours() {
        use std::ffi::OsStr;
        assert!(colours(true, None));
        assert!(colours(true, Some(OsStr::new(""))));
        assert!(!colours(true, Some(OsStr::new("1"))));
        assert!(!colours(false, None));
    }

    #[test]
    fn a_fatal_error_takes_the_chosen_format() {
        let text = fatal_line(LogFormat::Text, None, "bad.toml:6: key `x`");
        assert_eq!(text, "error: bad.toml:6: key `x`\n");
        let journald = fatal_line(LogFormat::Auto, Some("8:1"), "first\nsecond");
        assert_eq!(journald, "<3>ERROR auditrelay: first\n<3>ERROR auditrelay: second\n");
        let json = fatal_line(LogFormat::Json, None, "two\nlines");
        assert_eq!(json.lines().count(), 1, "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["level"], "ERROR");
        assert_eq!(value["message"], "two\nlines");
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journald_lines_carry_the_priority_and_no_timestamp() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tfmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .event_format(Journald(tfmt::format().without_time()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(sink = "siem", "batch not delivered");
            tracing::warn!("retrying");
            tracing::info!(source = "acme", "caught up");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("<3>") && lines[0].contains("ERROR") && lines[0].contains("sink=\"siem\""),
            "{text}"
        );
        assert!(lines[1].starts_with("<4>") && lines[2].starts_with("<6>"), "{text}");
        assert!(!text.contains("2026-") && !text.contains('\u{1b}'), "no timestamp, no colour: {text}");
    }
}
