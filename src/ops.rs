//! `auditrelay queue …`: what an operator sees of the state database (`stats`, `dead-letters`)
//! and does with dead letters (`replay`, `purge-dead-letters`).
//!
//! Looking never changes anything: `stats` and `dead-letters` open the database read-only
//! ([`QueueView`]) and take no lock, so they work beside a running agent. `replay`,
//! `purge-dead-letters`, `set-checkpoint` and `rename-sink` change the queue: they take the
//! state directory's lock ([`StateLock`]) first, so they run only while no agent does, and each
//! change is one transaction (of the queue's writer, [`Queue`], or for `rename-sink` before the
//! queue is opened). Opening it with the configuration's sinks does
//! what the next agent start would do anyway (cursors of removed sinks dropped, new ones at 0).
//!
//! A dead letter a sink refused is an OCSF event: replaying it queues it again under a new id,
//! so every configured sink receives it again. A dead letter of a source is a vendor record that
//! was never mapped; mapping it again needs its vendor's record reader (id and time fields,
//! Astronomer's line hash), which belongs to `sources/`, so replay refuses those and says so.
//!
//! It leaves the SQL to `queue/`. Output is
//! aligned tables for people; `dead-letters --json` is one JSON object per line.

use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::cli::{DeadLetterSelectionArgs, QueueCommand};
use crate::config::Config;
use crate::lock::StateLock;
use crate::queue::{
    DeadLetter, DeadLetterSelection, Queue, QueueOptions, QueueOverview, QueueView, RequeueItem, database_path,
};

/// Longest reason and raw preview shown in the `dead-letters` table (characters).
const REASON_WIDTH: usize = 60;
const RAW_WIDTH: usize = 60;

/// Runs one `queue` subcommand; returns what to print on stdout. An error (exit 1) is a
/// failure or a refusal (`purge-dead-letters` without `--yes`, a lock held, an unknown id).
pub async fn run(command: QueueCommand) -> anyhow::Result<String> {
    match command {
        QueueCommand::Stats { config, json } => stats(&Config::load_without_secrets(&config)?, json),
        QueueCommand::DeadLetters { config, limit, source, sink, json } => {
            let selection = DeadLetterSelection { source, sink, ..DeadLetterSelection::default() };
            dead_letters(&Config::load_without_secrets(&config)?, &selection, (limit > 0).then_some(limit), json)
        }
        QueueCommand::Replay { config, selection } => replay(&Config::load_without_secrets(&config)?, &selection).await,
        QueueCommand::PurgeDeadLetters { config, selection, yes } => {
            purge(&Config::load_without_secrets(&config)?, &selection, yes).await
        }
        QueueCommand::RenameSink { config, from, to } => {
            rename_sink(&Config::load_without_secrets(&config)?, &from, &to)
        }
        QueueCommand::SetCheckpoint { config, source, done_until, yes } => {
            set_checkpoint(&Config::load_without_secrets(&config)?, &source, done_until, yes).await
        }
    }
}

/// What `check` says of the configured sinks against the queue's cursors: a renamed sink whose
/// backlog moves to its new name, and a removed sink that still has a backlog (discarded for it
/// at the next start or reload, unless it is restored). Read-only; no database yet: nothing.
pub fn sink_changes(config: &Config) -> anyhow::Result<Vec<String>> {
    if !database_path(&config.state_dir).exists() {
        return Ok(Vec::new());
    }
    let view = QueueView::open(&config.state_dir)?;
    let names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
    let mut notes = Vec::new();
    for o in view.orphan_backlogs(&names)? {
        let renamed = config.sinks.iter().find(|s| s.renamed_from.as_deref() == Some(o.sink.as_str()));
        notes.push(match renamed {
            Some(to) => format!(
                "sink {:?} is renamed {:?} (renamed_from): its {} queued events ({} bytes) go to {:?}",
                o.sink, to.name, o.events, o.bytes, to.name
            ),
            None if o.events == 0 => continue,
            None => format!(
                "WARNING: sink {:?} was removed from the configuration and still has {} queued events ({} bytes); \
                 they will be discarded for it at the next start or reload unless it is restored \
                 (or renamed: renamed_from = {:?} in the sink that replaces it)",
                o.sink, o.events, o.bytes, o.sink
            ),
        });
    }
    Ok(notes)
}

