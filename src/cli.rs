//! The command line: what each subcommand takes and does. Parsing only; the work is elsewhere.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The configuration file every command reads when `-c` is not given (where the package puts
/// it and the systemd unit reads it).
pub const DEFAULT_CONFIG: &str = "/etc/auditrelay/auditrelay.toml";

/// Collects SaaS vendors' audit logs under their rate limits, keeps every record in a durable
/// on-disk queue and forwards it to your SIEM — without losing any.
///
/// Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug, RUST_LOG=auditrelay=trace) for more,
/// NO_COLOR=1 for text logs without colours. Without -c, every command reads
/// /etc/auditrelay/auditrelay.toml.
#[derive(Debug, Parser)]
#[command(name = "auditrelay", version, propagate_version = true)]
pub struct Cli {
    /// Log line format on stderr: `auto` (journald under systemd, else text), `text`, `journald`
    /// (priority prefixes, no timestamps), `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value = "auto", env = "AUDITRELAY_LOG_FORMAT")]
    pub log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the daemon): poll every configured source and deliver to every sink until
    /// SIGTERM or SIGINT, then stop fetching, commit, let sinks finish their batch and exit 0.
    /// SIGHUP reloads the configuration file (a refused file keeps the running one).
    Run {
        /// The configuration file (TOML); see config/auditrelay.example.toml.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Catch up once and exit: every source fetches until less than one poll interval of
        /// data is left, every sink drains the queue, then print a one-line summary on stdout
        /// (records stored per source, events delivered per sink, dead letters of this run) and
        /// exit: 0 when all went well, 1 if a source failed, events were left undelivered
        /// (stopped by SIGTERM/SIGINT before the sinks drained: they stay queued for the next
        /// run) or the agent could not start, 2 if records or events were dead-lettered in this
        /// run (`queue dead-letters` lists them).
        #[arg(long)]
        once: bool,
        /// After SIGTERM, how long sinks may keep trying to deliver the batch in hand; what is
        /// not delivered by then stays queued for the next start.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
        drain_timeout: std::time::Duration,
        /// The directory `${CREDENTIALS_DIRECTORY}` in a `*_file` secret path names (systemd
        /// sets $CREDENTIALS_DIRECTORY for a unit with LoadCredential=; this option overrides it).
        #[arg(long, value_name = "DIR")]
        credentials_dir: Option<PathBuf>,
    },
    /// Validate a configuration file and print it resolved (defaults filled, secrets read from
    /// the environment and files, shown as [redacted]). Exits 1 naming the file, line and key
    /// of every mistake, in file order.
    ///
    /// With --connect: the table of sources and sinks reached comes first, the resolved
    /// configuration only with --show-config. --json prints one JSON object instead (see README
    /// "Checking a configuration"), also for a refused file.
    Check {
        /// The configuration file (TOML); see config/auditrelay.example.toml.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Also reach every source and every sink: each
        /// source's credential with the cheapest request its vendor's audit API answers (a
        /// refused credential is named, the secret never); each sink as it will be used: the
        /// file sink's file opened, syslog receivers connected (TCP and, for TLS, the whole
        /// handshake with certificate checks), HEC's health endpoint and token, OTLP's endpoint
        /// with an empty export, Elasticsearch's `GET /` (flavour and version found) and its index
        /// template. Prints a table of one row per source and sink (before anything
        /// else; the resolved configuration only with --show-config) and exits 1 if any fails.
        /// Sends no event.
        #[arg(long)]
        connect: bool,
        /// With --connect, also print the resolved configuration after the table (check
        /// without --connect always prints it).
        #[arg(long)]
        show_config: bool,
        /// One JSON object on stdout: `ok`, `errors`, `warnings`, `sources`, `sinks`, `notes`, with
        /// --connect `connect` (kind, name, ok, detail per row), and `resolved` (the
        /// configuration as text) without --connect or with --show-config.
        #[arg(long)]
        json: bool,
        /// Read `${CREDENTIALS_DIRECTORY}/NAME` secret files from DIR: the unit's
        /// LoadCredential= layout checked outside the unit (under the unit, or with
        /// `systemd-run -p LoadCredential=… --pipe --wait auditrelay check`, systemd sets
        /// $CREDENTIALS_DIRECTORY itself).
        #[arg(long, value_name = "DIR")]
        credentials_dir: Option<PathBuf>,
    },
    /// Reload the running agent and say whether it applied the file: check it (as `check`;
    /// a refused file is never signalled), send SIGHUP to --pid, and wait for the agent's
    /// answer. Exits 0 once the agent applied it; 1 if the file or the agent refused it (a
    /// changed state_dir, a certificate the agent cannot read) or no answer came within
    /// --timeout, or the agent resolved the file differently (a `${NAME}` changed in its
    /// environment file since it started: that takes a restart). A pid that is not the agent's
    /// (no reload status of that process in $RUNTIME_DIRECTORY or the state directory) is never
    /// signalled. The packaged unit's ExecReload= runs it, so `systemctl reload auditrelay`
    /// fails when the new configuration is refused.
    Reload {
        /// The configuration file the agent was started with.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The agent's process id (in the unit: $MAINPID).
        #[arg(long, value_name = "PID")]
        pid: u32,
        /// How long to wait for the agent's answer (a reload waits for changed sinks to finish
        /// the batch in hand).
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// As for `check`: the directory `${CREDENTIALS_DIRECTORY}` names.
        #[arg(long, value_name = "DIR")]
        credentials_dir: Option<PathBuf>,
    },
    /// Run the agent against its built-in vendor simulator on 127.0.0.1, writing events to
    /// events.ndjson in --out (./auditrelay-demo), and print a summary. Exits 0 once every simulated record
    /// was delivered.
    Demo {
        /// Records the simulator serves.
        #[arg(long, default_value_t = 5000)]
        records: usize,
        /// Where the output file (and a copy of the demo's configuration) go.
        #[arg(long, value_name = "DIR", default_value = "auditrelay-demo")]
        out: PathBuf,
    },
    /// Collect one source's history over [--since, --until) and deliver it to every sink, then
    /// exit. Each range runs as its own source `<name>.backfill.<from>-<until>` (its own
    /// checkpoint: the live source's is untouched); a re-run asks only what earlier runs did not
    /// cover (or says "already covered"), and an interrupted backfill resumes when the same
    /// command runs again. Stop the service first (one agent per state directory). Shows a
    /// progress bar on a terminal.
    ///
    /// It never resends what the live source delivered: without --until the range ends where
    /// the live source began (recorded in its checkpoint; now if it never ran), and an --until
    /// past that is refused (exit 2) unless --allow-overlap. Exit 2 also when where it began
    /// cannot be told (a checkpoint of an older version and a relative `start`): pass --until.
    Backfill {
        /// The configuration file (TOML); see config/auditrelay.example.toml.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The `name` of the [[sources]] table to backfill.
        #[arg(long, value_name = "NAME")]
        source: String,
        /// RFC 3339 time or date (2025-01-01 means its midnight UTC).
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        since: chrono::DateTime<chrono::Utc>,
        /// End of the range (exclusive); default: where the live source began (its first window's
        /// start, from its checkpoint), or now if it has no checkpoint yet (it never ran: when it
        /// starts, it asks from its `start` again). A time in the future is clamped to now.
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Let --until reach into the live source's range. The range's records are then checked
        /// against the live source's dedupe keys and those it stored are skipped, so nothing goes
        /// twice. Those keys are kept only for its overlap plus a day (older ones are pruned), and
        /// the live source, resumed, asks again from its last window less its overlap without
        /// knowing the backfill's keys: a range reaching where the keys are pruned or where the
        /// live source asks again is still refused (the error names both bounds).
        #[arg(long)]
        allow_overlap: bool,
    },
    /// Run the vendor simulator alone (for tests, benchmarks and trying configurations).
    Simulate(crate::sim::SimulateArgs),
    /// See and act on what is queued and what failed: stats, dead letters, replay, purge,
    /// renamed sinks, checkpoints.
    ///
    /// `stats` and `dead-letters` only read (safe while the agent runs); `replay`,
    /// `purge-dead-letters`, `rename-sink` and `set-checkpoint` change the database and refuse
    /// to run beside an agent.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// List the vendors this installation knows: the built-in ones and every vendor definition
    /// (docs/vendor-definitions.md) in the definitions directory, with paging, auth, default
    /// rate limit and where each came from (a file, or "built in").
    ///
    /// Definitions are read from /etc/auditrelay/vendors.d/ (every *.toml file; a missing
    /// directory lists the built-in vendors only), from --dir, or from the `vendors_dir` of
    /// the configuration given with --config. A broken definition or two
    /// with one name: every problem on stderr (file:line: key: message) and exit 2.
    /// `auditrelay vendors check FILE` validates one file.
    Vendors {
        /// The definitions directory to read instead of /etc/auditrelay/vendors.d/ (it must exist).
        #[arg(long, value_name = "DIR", conflicts_with = "config")]
        dir: Option<PathBuf>,
        /// Read the definitions directory this configuration names (`vendors_dir`, relative to
        /// it; the default directory when it names none). The configuration must be valid.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// One JSON array of {name, title, paging, auth, rate_limit, from} instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: Option<VendorsCommand>,
    },
    /// Elasticsearch / OpenSearch helpers for the `type = "elasticsearch"` sink.
    Elasticsearch {
        #[command(subcommand)]
        command: ElasticsearchCommand,
    },
}

