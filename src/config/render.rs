//! `auditrelay check`: the resolved configuration as TOML-like text, every default filled in
//! and every secret shown as "[redacted]".

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use bytesize::ByteSize;
use chrono::SecondsFormat;

use super::{Backoff, Config, RateLimit, StartAt};
use crate::ocsf::event::RawData;

impl Config {
    /// Human-readable resolved config for `auditrelay check`, every secret shown as
    /// "[redacted]" (a TOML-like listing with all defaults filled in).
    pub fn render_redacted(&self) -> String {
        let d = |d: Duration| format!("{:?}", humantime::format_duration(d).to_string());
        let b = |b: &Backoff| format!("{{ initial = {}, max = {} }}", d(b.initial), d(b.max));
        let p = |p: &Path| format!("{:?}", p.display().to_string());
        let size = size_text;
        let mut o = format!("# resolved from {}\n", self.origin.display());
        let mut kv = |k: &str, v: String| {
            let _ = writeln!(o, "{k} = {v}");
        };
        kv("state_dir", p(&self.state_dir));
        kv("\n[queue]\nmax_bytes", size(self.queue.max_bytes));
        if let Some(listen) = self.telemetry.listen {
            kv("\n[telemetry]\nlisten", format!("{:?}", listen.to_string()));
        }
        if self.raw_data != RawData::Full {
            kv("\n[ocsf]\nraw_data", format!("{:?}", self.raw_data.name()));
        }
        for s in &self.sources {
            kv("\n[[sources]]\nname", format!("{:?}", s.name));
            kv("log_name", format!("{:?}", s.log_name));
            kv("vendor", format!("{:?}", s.vendor.vendor_name()));
            s.vendor.render(&mut kv);
            kv("base_url", format!("{:?}", crate::redact::url(&s.base_url)));
            kv(
                "start",
                match s.start {
                    StartAt::Ago(a) => d(a),
                    StartAt::At(t) => {
                        format!("{:?}", t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                    }
                },
            );
            kv("lag", d(s.lag));
            kv("overlap", d(s.overlap));
            kv("max_span", d(s.max_span));
            kv("poll_interval", d(s.poll_interval));
            kv("request_timeout", d(s.request_timeout));
            let RateLimit { requests, per, burst } = s.rate_limit;
            let per = d(per);
            kv("rate_limit", format!("{{ requests = {requests}, per = {per}, burst = {burst} }}"));
            kv("backoff", b(&s.backoff));
            kv("max_retry_after", d(s.max_retry_after));
            kv("max_pages", s.max_pages.to_string());
            if let Some(ca) = &s.ca_file {
                kv("ca_file", p(ca));
            }
        }
        if !self.severity.is_empty() {
            let mut list: Vec<_> = self.severity.overrides().collect();
            list.sort_by(|a, b| a.0.cmp(b.0));
            let items: Vec<String> = list
                .iter()
                .map(|((v, c), s)| format!("{:?} = {:?}", format!("{v}:{c}"), s.caption().to_ascii_lowercase()))
                .collect();
            kv("\n[severity]\noverrides", format!("{{ {} }}", items.join(", ")));
        }
        for s in &self.sinks {
            kv("\n[[sinks]]\nname", format!("{:?}", s.name));
            if let Some(from) = &s.renamed_from {
                kv("renamed_from", format!("{from:?}"));
            }
            s.kind.render(&mut kv);
            kv("batch_max_events", s.batch_max_events.to_string());
            kv("batch_max_bytes", size(s.batch_max_bytes as u64));
            kv("backoff", b(&s.backoff));
        }
        o
    }
}

/// A duration as `check` shows it (quoted humantime).
pub(crate) fn duration_text(d: Duration) -> String {
    format!("{:?}", humantime::format_duration(d).to_string())
}

/// A path as `check` shows it (quoted).
pub(crate) fn path_text(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// A byte count as `check` shows it: `1048576  # 1 MiB`.
pub(crate) fn size_text(n: u64) -> String {
    format!("{n}  # {}", ByteSize(n).display().iec())
}