fn stats(config: &Config, json: bool) -> anyhow::Result<String> {
    let mut view = QueueView::open(&config.state_dir)?;
    let o = view.overview()?;
    if json {
        return Ok(format!("{}\n", stats_json(config, view.path(), &o)));
    }
    Ok(render_stats(config, view.path(), &o))
}

/// `queue stats --json`: the table's facts as one object under stable keys (documented on
/// `QueueCommand::Stats`); times are RFC 3339 UTC or null, sizes bytes.
fn stats_json(config: &Config, db: &std::path::Path, o: &QueueOverview) -> serde_json::Value {
    use serde_json::{Value, json};
    let cap = config.queue.max_bytes;
    let used = o.bytes.saturating_add(o.dead_letter_bytes);
    let time = |ms: i64| match time_or_dash(ms).as_str() {
        "-" => Value::Null,
        t => Value::String(t.to_owned()),
    };
    let mut sinks: Vec<Value> = o
        .sinks
        .iter()
        .map(|s| {
            json!({
                "name": s.sink,
                "configured": config.sinks.iter().any(|c| c.name == s.sink),
                "cursor": s.cursor,
                "backlog": s.backlog,
                "oldest_pending": s.oldest_pending_ms.map_or(Value::Null, time),
            })
        })
        .collect();
    for c in config.sinks.iter().filter(|c| !o.sinks.iter().any(|s| s.sink == c.name)) {
        sinks.push(json!({
            "name": c.name,
            "configured": true,
            "cursor": Value::Null,
            "backlog": o.events,
            "oldest_pending": Value::Null,
        }));
    }
    let mut sources: Vec<Value> = o
        .checkpoints
        .iter()
        .map(|c| {
            json!({
                "name": c.source,
                "configured": config.sources.iter().any(|s| s.name == c.source),
                "checkpoint_updated": time(c.updated_at_ms),
                "checkpoint": serde_json::from_str::<Value>(&c.state).unwrap_or_else(|_| Value::String(c.state.clone())),
            })
        })
        .collect();
    for s in config.sources.iter().filter(|s| !o.checkpoints.iter().any(|c| c.source == s.name)) {
        sources.push(json!({
            "name": s.name,
            "configured": true,
            "checkpoint_updated": Value::Null,
            "checkpoint": Value::Null,
        }));
    }
    let by: Vec<Value> = o
        .dead_letters
        .iter()
        .map(|d| {
            json!({
                "source": d.source,
                "origin": if d.sink.is_some() { "sink" } else { "source" },
                "sink": d.sink,
                "count": d.count,
            })
        })
        .collect();
    json!({
        "database": db.display().to_string(),
        "events": {
            "queued": o.events,
            "bytes": o.bytes,
            "dead_letter_bytes": o.dead_letter_bytes,
            "used_bytes": used,
            "max_bytes": cap,
            "full": cap > 0 && used >= cap,
            "newest_id": o.newest_id,
            "staged": o.staged,
        },
        "sinks": sinks,
        "sources": sources,
        "dead_letters": {
            "total": o.dead_letters.iter().map(|d| d.count).sum::<u64>(),
            "by": by,
        },
    })
}