/// `auditrelay vendors …`.
#[derive(Debug, Subcommand)]
pub enum VendorsCommand {
    /// Validate one vendor definition file: exit 0 and a summary (name, paging, auth, default
    /// rate limit, mapping), or exit 2 and every problem of the file, each as
    /// `FILE:LINE: KEY: MESSAGE`. Reads only that file; nothing is contacted.
    Check {
        /// The definition file (TOML, at most 256 KiB).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `auditrelay elasticsearch …`.
#[derive(Debug, Subcommand)]
pub enum ElasticsearchCommand {
    /// Print the composable index template (JSON) the sink's documents need: OCSF under
    /// `ocsf.*`, `raw_data` not indexed, `unmapped` one flattened field, no lifecycle policy.
    /// Install it once, before the first event:
    /// `auditrelay elasticsearch template | curl -H 'Content-Type: application/json'
    /// -X PUT https://HOST:9200/_index_template/auditrelay-ocsf -d @-` (with your credentials).
    Template {
        /// For OpenSearch (`flat_object` instead of `flattened`, no `constant_keyword`).
        #[arg(long)]
        opensearch: bool,
        /// The sink's `dataset` (its `{vendor}` and `{class_uid}` match any value).
        #[arg(long, value_name = "DATASET", default_value = "auditrelay.ocsf")]
        dataset: String,
    },
}

/// `auditrelay queue …`: look at the state database and act on dead letters.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Show what is queued and what failed (read-only: safe while the agent runs).
    ///
    /// Events and their bytes against `queue.max_bytes`, each sink's cursor and backlog, each
    /// source's checkpoint, and dead letters counted by source and origin. Opens the database
    /// read-only and takes no lock.
    Stats {
        /// The agent's configuration file (TOML); its `state_dir` names the database.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// One JSON object instead of tables, with stable keys: `database`; `events` {`queued`,
        /// `bytes`, `dead_letter_bytes`, `used_bytes`, `max_bytes`, `full`, `newest_id`,
        /// `staged`}; `sinks` [{`name`, `configured`, `cursor` (null: new), `backlog`,
        /// `oldest_pending`}]; `sources` [{`name`, `configured`, `checkpoint_updated`,
        /// `checkpoint` (the checkpoint's JSON)}]; `dead_letters` {`total`, `by` [{`source`,
        /// `origin` ("source" or "sink"), `sink`, `count`}]}. Times are RFC 3339 UTC or null.
        #[arg(long)]
        json: bool,
    },
    /// List dead letters, oldest first (read-only: safe while the agent runs).
    ///
    /// Each with its id, when it was recorded, source, origin (`source`: a vendor record the
    /// source could not map to OCSF, raw = the vendor's bytes; `sink NAME`: an OCSF event that
    /// sink refused for good, raw = the event), reason and a preview of the raw bytes.
    DeadLetters {
        /// The agent's configuration file (TOML); its `state_dir` names the database.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Show at most this many (0: all).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
        /// Only this source's dead letters.
        #[arg(long, value_name = "SOURCE")]
        source: Option<String>,
        /// Only the events this sink refused.
        #[arg(long, value_name = "SINK")]
        sink: Option<String>,
        /// One JSON object per line, with the whole raw record: "raw" (text) if it is UTF-8,
        /// else "raw_hex".
        #[arg(long)]
        json: bool,
    },
    /// Queue events that a sink refused again, as new events (the agent must be stopped).
    ///
    /// Each selected event gets a new id and its dead letter is removed, in one transaction.
    /// Every configured sink receives a replayed event again, so sinks that had already
    /// delivered it send a duplicate (receivers deduplicate on `metadata.uid`). Fix what made
    /// the sink refuse it first (e.g. raise `max_message_size`). Vendor records a source could
    /// not map are not replayed (this command cannot map them again): they are counted and
    /// stay. Takes the state directory's lock, so it refuses to run beside an agent.
    Replay {
        /// The agent's configuration file (TOML): its `state_dir` and sinks.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(flatten)]
        selection: DeadLetterSelectionArgs,
    },
    /// Delete dead letters for good (the agent must be stopped).
    ///
    /// Without --yes, only says how many would be deleted and exits 1. Takes the state
    /// directory's lock, so it refuses to run beside an agent.
    PurgeDeadLetters {
        /// The agent's configuration file (TOML): its `state_dir` and sinks.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(flatten)]
        selection: DeadLetterSelectionArgs,
        /// Really delete them.
        #[arg(long)]
        yes: bool,
    },
    /// Give a sink's queue cursor (what it has not delivered yet) and HEC channel to its new
    /// name, after renaming it in the configuration (the agent must be stopped; the same as
    /// `renamed_from = "OLD"` in the sink's table, without editing the file). Run it before the
    /// agent starts with the new name: a start without either drops the old name's cursor.
    /// Takes the state directory's lock.
    RenameSink {
        /// The agent's configuration file (TOML): its `state_dir` and sinks.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The sink's former name (no longer configured).
        #[arg(long, value_name = "OLD")]
        from: String,
        /// Its name in the configuration now.
        #[arg(long, value_name = "NEW")]
        to: String,
    },
    /// Set a source's checkpoint by hand (the agent must be stopped).
    ///
    /// The recovery when the agent refuses to start because a checkpoint is missing or damaged
    /// (README "Damaged state"), and a way to skip or refetch a range. Everything before TIME
    /// then counts as collected: the source's next window starts at TIME minus its `overlap`
    /// (an unfinished sweep is dropped). Choose TIME no later than the newest event your SIEM
    /// has from this source: earlier only refetches (duplicates keep their `metadata.uid`),
    /// later skips records for good. Without --yes, only shows the current and the new
    /// checkpoint and exits 1. Takes the state directory's lock.
    SetCheckpoint {
        /// The agent's configuration file (TOML): its `state_dir`, sources and sinks.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// A configured source's name (or `NAME.backfill.<from>-<until>`, as `queue stats` lists
        /// it, for a backfill's own checkpoint).
        #[arg(long, value_name = "SOURCE")]
        source: String,
        /// RFC 3339, e.g. 2026-11-20T00:00:00Z.
        #[arg(long, value_name = "TIME", value_parser = parse_rfc3339)]
        done_until: chrono::DateTime<chrono::Utc>,
        /// Really write it.
        #[arg(long)]
        yes: bool,
    },
}

/// Which dead letters `replay` and `purge-dead-letters` act on: at least one of these is
/// required; all given must hold.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "selection", required = true, multiple = true)]
pub struct DeadLetterSelectionArgs {
    /// This dead letter (repeat for several; ids as `queue dead-letters` shows them).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<i64>,
    /// Every dead letter (narrowed by --source, --sink and --before when given).
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Only this source's dead letters.
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// Only the events this sink refused.
    #[arg(long, value_name = "SINK")]
    pub sink: Option<String>,
    /// Only those recorded before this time (RFC 3339, e.g. 2026-03-18T12:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339)]
    pub before: Option<chrono::DateTime<chrono::Utc>>,
}

fn parse_rfc3339(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|e| format!("not an RFC 3339 time such as 2026-03-18T12:00:00Z ({e})"))
}

/// `--since` / `--until`: an RFC 3339 time, or a date meaning its midnight UTC.
fn parse_date(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{text:?} is neither an RFC 3339 time (2025-01-01T00:00:00Z) nor a date (2025-01-01)"))
}