fn render_stats(config: &Config, db: &std::path::Path, o: &QueueOverview) -> String {
    let mut out = String::new();
    let cap = config.queue.max_bytes;
    // Dead letters count against the cap (ARCHITECTURE invariant 4): a cap they fill stops
    // collection until they are purged.
    let used = o.bytes.saturating_add(o.dead_letter_bytes);
    let percent = if cap == 0 { 0.0 } else { used as f64 * 100.0 / cap as f64 };
    let _ = writeln!(out, "database  {}", db.display());
    let _ = writeln!(
        out,
        "events    {} queued, {} + {} of dead letters = {} of {} cap ({percent:.1}%); newest id {}",
        o.events,
        bytesize::ByteSize(o.bytes),
        bytesize::ByteSize(o.dead_letter_bytes),
        bytesize::ByteSize(used),
        bytesize::ByteSize(cap),
        o.newest_id
    );
    if cap > 0 && used >= cap {
        let _ = writeln!(
            out,
            "          FULL: sources are not fetching (the data waits at the vendor){}",
            if o.dead_letter_bytes > 0 {
                "; dead letters count against the cap: read them with `queue dead-letters`, then stop the agent \
                 and `queue purge-dead-letters` (or raise queue.max_bytes)"
            } else {
                ""
            }
        );
    }
    if o.staged > 0 {
        let _ = writeln!(out, "staged    {} records of a streamed answer not yet committed", o.staged);
    }

    let mut rows = Vec::new();
    for s in &o.sinks {
        let note =
            if config.sinks.iter().any(|c| c.name == s.sink) { "" } else { "not configured: dropped at next start" };
        let oldest = s.oldest_pending_ms.map_or_else(|| "-".to_owned(), time_or_dash);
        rows.push(vec![s.sink.clone(), s.cursor.to_string(), s.backlog.to_string(), oldest, note.to_owned()]);
    }
    for c in config.sinks.iter().filter(|c| !o.sinks.iter().any(|s| s.sink == c.name)) {
        rows.push(vec![
            c.name.clone(),
            "-".into(),
            o.events.to_string(),
            "-".into(),
            "new: gets every queued event".into(),
        ]);
    }
    out.push('\n');
    out.push_str(&table(&["SINK", "CURSOR", "BACKLOG", "OLDEST PENDING", "NOTE"], &rows));

    out.push('\n');
    let mut rows = Vec::new();
    for c in &o.checkpoints {
        let note = if config.sources.iter().any(|s| s.name == c.source) { "" } else { "not configured" };
        rows.push(vec![c.source.clone(), time_or_dash(c.updated_at_ms), note.to_owned()]);
    }
    for s in config.sources.iter().filter(|s| !o.checkpoints.iter().any(|c| c.source == s.name)) {
        rows.push(vec![s.name.clone(), "-".into(), "no checkpoint yet: starts at `start`".into()]);
    }
    out.push_str(&table(&["SOURCE", "CHECKPOINT UPDATED", "NOTE"], &rows));
    for c in &o.checkpoints {
        let _ = writeln!(out, "\ncheckpoint of {}:", c.source);
        let pretty = serde_json::from_str::<serde_json::Value>(&c.state)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| c.state.clone());
        for line in pretty.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }

    let total: u64 = o.dead_letters.iter().map(|d| d.count).sum();
    let _ = writeln!(out, "\ndead letters: {total}");
    if total > 0 {
        let rows: Vec<Vec<String>> = o
            .dead_letters
            .iter()
            .map(|d| vec![d.source.clone(), origin(d.sink.as_deref()), d.count.to_string()])
            .collect();
        out.push_str(&table(&["SOURCE", "ORIGIN", "COUNT"], &rows));
    }
    out
}

fn dead_letters(
    config: &Config,
    selection: &DeadLetterSelection,
    limit: Option<usize>,
    json: bool,
) -> anyhow::Result<String> {
    let view = QueueView::open(&config.state_dir)?;
    let letters = view.dead_letters(selection, limit)?;
    let mut out = String::new();
    if json {
        for l in &letters {
            out.push_str(&dead_letter_json(l).to_string());
            out.push('\n');
        }
        return Ok(out);
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|l| {
            vec![
                l.id.to_string(),
                time_or_dash(l.created_at_ms),
                l.source.clone(),
                origin(l.sink.as_deref()),
                preview(l.reason.as_bytes(), REASON_WIDTH),
                preview(&l.raw, RAW_WIDTH),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("no dead letters\n");
        return Ok(out);
    }
    out.push_str(&table(&["ID", "CREATED", "SOURCE", "ORIGIN", "REASON", "RAW"], &rows));
    let total = view.count_dead_letters(selection)?;
    if total > letters.len() as u64 {
        let _ = writeln!(out, "({} of {total} shown, oldest first: --limit N for more, 0 for all)", letters.len());
    }
    Ok(out)
}

/// One dead letter as a JSON object: `raw` when its bytes are UTF-8, else `raw_hex`.
fn dead_letter_json(l: &DeadLetter) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": l.id,
        "created_at": time_or_dash(l.created_at_ms),
        "source": l.source,
        "origin": if l.sink.is_some() { "sink" } else { "source" },
        "sink": l.sink,
        "key": l.key,
        "reason": l.reason,
    });
    let raw = match std::str::from_utf8(&l.raw) {
        Ok(text) => ("raw", serde_json::Value::from(text)),
        Err(_) => ("raw_hex", serde_json::Value::from(hex(&l.raw))),
    };
    if let Some(object) = v.as_object_mut() {
        object.insert(raw.0.to_owned(), raw.1);
    }
    v
}

async fn replay(config: &Config, args: &DeadLetterSelectionArgs) -> anyhow::Result<String> {
    let (_lock, queue) = open_for_change(config, "queue replay")?;
    let result = replay_with(&queue, selection(args)).await;
    queue.close().await?;
    result
}

async fn replay_with(queue: &Queue, selection: DeadLetterSelection) -> anyhow::Result<String> {
    let selected = queue.select_dead_letters(selection.clone()).await?;
    check_ids_found(&selection, &selected)?;
    if selected.is_empty() {
        return Ok("no dead letter matches: nothing replayed\n".to_owned());
    }
    let (events, records): (Vec<&DeadLetter>, Vec<&DeadLetter>) = selected.iter().partition(|l| l.sink.is_some());
    let not_replayable = || {
        let ids: Vec<String> = records.iter().map(|l| l.id.to_string()).collect();
        format!(
            "{} selected dead letter(s) (id {}) are vendor records their source could not map to OCSF; \
             replay cannot map them again (that needs the vendor's record reader in the agent), so they stay: \
             inspect them with `auditrelay queue dead-letters --json`, and purge them once handled",
            records.len(),
            ids.join(", ")
        )
    };
    if events.is_empty() {
        bail!("nothing replayed: {}", not_replayable());
    }
    let items: Vec<RequeueItem> = events.iter().map(|l| RequeueItem { dead_letter_id: l.id }).collect();
    let requeued = queue.requeue_dead_letters(items).await?;
    let mut out = format!(
        "replayed {} dead letter(s) as new events: every configured sink receives them again \
         (receivers that already have one deduplicate on metadata.uid)\n",
        requeued.len()
    );
    let rows: Vec<Vec<String>> = requeued
        .iter()
        .filter_map(|r| {
            let l = events.iter().find(|l| l.id == r.dead_letter_id)?;
            Some(vec![
                r.dead_letter_id.to_string(),
                l.source.clone(),
                origin(l.sink.as_deref()),
                r.event_id.to_string(),
            ])
        })
        .collect();
    out.push_str(&table(&["DEAD LETTER", "SOURCE", "ORIGIN", "NEW EVENT"], &rows));
    if !records.is_empty() {
        let _ = writeln!(out, "not replayed: {}", not_replayable());
    }
    Ok(out)
}

async fn purge(config: &Config, args: &DeadLetterSelectionArgs, yes: bool) -> anyhow::Result<String> {
    let selection = selection(args);
    if !yes {
        let view = QueueView::open(&config.state_dir)?;
        check_ids_found(&selection, &view.dead_letters(&selection, None)?)?;
        let n = view.count_dead_letters(&selection)?;
        if n == 0 {
            return Ok("no dead letter matches: nothing to delete\n".to_owned());
        }
        bail!("{n} dead letter(s) match; nothing deleted: run again with --yes to delete them");
    }
    let (_lock, queue) = open_for_change(config, "queue purge-dead-letters")?;
    let result = async {
        check_ids_found(&selection, &queue.select_dead_letters(selection.clone()).await?)?;
        let n = queue.purge_dead_letters(selection).await?;
        anyhow::Ok(format!("deleted {n} dead letter(s)\n"))
    }
    .await;
    queue.close().await?;
    result
}

async fn set_checkpoint(config: &Config, source: &str, done_until: DateTime<Utc>, yes: bool) -> anyhow::Result<String> {
    let configured = |name: &str| config.sources.iter().any(|s| s.name == name);
    let backfill = source.strip_suffix(".backfill").or_else(|| source.split_once(".backfill.").map(|(n, _)| n));
    if !configured(source) && !backfill.is_some_and(configured) {
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        bail!("no source named {source:?} in the configuration (sources: {})", names.join(", "));
    }
    let stored = QueueView::open(&config.state_dir)?.overview()?.checkpoints.into_iter().find(|c| c.source == source);
    // Where the source began stays known (a backfill stops there): the earlier of where it began
    // and the new `done_until` (everything before it counts as collected). No checkpoint yet: it
    // begins at `done_until`. One stored without `began` (an older version's) stays without.
    let began = match stored.as_ref().map(|c| serde_json::from_str::<crate::sources::Checkpoint>(&c.state)) {
        None => Some(done_until),
        Some(Ok(cp)) => cp.began.map(|b| b.min(done_until)),
        Some(Err(_)) => None,
    };
    let new = crate::sources::Checkpoint { done_until: Some(done_until), began, ..Default::default() };
    let text = serde_json::to_string(&new)?;
    let current = stored.map_or_else(|| "none".to_owned(), |c| c.state);
    if !yes {
        bail!("source {source}: checkpoint now {current}; would become {text}: run again with --yes to write it");
    }
    let (_lock, queue) = open_for_change(config, "queue set-checkpoint")?;
    let page =
        crate::queue::PageWrite { source: source.to_owned(), checkpoint: Some(text.clone()), ..Default::default() };
    let result = queue.store_page(page).await;
    queue.close().await?;
    result?;
    Ok(format!("source {source}: checkpoint was {current}; now {text}\n"))
}

/// The lock first (no agent may run), then the queue as the agent would open it.
/// `queue rename-sink`: the renamed sink's cursor and channel move to its configured name.
fn rename_sink(config: &Config, from: &str, to: &str) -> anyhow::Result<String> {
    let names: Vec<&str> = config.sinks.iter().map(|s| s.name.as_str()).collect();
    if !names.contains(&to) {
        bail!("--to {to:?}: no sink of that name in the configuration (sinks: {})", names.join(", "));
    }
    if names.contains(&from) {
        bail!("--from {from:?} is a configured sink: only a former name can be renamed");
    }
    if !database_path(&config.state_dir).exists() {
        return Err(crate::queue::absent(&config.state_dir).into());
    }
    let _lock = StateLock::acquire(&config.state_dir, "queue rename-sink")?;
    let renames = [(from.to_owned(), to.to_owned())];
    let done = crate::queue::rename_sink_cursors(&config.state_dir, &renames).context("cannot rename the sink")?;
    match done.first() {
        Some(r) => Ok(format!("sink {from} is now {to}: it continues after event id {}\n", r.cursor)),
        None => bail!(
            "sink {from:?} has no cursor in {} (already renamed, or never run)",
            database_path(&config.state_dir).display()
        ),
    }
}

fn open_for_change(config: &Config, what: &str) -> anyhow::Result<(StateLock, Queue)> {
    // Not a state directory yet: say so rather than create one (taking the lock would).
    let db = database_path(&config.state_dir);
    if !db.exists() {
        return Err(crate::queue::absent(&config.state_dir).into());
    }
    let lock = StateLock::acquire(&config.state_dir, what)?;
    let opts = QueueOptions {
        max_bytes: config.queue.max_bytes,
        sinks: config.sinks.iter().map(|s| s.name.clone()).collect(),
    };
    let renames: Vec<(String, String)> =
        config.sinks.iter().filter_map(|s| Some((s.renamed_from.clone()?, s.name.clone()))).collect();
    crate::queue::rename_sink_cursors(&config.state_dir, &renames)
        .context("cannot carry renamed sinks' cursors over")?;
    let queue = Queue::open(&config.state_dir, opts)
        .map_err(crate::sources::describe_damaged)
        .context("cannot open the state database")?;
    Ok((lock, queue))
}

fn selection(args: &DeadLetterSelectionArgs) -> DeadLetterSelection {
    DeadLetterSelection {
        ids: args.ids.clone(),
        source: args.source.clone(),
        sink: args.sink.clone(),
        before_ms: args.before.map(|t| t.timestamp_millis()),
    }
}

/// Every `--id` given must be among the selected: a typo must not pass as "nothing to do".
fn check_ids_found(selection: &DeadLetterSelection, selected: &[DeadLetter]) -> anyhow::Result<()> {
    let missing: Vec<String> =
        selection.ids.iter().filter(|id| !selected.iter().any(|l| l.id == **id)).map(i64::to_string).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let filtered = selection.source.is_some() || selection.sink.is_some() || selection.before_ms.is_some();
    bail!(
        "no dead letter with id {}{}; nothing changed (see `auditrelay queue dead-letters`)",
        missing.join(", "),
        if filtered { " matching the other filters" } else { "" }
    )
}

/// `source` for a record its source could not map; `sink NAME` for an event that sink refused.
fn origin(sink: Option<&str>) -> String {
    sink.map_or_else(|| "source".to_owned(), |s| format!("sink {s}"))
}

/// RFC 3339 (UTC, seconds) of a time in ms since the epoch; `-` for 0 (not recorded).
fn time_or_dash(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) if ms != 0 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        _ => "-".to_owned(),
    }
}

/// At most `max` characters of `bytes` on one line: `\n`, `\r`, `\t`, other ASCII control
/// characters and bytes that are not UTF-8 as `\xNN`, other control characters as `\u{NNNN}`,
/// and `…` when cut.
fn preview(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    let mut shown = 0;
    let mut push = |piece: &str, out: &mut String| {
        if shown >= max {
            return false;
        }
        out.push_str(piece);
        shown += 1;
        true
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let piece = match c {
                '\n' => "\\n".to_owned(),
                '\r' => "\\r".to_owned(),
                '\t' => "\\t".to_owned(),
                c if c.is_ascii_control() => format!("\\x{:02x}", u32::from(c)),
                c if c.is_control() => format!("\\u{{{:04x}}}", u32::from(c)),
                c => c.to_string(),
            };
            if !push(&piece, &mut out) {
                out.push('…');
                return out;
            }
        }
        for b in chunk.invalid() {
            if !push(&format!("\\x{b:02x}"), &mut out) {
                out.push('…');
                return out;
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Rows under a header, columns padded to their widest cell and separated by two spaces (the
/// last column unpadded).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).chain([header[i].chars().count()]).max()
    };
    let widths: Vec<usize> = (0..header.len()).map(|i| width(i).unwrap_or(0)).collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < cells.len() {
                text.push_str(&" ".repeat(widths[i].saturating_sub(cell.chars().count())));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_escapes_controls_and_bytes_that_are_not_utf8_and_marks_a_cut() {
        assert_eq!(preview(b"{\"a\":1}\n", 60), "{\"a\":1}\\n");
        assert_eq!(preview(b"ok\xff\xfe\x00\x1b\xc2\x85", 60), "ok\\xff\\xfe\\x00\\x1b\\u{0085}");
        assert_eq!(preview("é".repeat(5).as_bytes(), 3), "ééé…");
        assert_eq!(preview(b"abc", 3), "abc");
    }

    #[test]
    fn table_aligns_columns_and_leaves_no_trailing_space() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "".to_owned()],
            vec!["bbbb".into(), "x".into(), "z".into()],
        ];
        assert_eq!(table(&["K", "V", "N"], &rows), "K     V           N\na     long value\nbbbb  x           z\n");
    }

    #[test]
    fn json_has_raw_text_or_hex() {
        let mut l = DeadLetter {
            id: 7,
            source: "okta".into(),
            sink: None,
            key: "k".into(),
            reason: "bad".into(),
            raw: b"{x".to_vec(),
            created_at_ms: 0,
        };
        let v = dead_letter_json(&l);
        assert_eq!((v["raw"].as_str(), v["origin"].as_str(), v["sink"].is_null()), (Some("{x"), Some("source"), true));
        l.raw = vec![0xff, 0x00];
        l.sink = Some("siem".into());
        let v = dead_letter_json(&l);
        assert_eq!((v["raw_hex"].as_str(), v.get("raw"), v["sink"].as_str()), (Some("ff00"), None, Some("siem")));
    }
}
