//! The shared source loop: everything about *when* and *how often* to ask a vendor.
//!
//! One [`Source`] per configured organization. The loop waits on its credential's gate
//! ([`ratelimit::Gate`]: the governor limiter and the pause fed by `Retry-After` and the
//! vendor's reset headers, shared by every source on the credential), retries with full-jitter
//! exponential back-off, time windows (`start`, `lag`, `overlap`, `max_span`, the window end
//! frozen for a whole paged sweep), checkpoints and the hand-over to the queue. A vendor file
//! (`aitronos.rs`, …) only says how to ask for one page and how to read it: a vendor never
//! sleeps, retries, or writes a checkpoint itself.
//!
//! Invariants kept here (DESIGN.md): the checkpoint moves only in the transaction that stores
//! the page it covers (1); after a 429 the *same page* is asked again, never earlier than the
//! vendor allowed (5); a malformed answer is an error naming the source and the URL, retried
//! with back-off, and never moves the checkpoint (6).

pub mod ratelimit;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::full_jitter;
use crate::clock::Clock;
use crate::config::SourceConfig;
use crate::http::{BodyError, ClientError, ClientOptions, MAX_REDIRECTS, Overflow, Redirects, read_capped};
use crate::queue::{BootPause, NewDeadLetter, NewEvent, PageWrite, Queue, QueueError, StoredPause};
use crate::vendors::defined::auth::TokenError;
use crate::vendors::{VendorId, VendorSettings};
use crate::{ocsf, redact};

/// A vendor answer larger than this is refused rather than buffered (a hostile or broken
/// vendor must not exhaust memory). Aitronos pages are ≤ 100 records, far below it.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Dedupe keys are kept this long behind the next window's start, on top of the overlap, so
/// records a vendor publishes late are still recognised.
const DEDUPE_MARGIN: chrono::Duration = chrono::Duration::days(1);

/// A time range asked of a vendor; both ends are whole seconds, frozen for a whole sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Where the next page of a sweep starts. A closed set: every paging scheme our vendors use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PageCursor {
    /// `skip`/`limit` paging (Aitronos).
    Offset { skip: u64 },
    /// 1-based page numbers (ConfigCat v2).
    Number { page: u32 },
    /// One answer holds the whole window (Datafold, ConfigCat v1): no paging. Such a window is
    /// split in two when its answer exceeds the vendor's [`AnswerLimits`].
    Whole,
    /// The first page of a window paged by a cursor or a next URL (vendor definitions): not
    /// `Whole`, which the loop may split.
    First,
    /// The cursor the previous page gave (a definition's `cursor` paging).
    Cursor { cursor: String },
    /// The next page's URL the previous page gave, already checked to be on the source's
    /// origin (a definition's `next_url` or `link` paging).
    Url { url: String },
}

/// When an unpaged answer is too big to take at once (the window is halved and asked again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnswerLimits {
    pub max_records: Option<usize>,
    pub max_bytes: Option<usize>,
}

/// A window is never split below this.
const MIN_SPLIT_SPAN: chrono::Duration = chrono::Duration::seconds(1);

/// 403s with a wait in a row (a definition's `forbidden_is_rate_limit`) after which the source
/// reports them as an operator error (they are still honoured as waits).
const FORBIDDEN_LIMITS_BEFORE_OPERATOR: u32 = 5;

/// Timeouts in a row of one whole window (Astronomer's export, Datafold) before half of it is
/// asked instead: an answer too slow to finish is, like one too large, too much at once.
const TIMEOUTS_BEFORE_SPLIT: u32 = 2;

/// The smaller window asked when `w`'s whole answer was too much: its first half, down to
/// [`MIN_SPLIT_SPAN`]; `None` when it cannot be split. A half that ends at or before the
/// checkpoint is a piece of the overlap: storing it leaves `done_until` and moves
/// `Checkpoint::rechecked_until` instead ([`completed`]), so every split makes progress and the
/// overlap is still asked again whole, in pieces (records indexed late into it are not lost).
fn split_window(w: Window) -> Option<Window> {
    if w.to - w.from < MIN_SPLIT_SPAN * 2 {
        return None;
    }
    let half = whole_second(w.from + (w.to - w.from) / 2).max(w.from + MIN_SPLIT_SPAN);
    Some(Window { from: w.from, to: half })
}

/// The smaller window asked instead of a too large `w`, for a source whose checkpoint is
/// `done`. A window straddling the checkpoint is cut there first: the overlap (asked again for
/// late records) alone, then the new data. Halving it instead let a dense second inside the
/// overlap shrink the span of new data every poll asks, so the source crept past it a few
/// seconds per poll, for hours (simulation seed 3 with dense bursts). Otherwise
/// [`split_window`].
fn first_part(w: Window, done: Option<DateTime<Utc>>) -> Option<Window> {
    match done {
        Some(d) if w.from + MIN_SPLIT_SPAN <= d && d < w.to => Some(Window { from: w.from, to: d }),
        _ => split_window(w),
    }
}

/// The end of the next window starting at `from` (`done − overlap`): `span` of new data past
/// `done` (a span shrunk by splits may be shorter than the overlap: the window must still reach
/// past `done`, or storing it would move the checkpoint backwards), never longer than
/// `max_span` in all.
fn window_end(
    from: DateTime<Utc>,
    done: Option<DateTime<Utc>>,
    span: chrono::Duration,
    max_span: chrono::Duration,
) -> DateTime<Utc> {
    match done {
        Some(done) => (done + span).min(from + max_span).max(done + MIN_SPLIT_SPAN),
        None => from + span,
    }
}

/// A short digest of a page's record keys, in order: two pages with the same digest are the
/// same page sent twice.
fn page_digest(page: &Page) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    for key in page.records.iter().map(|r| &r.key).chain(page.rejected.iter().map(|r| &r.key)) {
        hash.update(key.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().take(8).fold(String::with_capacity(16), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The dead letters of one answer, logged as one line (a count, the first key and reason)
/// rather than one per record: a page of a million bad items must not write a million lines.
#[derive(Debug, Default)]
struct DeadSummary {
    count: usize,
    first: Option<(String, String)>,
}

impl DeadSummary {
    fn add(&mut self, rejected: &[Rejected]) {
        if self.first.is_none()
            && let Some(r) = rejected.first()
        {
            self.first = Some((r.key.clone(), r.reason.clone()));
        }
        self.count += rejected.len();
    }

    fn log(&self, source: &str, url: &str) {
        if let Some((key, reason)) = &self.first {
            warn!(source = %source, %url, count = self.count, first_key = %key, first_reason = %reason,
                "records dead-lettered (kept with their raw bytes: `auditrelay queue dead-letters`)");
        }
    }
}

/// What a source has durably done, stored with the events it covers (one JSON string).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every record up to this time has been stored (the last completed window's end).
    pub done_until: Option<DateTime<Utc>>,
    /// A sweep in progress: its frozen window and the next page to ask.
    pub sweep: Option<Sweep>,
    /// The overlap below `done_until` is being asked again in pieces (its whole answer was too
    /// large) and has been up to here: the next window starts here instead of at
    /// `done_until − overlap`. Absent otherwise (and in checkpoints written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rechecked_until: Option<DateTime<Utc>>,
    /// Everything up to `done_until` was asked when it was already older than `lag + overlap` on
    /// the vendor's clock (a window of history, catching up): no record there can still arrive
    /// late, so the next window starts at `done_until` and does not ask the overlap again. A
    /// source far behind on dense data would otherwise spend most of its requests re-asking
    /// overlaps it read a moment before (simulation seed 41 with dense bursts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settled: bool,
    /// The start of this source's first window, recorded when that window was cut and carried
    /// unchanged after; no later window starts before it (its overlap stops there), so the
    /// source never asked anything earlier: `backfill` ends its ranges here. Absent in
    /// checkpoints written before it existed (those sources may have asked up to `overlap`
    /// before their start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub began: Option<DateTime<Utc>>,
}

impl Checkpoint {
    /// Where the source asks again when it resumes from this checkpoint: its sweep in progress,
    /// or the window after `done_until` (the overlap below it); `None` before its first window.
    /// What lies before it the source will not ask again.
    pub fn asks_again_from(&self, overlap: Duration) -> Option<DateTime<Utc>> {
        let next = self.done_until.map(|done| {
            let (from, _) = window_start(done, self.rechecked_until, chrono_dur(overlap), self.settled);
            self.began.map_or(from, |b| from.max(b))
        });
        let sweep = self.sweep.as_ref().map(|s| s.window.from);
        match (next, sweep) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What a stored checkpoint says, for an operator reading about a damaged database: "collected
/// up to <done_until>", as stored; `None` when it has no `done_until` text (then it is shown as
/// stored). Read loosely, as JSON, so a checkpoint this version could not load still helps.
pub fn describe_checkpoint(state: &str) -> Option<String> {
    let value = serde_json::from_str::<serde_json::Value>(state).ok()?;
    let done = value.get("done_until")?.as_str()?;
    Some(format!("collected up to {done}"))
}

/// [`describe_checkpoint`] for each checkpoint a damaged database's error lists (the queue keeps
/// them opaque); any other error passes unchanged. For the callers of [`Queue::open`].
pub fn describe_damaged(mut e: QueueError) -> QueueError {
    if let QueueError::Damaged { checkpoints, .. } = &mut e {
        for checkpoint in checkpoints {
            checkpoint.described = describe_checkpoint(&checkpoint.state);
        }
    }
    e
}

/// Where the window after checkpoint `cp` starts, for a source with a checkpoint time:
/// `done_until − overlap`, or where a re-ask of that overlap in pieces has got to, or
/// `done_until` itself when what lies before it was settled when asked. The second value says
/// whether such a re-ask is in progress (it goes on at once, without waiting for the next poll).
fn window_start(
    done: DateTime<Utc>,
    rechecked: Option<DateTime<Utc>>,
    overlap: chrono::Duration,
    settled: bool,
) -> (DateTime<Utc>, bool) {
    if settled {
        return (done, false);
    }
    let from = done - overlap;
    // Re-asked up to `done` itself: the overlap is done, the window goes on from `done`.
    match rechecked.filter(|r| *r <= done) {
        Some(r) => (r.max(from), true),
        None => (from, false),
    }
}

/// The checkpoint after `window` was stored whole, `end` being its end as the vendor's clock
/// allows ([`Source::bounded_by_vendor`]). Past `done` the checkpoint moves to `end`, never
/// backwards; a piece of the overlap (ending at or before `done`) leaves `done` and records how
/// far the overlap has been asked again. `settled`: the window was asked when its end was
/// already older than `lag + overlap` ([`Checkpoint::settled`]).
fn completed(done: Option<DateTime<Utc>>, window: &Window, end: DateTime<Utc>, settled: bool) -> Checkpoint {
    match done {
        Some(done) if window.to <= done => Checkpoint {
            done_until: Some(done),
            sweep: None,
            rechecked_until: Some(window.to),
            settled: false,
            began: None,
        },
        Some(done) => Checkpoint {
            done_until: Some(done.max(end)),
            sweep: None,
            rechecked_until: None,
            settled: settled && end >= done,
            began: None,
        },
        None => Checkpoint { done_until: Some(end), sweep: None, rechecked_until: None, settled, began: None },
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    pub window: Window,
    pub page: PageCursor,
    /// Pages of this sweep already stored; the sweep stops with an error rather than ask more
    /// than `max_pages` (a vendor that never stops paging). 0 in checkpoints written before
    /// the count existed: those sweeps count from where they resume.
    #[serde(default)]
    pub pages: u32,
    /// A digest of the last stored page's record keys ([`page_digest`]): a page that repeats it
    /// ends the sweep (a vendor whose `has_more` never turns false). Kept across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_page: Option<String>,
    /// Digests of the pages before `last_page` (at most [`PAGE_MEMORY`]): a page repeating one
    /// of them is a cycle (A, B, A, B …), a repeat too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_pages: Vec<String>,
    /// The sweep was started again from its first page after a repeat: records inserted into
    /// the window while paging (late ones, newest first) shift every later page by their count,
    /// so a repeat may be a shifted page, not a vendor bug. A second repeat ends the sweep.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restarted: bool,
    /// The vendor's clock when the sweep's first page was stored: a window cut by a local clock
    /// ahead of the vendor's is checkpointed no later than this, since records arriving during
    /// the sweep landed on pages already read (newest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_start: Option<DateTime<Utc>>,
}

/// How many page digests a sweep keeps to recognise a repeat or a cycle.
const PAGE_MEMORY: usize = 16;

impl Sweep {
    /// A sweep of `window` from `page`, nothing of it stored yet.
    pub fn new(window: Window, page: PageCursor) -> Sweep {
        Sweep {
            window,
            page,
            pages: 0,
            last_page: None,
            earlier_pages: Vec::new(),
            restarted: false,
            vendor_start: None,
        }
    }
}

/// One record read from a page: its dedupe key, event time and the vendor's bytes verbatim.
#[derive(Debug)]
pub struct Record {
    pub key: String,
    pub time: DateTime<Utc>,
    pub raw: Box<RawValue>,
}

/// A record the vendor sent that cannot become an event; it goes to the dead-letter table.
#[derive(Debug)]
pub struct Rejected {
    pub key: String,
    pub reason: String,
    pub raw: Vec<u8>,
}

/// One page as the vendor file read it.
#[derive(Debug, Default)]
pub struct Page {
    pub records: Vec<Record>,
    pub rejected: Vec<Rejected>,
    /// The next page of the same sweep, or `None` when the sweep is complete.
    pub next: Option<PageCursor>,
    /// A streamed answer: its records already sit in the queue's staging area (counted here)
    /// and enter the queue with the checkpoint.
    pub staged: Option<Decoded>,
    /// A whole-window answer held more than [`MAX_ANSWER_ITEMS`] items: only the first were
    /// read, so the page cannot be taken; the loop splits the window (or retries if it cannot).
    pub oversized: bool,
}

/// The most items one answer is read for, whatever the vendor sends: the body cap alone does not
/// bound the work (a 4 MB page of `[1,1,…]` is two million items). A paged vendor's page is
/// further bounded by its page size ([`page_items`]); a whole-window answer beyond this is split.
pub const MAX_ANSWER_ITEMS: usize = 100_000;

/// How many items more than the page size asked for a page may hold before it is malformed (a
/// vendor rounding its page size up, records inserted while paging), never hundreds more.
pub const PAGE_SLACK: usize = 100;

/// The item array of an answer, read without trusting its length or its items' shape: the first
/// item that is not a JSON object makes the whole answer malformed (at once, before anything is
/// built for the items), and items past [`MAX_ANSWER_ITEMS`] are skipped unread (`overflow`).
#[derive(Debug, Default)]
pub struct Items<'a> {
    pub list: Vec<&'a RawValue>,
    /// More items than [`MAX_ANSWER_ITEMS`]: the rest were skipped.
    pub overflow: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for Items<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Items<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of JSON objects")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Items<'a>, A::Error> {
                let mut items = Items::default();
                let mut n = 0usize;
                while let Some(raw) = seq.next_element::<&'a RawValue>()? {
                    n += 1;
                    if !raw.get().starts_with('{') {
                        let shown = excerpt(raw.get());
                        return Err(serde::de::Error::custom(format!("item {n} is not a JSON object: {shown}")));
                    }
                    if items.list.len() < MAX_ANSWER_ITEMS {
                        items.list.push(raw);
                    } else {
                        items.overflow = true;
                    }
                }
                Ok(items)
            }
        }
        d.deserialize_seq(Visit(std::marker::PhantomData))
    }
}

/// A paged vendor's items, refused as a malformed page when there are more than the page size
/// asked for plus [`PAGE_SLACK`].
pub fn page_items(items: Items<'_>, page_size: u32) -> Result<Vec<&RawValue>, BadPage> {
    let cap = page_size as usize + PAGE_SLACK;
    if items.overflow || items.list.len() > cap {
        let n = if items.overflow { format!("more than {MAX_ANSWER_ITEMS}") } else { items.list.len().to_string() };
        return Err(BadPage(format!("{n} items on a page of {page_size} (at most {cap} taken): not a page")));
    }
    Ok(items.list)
}

impl Page {
    /// A page of JSON records, each read by [`read_record`] with the vendor's id and time
    /// fields: readable ones become records, the others rejected (dead letters). No next page.
    pub fn of_records(items: Vec<&RawValue>, id_field: &str, time_field: &str) -> Page {
        let mut page = Page::default();
        for raw in items {
            match read_record(raw, id_field, time_field) {
                Ok(record) => page.records.push(record),
                Err(rejected) => page.rejected.push(rejected),
            }
        }
        page
    }
}

/// Why decoding stopped before the end of the answer.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Broken or truncated gzip, or the connection failed mid-body: the window is asked again.
    #[error("{0}")]
    Broken(String),
    /// More decoded bytes than the vendor's cap: the window is split.
    #[error("decoded answer larger than {0} bytes")]
    TooLarge(usize),
    /// The receiving side went away (shutdown, or the queue failed).
    #[error("stopped by the receiver")]
    Stopped,
}

/// What one decoded stream held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub records: usize,
    pub rejected: usize,
    pub blank: usize,
}

/// A page that cannot be read at all; the whole answer is retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadPage(pub String);

pub use ratelimit::{Verdict, budget_pause, classify};

/// Parses a vendor's event time in every form we have seen or been told to assume: RFC 3339
/// with or without fraction or offset, naive date-times as UTC, and bare dates (UTC midnight).
pub fn parse_event_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, fmt) {
            return Some(t.and_utc());
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(text, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// Reads one record of a page: its dedupe key from the top-level field `id_field` (a non-empty
/// string or a number), its event time from `time_field` (any form [`parse_event_time`]
/// knows). A record without a usable id or time is rejected (dead-lettered) with its raw
/// bytes; the rest of the page goes on.
pub fn read_record(raw: &RawValue, id_field: &str, time_field: &str) -> Result<Record, Rejected> {
    let text = raw.get();
    let reject = |key: String, reason: String| Rejected { key, reason, raw: text.as_bytes().to_vec() };
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = serde::Deserializer::deserialize_any(&mut de, TwoFields { id_field, time_field })
        .map_err(|e| reject(content_key(text.as_bytes()), format!("record is not a JSON object ({e})")))?;
    let field = |v: Option<&RawValue>| v.map(|v| serde_json::from_str::<serde_json::Value>(v.get()));
    let key = match field(fields.id) {
        Some(Ok(serde_json::Value::String(s))) if !s.trim().is_empty() => s,
        Some(Ok(serde_json::Value::Number(n))) => n.to_string(),
        _ => return Err(reject(content_key(text.as_bytes()), format!("record has no usable `{id_field}`"))),
    };
    let time = match field(fields.time) {
        Some(Ok(serde_json::Value::String(s))) => parse_event_time(&s),
        _ => None,
    };
    let Some(time) = time else {
        let shown = fields.time.map_or("missing", RawValue::get);
        return Err(reject(key, format!("`{time_field}` is not a date-time: {shown}")));
    };
    Ok(Record { key, time, raw: raw.to_owned() })
}

/// The two top-level members [`read_record`] needs, borrowed from the record's text; every
/// other member is only skipped (a record is read without building a map of it). As with a
/// map, the last of repeated names wins; anything but an object is an error.
struct TwoFields<'f> {
    id_field: &'f str,
    time_field: &'f str,
}

/// A member name, borrowed from the text unless it has escapes (serde's own `Cow` impl always
/// copies).
struct Name<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Visit)
    }
}

#[derive(Default)]
struct Fields<'a> {
    id: Option<&'a RawValue>,
    time: Option<&'a RawValue>,
}

impl<'de> serde::de::Visitor<'de> for TwoFields<'_> {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Fields<'de>, M::Error> {
        let mut fields = Fields::default();
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            if name == self.id_field {
                fields.id = Some(map.next_value()?);
            } else if name == self.time_field {
                fields.time = Some(map.next_value()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(fields)
    }
}

/// A stable key for a record that has no usable id: a name-based UUID over its bytes.
pub fn content_key(raw: &[u8]) -> String {
    let ns = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"https://auditrelay.dev/record");
    format!("sha1:{}", uuid::Uuid::new_v5(&ns, raw).simple())
}

/// Counters of one source, shared with the daemon's summary (and later the metrics endpoint).
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Failing now (requests failed since the last page): `/ready` says degraded.
    pub trouble: crate::backoff::Trouble,
    pub requests: AtomicU64,
    pub pages: AtomicU64,
    pub fetched: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub rate_limited: AtomicU64,
    pub retries: AtomicU64,
    pub queue_full_waits: AtomicU64,
    pub window_splits: AtomicU64,
    /// Answers that could not be read: malformed pages, broken or oversized bodies, cut streams.
    pub bad_answers: AtomicU64,
    /// Waits a vendor asked for (`Retry-After`, a reset header) longer than `max_retry_after`,
    /// cut to it.
    pub retry_after_capped: AtomicU64,
    /// Pieces of an overlap asked again on their own because the whole window's answer was too
    /// large (`Checkpoint::rechecked_until`): the overlap is still asked whole, for late records.
    pub overlap_pieces: AtomicU64,
    /// Whole-window answers over the vendor's caps taken as they were, because their window was
    /// already the smallest (`MIN_SPLIT_SPAN`) and they had been read whole.
    pub oversized_taken: AtomicU64,
    /// Sweeps ended because a page repeated the one before it (same ids): a vendor paging bug.
    pub repeated_pages: AtomicU64,
    /// Redirects not followed because they led to another origin (scheme, host, port) or past
    /// the redirect limit: the credential never leaves its origin.
    pub redirects_refused: AtomicU64,
    /// Wall time (ms since the epoch) of the last page committed; 0 before the first.
    pub last_success_ms: AtomicI64,
    /// The checkpoint's `done_until` (ms since the epoch): everything before it is collected;
    /// 0 before the first sweep ends.
    pub checkpoint_ms: AtomicI64,
    /// Records stored only thanks to the overlap: their event time lies before the checkpoint
    /// the window started from (the vendor published them late).
    pub late_records: AtomicU64,
    /// The largest lateness seen (checkpoint minus event time of a late record), in ms.
    pub max_lateness_ms: AtomicU64,
    /// 401/403 answers to a credential that has worked, asked again after a back-off.
    pub auth_retries: AtomicU64,
    /// OAuth2 (vendor definitions): access tokens the vendor refused (401), dropped and
    /// fetched again at once.
    pub token_refreshes: AtomicU64,
    /// OAuth2: requests not sent because the token endpoint could not be reached or answered
    /// no token (retried with back-off).
    pub token_failures: AtomicU64,
    /// Times the vendor's clock (its answers' `Date`) was found more than a minute from ours.
    pub clock_skew_warnings: AtomicU64,
    /// Checkpoints cut back to the vendor's clock because the window ended in its future.
    pub checkpoints_clamped: AtomicU64,
    /// Rate-limit pauses found stored at start (a restart or reload inside one) and honoured.
    pub pauses_restored: AtomicU64,
    /// The vendor's clock minus ours, in ms, from its last answer with a `Date` (0 before).
    pub vendor_clock_offset_ms: AtomicI64,
    /// Answers by HTTP status; 0 counts requests that got no answer (connection, timeout).
    statuses: Mutex<BTreeMap<u16, u64>>,
    /// Each request to the vendor, from sending it to its status and headers, or its failure
    /// (the body is read after: a streamed export's is not in it).
    pub request_seconds: crate::latency::Histogram<crate::latency::HttpBuckets>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStatsSnapshot {
    pub requests: u64,
    pub pages: u64,
    pub fetched: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub rate_limited: u64,
    pub retries: u64,
    pub queue_full_waits: u64,
    pub window_splits: u64,
    pub bad_answers: u64,
    pub retry_after_capped: u64,
    pub overlap_pieces: u64,
    pub oversized_taken: u64,
    pub repeated_pages: u64,
    pub redirects_refused: u64,
    pub late_records: u64,
    pub max_lateness_ms: u64,
    pub auth_retries: u64,
    pub token_refreshes: u64,
    pub token_failures: u64,
    pub clock_skew_warnings: u64,
    pub checkpoints_clamped: u64,
    pub pauses_restored: u64,
}

impl SourceStats {
    /// Requests by the status they were answered with (0: no answer), by status.
    pub fn statuses(&self) -> Vec<(u16, u64)> {
        let statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        statuses.iter().map(|(s, n)| (*s, *n)).collect()
    }

    fn count_status(&self, status: u16) {
        let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        *statuses.entry(status).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> SourceStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SourceStatsSnapshot {
            requests: get(&self.requests),
            pages: get(&self.pages),
            fetched: get(&self.fetched),
            stored: get(&self.stored),
            duplicates: get(&self.duplicates),
            dead_lettered: get(&self.dead_lettered),
            rate_limited: get(&self.rate_limited),
            retries: get(&self.retries),
            queue_full_waits: get(&self.queue_full_waits),
            window_splits: get(&self.window_splits),
            bad_answers: get(&self.bad_answers),
            retry_after_capped: get(&self.retry_after_capped),
            overlap_pieces: get(&self.overlap_pieces),
            oversized_taken: get(&self.oversized_taken),
            repeated_pages: get(&self.repeated_pages),
            redirects_refused: get(&self.redirects_refused),
            late_records: get(&self.late_records),
            max_lateness_ms: get(&self.max_lateness_ms),
            auth_retries: get(&self.auth_retries),
            token_refreshes: get(&self.token_refreshes),
            token_failures: get(&self.token_failures),
            clock_skew_warnings: get(&self.clock_skew_warnings),
            checkpoints_clamped: get(&self.checkpoints_clamped),
            pauses_restored: get(&self.pauses_restored),
        }
    }
}

/// The HTTP client of one source ([`crate::http::client`]): the vendor's certificate always
/// verified, against `ca_file` when set, else the system's roots; redirects followed only on the
/// request's own origin ([`Redirects::SameOrigin`]); `request_timeout` set on each request. The
/// error names the source and the CA file.
pub fn http_client(cfg: &SourceConfig) -> Result<reqwest::Client, String> {
    let verifier =
        crate::tls::server_verifier(cfg.ca_file.as_deref()).map_err(|e| format!("source {}: {e}", cfg.name))?;
    let opts = ClientOptions {
        redirects: Redirects::SameOrigin,
        verifier: Some(verifier),
        offer_h2: false,
        connect_timeout: Duration::from_secs(10),
        timeout: None,
        headers: HeaderMap::new(),
        max_idle_per_host: Some(crate::http::SOURCE_IDLE_CONNECTIONS_PER_HOST),
    };
    crate::http::client(opts).map_err(|e| match e {
        ClientError::Tls(e) => format!("source {}: {e}", cfg.name),
        ClientError::Build(e) => format!("source {}: cannot set up its HTTP client: {e}", cfg.name),
    })
}

/// `check --connect`: one request for the last minute's first page, the cheapest question
/// the vendor's audit API answers, read for its status only. `Ok`: what was proven;
/// `Err`: why the source cannot work (a refused credential names no secret).
pub async fn probe(cfg: &SourceConfig, http: &reqwest::Client, clock: &Clock) -> Result<String, String> {
    let vendor = &cfg.vendor;
    let to = whole_second(clock.now_utc());
    let window = Window { from: to - chrono::Duration::minutes(1), to };
    let bearer = vendor.bearer(http, &cfg.base_url, clock).await.map_err(|e| e.to_string())?;
    let request = vendor
        .request(http, &cfg.base_url, &window, &vendor.first_page(), bearer.as_ref())
        .map_err(|e| format!("cannot build the request: {e}"))?
        .timeout(cfg.request_timeout)
        .build()
        .map_err(|e| format!("cannot build the request: {}", e.without_url()))?;
    let url = redact::url(request.url());
    let response = http.execute(request).await.map_err(|e| format!("{url}: {}", transport_error(e)))?;
    let status = response.status();
    match ratelimit::classify_for(status, response.headers(), clock.now_utc(), vendor.rate_signals().as_ref()) {
        Verdict::Ok => Ok(format!("{url}: answered {status}; credential accepted")),
        Verdict::RateLimited(_) => {
            Ok(format!("{url}: answered {status} (rate limited now; the credential was not refused)"))
        }
        Verdict::Retryable(_) => Err(format!("{url}: answered {status}: the vendor is unavailable; try again later")),
        Verdict::Unauthorized | Verdict::Fatal => {
            let hint = match status.as_u16() {
                401 | 403 => ": the credential is refused (check the key, its role and the organization_id)",
                404 => ": no such organization or endpoint (check organization_id and base_url)",
                _ => "",
            };
            Err(format!("{url}: answered {status}{hint}"))
        }
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What a source is doing now; observable through [`Source::subscribe_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    Starting,
    /// Asking for or storing pages.
    Fetching,
    /// Waiting out a 429, a reset header or a back-off.
    Paused,
    /// The queue is at `queue.max_bytes`: no request until sinks free room.
    QueueFull,
    /// Caught up: waiting for the next poll.
    Idle,
    Stopped,
}

/// How long a source runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// The daemon: poll forever.
    Follow,
    /// Stop once less than one poll interval of data is left to ask for (`run --once`, demo).
    CatchUp,
}

/// Why a source's loop ended.
#[derive(Debug)]
pub enum SourceExit {
    Shutdown,
    CaughtUp,
    Failed(SourceError),
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {name}: {url} answered {status}: {detail}")]
    Rejected { name: String, url: String, status: u16, detail: String },
    #[error(
        "source {name}: its checkpoint in the state database is damaged ({detail}); refusing to start over silently — see README \"Damaged state\""
    )]
    BadCheckpoint { name: String, detail: String },
    #[error("source {name}: {err}")]
    Queue { name: String, err: QueueError },
    #[error(
        "source {name}: paging did not end after {pages} pages (max_pages) of the window {from} to {to}; \
         not asking {url}; the records of those pages are stored and the checkpoint stays on this window — \
         raise max_pages if the vendor really holds that much"
    )]
    TooManyPages { name: String, url: String, from: String, to: String, pages: u32 },
}

/// How far a checkpoint may lie beyond the vendor's clock (its last `Date`, whole seconds,
/// plus the time since): the answer's latency and the header's rounding, nothing more.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(5);

/// How long a stopping source (shutdown, reload) still waits for the answer to a request in
/// flight, so that a pause it announces is not lost with it (review R1: a reload during a
/// request drew a second 429 from the replacement).
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(5);

/// The vendor's clock and ours may differ this much before a warning says so.
const CLOCK_WARN: chrono::Duration = chrono::Duration::minutes(1);

/// One configured organization of one vendor, with its checkpoint and its credential's gate
/// (limiter and rate-limit pause, shared with every source on the same credential).
pub struct Source {
    cfg: SourceConfig,
    vendor: VendorSettings,
    http: reqwest::Client,
    queue: Queue,
    clock: Clock,
    /// The credential's limiter and rate-limit pause (429s, spent budgets), shared.
    gate: Arc<ratelimit::Gate>,
    /// This source's own back-off: no request leaves before this instant (errors, not limits).
    paused_until: tokio::time::Instant,
    /// The vendor's clock: the `Date` of its last answer and when (monotonic) it arrived.
    vendor_clock: Option<(DateTime<Utc>, tokio::time::Instant)>,
    /// The vendor's clock was more than [`CLOCK_WARN`] from ours at the last answer (warned).
    clock_skewed: bool,
    /// The credential was accepted before: this process had a 2xx, or the source has a
    /// checkpoint (written only after a 2xx). A 401/403 then may be transient.
    worked_before: bool,
    /// An OAuth2 access token was refused (401) and the page asked again with a new one: a
    /// second 401 in a row is the usual refusal.
    token_retried: bool,
    /// 403s read as rate limits in a row (`forbidden_is_rate_limit`), since the last 2xx.
    forbidden_limits: u32,
    /// The checkpoint the current window started from: a record dated before it was published
    /// late and is found only thanks to the overlap.
    late_before: Option<DateTime<Utc>>,
    /// Late records of the page being stored (count, largest lateness in ms), counted once
    /// their page is committed.
    pending_late: (u64, u64),
    rng: fastrand::Rng,
    stats: Arc<SourceStats>,
    state: tokio::sync::watch::Sender<SourceState>,
    /// The span new windows get: `max_span`, or less after an unpaged answer was too large
    /// (doubling back towards `max_span` while answers stay small).
    span: Duration,
    mapper: VendorId,
}

/// How one attempt at a page ended.
enum Attempt {
    Page(Page),
    /// The unpaged answer exceeded the vendor's limits: halve the window and ask again.
    Split(&'static str),
    Retry {
        delay: Duration,
        rate_limited: bool,
        /// No complete answer within `request_timeout` (counts toward splitting a whole window).
        timed_out: bool,
    },
    /// 401/403: final unless the credential has worked ([`ratelimit::AUTH_RETRIES`]).
    Unauthorized(SourceError),
    Fatal(SourceError),
}

impl Source {
    pub fn new(cfg: SourceConfig, http: reqwest::Client, queue: Queue, clock: Clock) -> Source {
        let gate = Arc::new(ratelimit::Gate::new(&cfg, &clock));
        Source::with_gate(cfg, http, queue, clock, gate)
    }

    /// A source whose credential's gate is shared with other sources ([`ratelimit::Gates`]).
    pub fn with_gate(
        cfg: SourceConfig,
        http: reqwest::Client,
        queue: Queue,
        clock: Clock,
        gate: Arc<ratelimit::Gate>,
    ) -> Source {
        Source {
            vendor: cfg.vendor.clone(),
            gate,
            paused_until: clock.now(),
            vendor_clock: None,
            clock_skewed: false,
            worked_before: false,
            token_retried: false,
            forbidden_limits: 0,
            late_before: None,
            pending_late: (0, 0),
            rng: fastrand::Rng::new(),
            stats: Arc::default(),
            state: tokio::sync::watch::Sender::new(SourceState::Starting),
            span: cfg.max_span,
            mapper: cfg.vendor.id(),
            cfg,
            http,
            queue,
            clock,
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn stats(&self) -> Arc<SourceStats> {
        Arc::clone(&self.stats)
    }

    pub fn subscribe_state(&self) -> tokio::sync::watch::Receiver<SourceState> {
        self.state.subscribe()
    }

    /// Runs the loop, then marks the source stopped.
    pub async fn run(self, mode: RunMode, shutdown: CancellationToken) -> SourceExit {
        let state = self.state.clone();
        let exit = self.run_loop(mode, shutdown).await;
        state.send_replace(SourceState::Stopped);
        exit
    }

    /// Ends the failing streak under way, if any, with an INFO line saying so.
    fn recovered(&self) {
        let now_ms = self.clock.now_utc().timestamp_millis();
        if let Some((failures, after)) = self.stats.trouble.succeeded(now_ms) {
            let name = &self.cfg.name;
            info!(source = %name, failures, after = %humantime::format_duration(after),
                "source {name} recovered after {failures} failures / {}", humantime::format_duration(after));
        }
    }

    /// Runs until shutdown, until caught up (in [`RunMode::CatchUp`]), or until a fatal error
    /// in catch-up mode. Cancellation is only observed while waiting or talking to the vendor,
    /// never between receiving a page and committing it.
    async fn run_loop(mut self, mode: RunMode, shutdown: CancellationToken) -> SourceExit {
        let name = self.cfg.name.clone();
        // The loop's big steps are boxed (a request and its page's mapping, the store, the
        // start): a task holds its future at its largest state for as long as it lives, and
        // a source is idle most of its life, holding little (the test build: 7,616 bytes a
        // task before, 4,592 after; `test_an_idle_source_task_keeps_little_memory`).
        let mut checkpoint = match Box::pin(self.load_checkpoint()).await {
            Ok(c) => c,
            Err(e) => return SourceExit::Failed(e),
        };
        self.publish_checkpoint(&checkpoint);
        self.worked_before = checkpoint != Checkpoint::default();
        Box::pin(self.restore_pause()).await;
        loop {
            if shutdown.is_cancelled() {
                return SourceExit::Shutdown;
            }
            if self.queue.is_full() {
                self.state.send_replace(SourceState::QueueFull);
                bump(&self.stats.queue_full_waits, 1);
                warn!(source = %name, queued_bytes = self.queue.queued_bytes(), max_bytes = self.queue.max_bytes(),
                    "queue is full: fetching paused (checkpoint kept; the data waits at the vendor); queued events and dead \
                     letters count against queue.max_bytes: `auditrelay queue stats` shows which, and dead letters are \
                     purged with `auditrelay queue purge-dead-letters` (agent stopped)");
                // Degraded on /ready while it lasts: collection has stopped, and with dead letters
                // filling the queue it does not resume without an operator.
                let now_ms = self.clock.now_utc().timestamp_millis();
                let why = format!(
                    "queue is full ({} of {} bytes; queued events and dead letters count): fetching paused",
                    self.queue.queued_bytes(),
                    self.queue.max_bytes()
                );
                self.stats.trouble.failed(now_ms, why, false);
                tokio::select! {
                    _ = self.queue.wait_for_room() => {
                        info!(source = %name, "queue has room again: fetching resumed");
                        self.recovered();
                    }
                    _ = shutdown.cancelled() => return SourceExit::Shutdown,
                }
            }
            let mut sweep = match &checkpoint.sweep {
                Some(s) => s.clone(),
                None => match self.next_window(&checkpoint) {
                    Ok(window) => Sweep::new(window, self.vendor.first_page()),
                    Err(wait) => {
                        if mode == RunMode::CatchUp {
                            return SourceExit::CaughtUp;
                        }
                        self.state.send_replace(SourceState::Idle);
                        tokio::select! {
                            _ = self.clock.sleep(wait) => continue,
                            _ = shutdown.cancelled() => return SourceExit::Shutdown,
                        }
                    }
                },
            };
            self.late_before = checkpoint.done_until;
            let page = match Box::pin(self.fetch_page(&mut sweep, checkpoint.done_until, mode, &shutdown)).await {
                Some(Ok(page)) => page,
                Some(Err(e)) => return SourceExit::Failed(e),
                None => return SourceExit::Shutdown,
            };
            let digest = page.next.is_some().then(|| page_digest(&page));
            let repeated =
                digest.as_ref().is_some_and(|d| sweep.last_page.as_ref() == Some(d) || sweep.earlier_pages.contains(d));
            if repeated {
                bump(&self.stats.repeated_pages, 1);
                if sweep.restarted {
                    warn!(source = %name, from = %sweep.window.from, to = %sweep.window.to, pages = sweep.pages + 1,
                        "the vendor sent a page it had sent before (same ids) again, after the window was asked \
                         again from its first page, and says there are more: ending this window's sweep here (its \
                         records are stored); a vendor paging bug");
                } else {
                    warn!(source = %name, from = %sweep.window.from, to = %sweep.window.to, pages = sweep.pages + 1,
                        "the vendor sent a page it had sent before (same ids) and says there are more: asking the \
                         window again from its first page (records inserted while paging shift the pages)");
                }
            }
            let mut next = match &page.next {
                Some(cursor) if !repeated => Checkpoint {
                    done_until: checkpoint.done_until,
                    rechecked_until: checkpoint.rechecked_until,
                    settled: checkpoint.settled,
                    sweep: Some(Sweep {
                        window: sweep.window,
                        page: cursor.clone(),
                        pages: sweep.pages.saturating_add(1),
                        earlier_pages: {
                            let mut earlier = sweep.earlier_pages.clone();
                            earlier.extend(sweep.last_page.clone());
                            let excess = earlier.len().saturating_sub(PAGE_MEMORY);
                            earlier.drain(..excess);
                            earlier
                        },
                        last_page: digest,
                        restarted: sweep.restarted,
                        vendor_start: sweep.vendor_start.or_else(|| self.vendor_now()),
                    }),
                    began: None,
                },
                // A first repeat: the same window again from its first page (the page just read
                // is stored; dedupe drops what the second pass finds again).
                Some(_) if !sweep.restarted => Checkpoint {
                    done_until: checkpoint.done_until,
                    rechecked_until: checkpoint.rechecked_until,
                    settled: checkpoint.settled,
                    sweep: Some(Sweep { restarted: true, ..Sweep::new(sweep.window, self.vendor.first_page()) }),
                    began: None,
                },
                // The window is done: the checkpoint moves to its end (kept at the vendor's clock
                // when ours ran ahead), never backwards; a piece of the overlap moves only how far
                // the overlap was asked again.
                _ => {
                    // Settled if, when the vendor answered the sweep's first page, the window's
                    // end was already older than lag + overlap: nothing there can still arrive.
                    // The answer's `Date` may be written up to `request_timeout` after the
                    // vendor read its data (a slow export): that much more age is asked for.
                    let asked = sweep.vendor_start.or_else(|| self.vendor_now());
                    let age =
                        chrono_dur(self.cfg.lag) + chrono_dur(self.cfg.overlap) + chrono_dur(self.cfg.request_timeout);
                    let settled = asked.is_some_and(|at| sweep.window.to <= at - age);
                    completed(
                        checkpoint.done_until,
                        &sweep.window,
                        self.bounded_by_vendor(&sweep, checkpoint.done_until),
                        settled,
                    )
                }
            };
            // Recorded with the first window (no `done_until` yet: this sweep is the first),
            // carried unchanged after; an older checkpoint past its first window stays without.
            next.began = checkpoint.began.or(checkpoint.done_until.is_none().then_some(sweep.window.from));
            if let Err(e) = Box::pin(self.store(page, &sweep, &next, &shutdown)).await {
                return e;
            }
            self.stats.last_success_ms.store(self.clock.now_utc().timestamp_millis(), Ordering::Relaxed);
            self.publish_checkpoint(&next);
            checkpoint = next;
        }
    }

    fn publish_checkpoint(&self, cp: &Checkpoint) {
        if let Some(done) = cp.done_until {
            self.stats.checkpoint_ms.store(done.timestamp_millis(), Ordering::Relaxed);
        }
    }

    /// The vendor's clock now: the `Date` of its last answer plus the (monotonic) time since,
    /// so a step of our wall clock does not move it.
    fn vendor_now(&self) -> Option<DateTime<Utc>> {
        let (date, at) = self.vendor_clock?;
        Some(date + chrono_dur(self.clock.now().saturating_duration_since(at)))
    }

    /// "Now" for cutting windows: ours, or the vendor's where that is earlier.
    fn window_now(&self) -> DateTime<Utc> {
        let local = self.clock.now_utc();
        self.vendor_now().map_or(local, |vendor| vendor.min(local))
    }

    /// Reads the vendor's clock from an answer's `Date`; warns (once per change, counted) when
    /// it is more than a minute from ours.
    fn observe_vendor_clock(&mut self, headers: &HeaderMap) {
        let Some(date) = crate::backoff::answer_date(headers) else { return };
        let local = self.clock.now_utc();
        self.vendor_clock = Some((date, self.clock.now()));
        let offset = date - local;
        self.stats.vendor_clock_offset_ms.store(offset.num_milliseconds(), Ordering::Relaxed);
        let skewed = offset.abs() > CLOCK_WARN;
        if skewed && !self.clock_skewed {
            bump(&self.stats.clock_skew_warnings, 1);
            warn!(source = %self.cfg.name, vendor_date = %date, local = %local, offset_seconds = offset.num_seconds(),
                "the vendor's clock (its answers' Date) and ours differ by more than a minute; \
                 windows are cut by the earlier of the two and no checkpoint passes the vendor's");
        } else if !skewed && self.clock_skewed {
            info!(source = %self.cfg.name, offset_seconds = offset.num_seconds(), "the vendor's clock and ours agree again");
        }
        self.clock_skewed = skewed;
    }

    /// The `done_until` a completed window may store: its end, unless that lies beyond the
    /// vendor's clock less `lag` (our clock ran ahead when the window was cut), then the vendor's
    /// clock less `lag` as of when the sweep's first page was stored (records arriving during a longer sweep landed on
    /// pages already read) or now — never before the previous checkpoint or the window's start.
    fn bounded_by_vendor(&self, sweep: &Sweep, previous: Option<DateTime<Utc>>) -> DateTime<Utc> {
        let window = &sweep.window;
        let Some(vendor) = sweep.vendor_start.or_else(|| self.vendor_now()) else { return window.to };
        // The vendor's horizon, as a window cut by its clock would have ended: records dated
        // within `lag` of its clock may still be arriving there.
        let horizon = vendor - chrono_dur(self.cfg.lag);
        if window.to <= horizon + CLOCK_SKEW {
            return window.to;
        }
        let bounded = whole_second(horizon).max(window.from).max(previous.unwrap_or(window.from)).min(window.to);
        bump(&self.stats.checkpoints_clamped, 1);
        warn!(source = %self.cfg.name, window_end = %window.to, vendor_now = %vendor, checkpoint = %bounded,
            "the window ended in the vendor's future (our clock ran ahead): checkpoint kept at the vendor's clock less lag");
        bounded
    }

    /// A rate-limit pause stored by an earlier run (or a source stopped by a reload) that is
    /// not over: honoured before the first request. Measured by time since boot when stored in
    /// this boot (a wall-clock step across the restart does not shorten or stretch it), else by
    /// the wall clock; capped by `max_retry_after` (a clock stepped back must not make an
    /// enormous pause).
    async fn restore_pause(&self) {
        let name = &self.cfg.name;
        let stored = match self.queue.rate_pause(self.gate.key()).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(e) => {
                warn!(source = %name, error = %e, "cannot read the stored rate-limit pause; starting without it");
                return;
            }
        };
        let left_ms = pause_left_ms(&stored, self.clock.since_boot().as_ref(), self.clock.now_utc().timestamp_millis());
        let Ok(left_ms) = u64::try_from(left_ms) else { return };
        if left_ms == 0 {
            return;
        }
        let (left, _) = crate::backoff::cap(Duration::from_millis(left_ms), self.cfg.max_retry_after);
        self.gate.pause_until(self.clock.now() + left);
        bump(&self.stats.pauses_restored, 1);
        info!(source = %name, credential = %self.gate.key(), pause = ?left,
            "honouring a stored rate-limit pause: no request before it ends");
    }

    /// Pauses every source on this credential for `d` (a 429, a spent budget); a pause long
    /// enough to outlive a restart is stored with the source's state.
    async fn pause_credential(&mut self, d: Duration) {
        let until = self.gate.pause_until(self.clock.now() + d);
        let left = until.saturating_duration_since(self.clock.now());
        if left < ratelimit::MIN_STORED_PAUSE {
            return;
        }
        let until_ms = (self.clock.now_utc() + chrono_dur(left)).timestamp_millis();
        let boot = self.clock.since_boot().map(|b| BootPause {
            id: b.boot_id,
            at_ms: duration_ms(b.elapsed),
            until_ms: duration_ms(b.elapsed + left),
        });
        if let Err(e) = self.queue.set_rate_pause(self.gate.key(), StoredPause { until_ms, boot }).await {
            warn!(source = %self.cfg.name, error = %e,
                "cannot store the rate-limit pause; a restart inside it would not honour it");
        }
    }

    /// Counts, among these events, the records dated before the checkpoint the window started
    /// from that the queue does not hold yet: found only thanks to the overlap. Added to
    /// [`Source::pending_late`]; counted in the stats once their page is committed.
    async fn count_late(&mut self, events: &[NewEvent]) {
        let Some(before) = self.late_before else { return };
        let before_ms = before.timestamp_millis();
        let candidates: Vec<(i64, String)> = events
            .iter()
            .filter(|e| e.event_time_ms < before_ms)
            .map(|e| (e.event_time_ms, e.dedupe_key.clone()))
            .collect();
        if candidates.is_empty() {
            return;
        }
        match self.queue.unknown_keys(&self.cfg.name, candidates).await {
            Ok(new) => {
                for (time_ms, _) in new {
                    let lateness = u64::try_from(before_ms - time_ms).unwrap_or(0);
                    self.pending_late = (self.pending_late.0 + 1, self.pending_late.1.max(lateness));
                }
            }
            // Only a metric is lost; the page itself is stored as always.
            Err(e) => debug!(source = %self.cfg.name, error = %e, "cannot count late records"),
        }
    }

    /// Publishes the late records of a committed page.
    fn publish_late(&mut self) {
        let (late, lateness) = std::mem::take(&mut self.pending_late);
        if late > 0 {
            bump(&self.stats.late_records, late);
            self.stats.max_lateness_ms.fetch_max(lateness, Ordering::Relaxed);
            debug!(source = %self.cfg.name, late, lateness_ms = lateness, "records found only thanks to the overlap");
        }
    }

    async fn load_checkpoint(&self) -> Result<Checkpoint, SourceError> {
        let name = &self.cfg.name;
        // Records staged by a stream a crash interrupted never entered the queue: drop them.
        let dropped =
            self.queue.discard_staged(name).await.map_err(|err| SourceError::Queue { name: name.clone(), err })?;
        if dropped > 0 {
            info!(source = %name, dropped, "discarded records staged by an interrupted answer; the window is asked again");
        }
        let stored = self.queue.checkpoint(name).await.map_err(|err| SourceError::Queue { name: name.clone(), err })?;
        let bad = |detail: String| SourceError::BadCheckpoint { name: name.clone(), detail };
        match stored {
            None => {
                // Records are stored only together with a checkpoint: records without one mean
                // the checkpoint was lost, and starting over would refetch from `start`.
                let history =
                    self.queue.has_history(name).await.map_err(|err| SourceError::Queue { name: name.clone(), err })?;
                if history {
                    return Err(bad("it is missing, yet the database holds records of this source".into()));
                }
                let start = self.cfg.start.resolve(self.clock.now_utc());
                info!(source = %name, %start, "no checkpoint yet: first run starts at `start`");
                Ok(Checkpoint::default())
            }
            Some(text) => match serde_json::from_str::<Checkpoint>(&text) {
                // Every checkpoint written says how far the source got; an empty one is damage.
                Ok(cp) if cp == Checkpoint::default() => Err(bad(format!("it is empty ({text:?})"))),
                Ok(cp) => Ok(cp),
                Err(e) => Err(bad(format!("{e}; stored text {:?}", excerpt(&text)))),
            },
        }
    }

    /// The next window to sweep, or how long to wait before one is due (less than one poll
    /// interval of new data would be asked).
    fn next_window(&self, cp: &Checkpoint) -> Result<Window, Duration> {
        // Cut by the earlier of the two clocks: a local clock stepped ahead must not ask for
        // (and checkpoint) the vendor's future (invariant 8).
        let now = self.window_now();
        let mut horizon = whole_second(now - chrono_dur(self.cfg.lag));
        let mut poll = chrono_dur(self.cfg.poll_interval);
        if let Some(until) = self.cfg.until {
            // A backfill: everything up to `until`, then done (no waiting for more data).
            if cp.done_until.is_some_and(|done| done >= until) || until <= self.cfg.start.resolve(now) {
                return Err(self.cfg.poll_interval);
            }
            horizon = horizon.min(whole_second(until));
            poll = chrono::Duration::zero();
        }
        let from = match cp.done_until {
            Some(done) => {
                let (mut from, rechecking) =
                    window_start(done, cp.rechecked_until, chrono_dur(self.cfg.overlap), cp.settled);
                if self.cfg.until.is_some() {
                    // A backfill range's overlap stays inside the range: what lies before its
                    // `start` is another range's (stored under that range's dedupe keys).
                    from = from.max(whole_second(self.cfg.start.resolve(now)));
                }
                // Nor does a source's overlap reach before its first window: that is a
                // backfill's to ask (`backfill` ends at `began`).
                if let Some(began) = cp.began {
                    from = from.max(began);
                }
                let due = done + poll;
                if !rechecking && (horizon <= done || horizon < due) {
                    return Err((due - horizon).to_std().unwrap_or(self.cfg.poll_interval).max(Duration::from_secs(1)));
                }
                from
            }
            None => {
                let from = whole_second(self.cfg.start.resolve(now));
                if horizon <= from {
                    return Err(self.cfg.poll_interval);
                }
                from
            }
        };
        let to = horizon.min(window_end(from, cp.done_until, chrono_dur(self.span), chrono_dur(self.cfg.max_span)));
        if to <= from {
            return Err(self.cfg.poll_interval);
        }
        Ok(Window { from, to })
    }

    /// Asks for one page until it arrives readable. `None` on shutdown; an error only for a
    /// fatal answer in catch-up mode (the daemon waits the maximum back-off and asks again).
    async fn fetch_page(
        &mut self,
        sweep: &mut Sweep,
        done: Option<DateTime<Utc>>,
        mode: RunMode,
        shutdown: &CancellationToken,
    ) -> Option<Result<Page, SourceError>> {
        let mut failures = 0u32;
        // Timeouts in a row of this (whole) window: the second asks half of it.
        let mut timeouts = 0u32;
        let mut auth_failures = 0u32;
        loop {
            if self.paused_until.max(self.gate.paused_until()) > self.clock.now() {
                self.state.send_replace(SourceState::Paused);
            }
            tokio::select! {
                _ = self.wait_turn() => {}
                _ = shutdown.cancelled() => return None,
            }
            self.state.send_replace(SourceState::Fetching);
            let clock = self.clock.clone();
            let attempt = {
                let attempt = self.attempt(sweep, failures);
                tokio::pin!(attempt);
                tokio::select! {
                    a = &mut attempt => Some(a),
                    _ = shutdown.cancelled() => {
                        // A request in flight may draw a 429 whose `Retry-After` a reloaded or
                        // restarted source must honour: its answer is read (the pause stored
                        // and shared) for a moment before it is dropped, its page never stored.
                        tokio::select! {
                            _ = &mut attempt => {}
                            _ = clock.sleep(IN_FLIGHT_GRACE) => {}
                        }
                        None
                    }
                }
            };
            let attempt = attempt?;
            let now_ms = self.clock.now_utc().timestamp_millis();
            let (delay, rate_limited) = match attempt {
                Attempt::Page(page) => {
                    self.recovered();
                    return Some(Ok(page));
                }
                Attempt::Split(why) => {
                    // A smaller window, asked at once: splits are bounded (each ends strictly
                    // past `done_until` and halves what is left, down to MIN_SPLIT_SPAN).
                    self.split(sweep, done, why);
                    timeouts = 0;
                    continue;
                }
                // A vendor's auth layer may refuse a valid key for a moment (key rotation, a
                // cache miss): a credential that has worked gets a few more tries.
                Attempt::Unauthorized(e)
                    if (self.worked_before || self.gate.has_worked()) && auth_failures < ratelimit::AUTH_RETRIES =>
                {
                    auth_failures += 1;
                    bump(&self.stats.auth_retries, 1);
                    self.stats.trouble.failed(now_ms, e.to_string(), false);
                    let delay = full_jitter(&self.cfg.backoff, failures, &mut self.rng);
                    warn!(error = %e, attempt = auth_failures, of = ratelimit::AUTH_RETRIES, retry_in = ?delay,
                        "the vendor refused a credential that has worked; asking again before taking it as final");
                    (delay, false)
                }
                Attempt::Unauthorized(e) | Attempt::Fatal(e) if mode == RunMode::CatchUp => return Some(Err(e)),
                Attempt::Unauthorized(e) | Attempt::Fatal(e) => {
                    self.stats.trouble.failed(now_ms, e.to_string(), true);
                    error!(error = %e, retry_in = ?self.cfg.backoff.max, "operator action needed; the data waits at the vendor");
                    (self.cfg.backoff.max, false)
                }
                Attempt::Retry { delay, rate_limited, timed_out } => {
                    // A 429 is the vendor's budget at work, not a failure.
                    if !rate_limited {
                        let why = if timed_out {
                            "no complete answer within request_timeout"
                        } else {
                            "the vendor's answer failed or could not be read (retried with back-off; see the log)"
                        };
                        self.stats.trouble.failed(now_ms, why.to_owned(), false);
                    }
                    timeouts = if timed_out { timeouts + 1 } else { 0 };
                    // A whole window the vendor cannot answer within request_timeout, twice:
                    // ask half of it (after the back-off), as for an answer too large.
                    if timeouts >= TIMEOUTS_BEFORE_SPLIT
                        && sweep.page == PageCursor::Whole
                        && self.split(sweep, done, "no complete answer within request_timeout, twice")
                    {
                        timeouts = 0;
                    }
                    (delay, rate_limited)
                }
            };
            bump(&self.stats.retries, 1);
            if rate_limited {
                // The credential's gate already holds (and has stored) this pause.
                bump(&self.stats.rate_limited, 1);
            } else {
                self.pause_for(delay);
            }
            failures = failures.saturating_add(1);
        }
    }

    /// One request for the page, classified.
    async fn attempt(&mut self, sweep: &Sweep, failures: u32) -> Attempt {
        let name = self.cfg.name.clone();
        // An OAuth2 definition's access token first: a refused client is the operator's to
        // fix (as a refused key), an unreachable token endpoint is retried like the vendor.
        let bearer = match self.vendor.bearer(&self.http, &self.cfg.base_url, &self.clock).await {
            Ok(bearer) => bearer,
            Err(TokenError::Unavailable { url, detail, retry_after }) => {
                // Its own back-off (a `Retry-After: 0` must not make the endpoint a hot loop).
                let backoff = full_jitter(&self.cfg.backoff, failures, &mut self.rng);
                let delay = retry_after.map_or(backoff, |wait| wait.max(backoff));
                bump(&self.stats.token_failures, 1);
                warn!(source = %name, token_url = %url, error = %detail, retry_in = ?delay, "no OAuth2 access token; retrying");
                return Attempt::Retry { delay: self.capped(delay), rate_limited: false, timed_out: false };
            }
            // The token endpoint, not the vendor, refused: named as what answered.
            Err(TokenError::Refused { url, status, detail }) => {
                let detail = format!("the OAuth2 token endpoint refused the client: {detail}");
                return Attempt::Unauthorized(SourceError::Rejected { name, url, status, detail });
            }
        };
        let request = self
            .vendor
            .request(&self.http, &self.cfg.base_url, &sweep.window, &sweep.page, bearer.as_ref())
            .and_then(|r| r.timeout(self.cfg.request_timeout).build().map_err(|e| e.without_url().to_string()));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Fatal(SourceError::Rejected {
                    name,
                    url: redact::url(&self.cfg.base_url),
                    status: 0,
                    detail: format!("cannot build the request: {e}"),
                });
            }
        };
        let url = redact::url(request.url());
        if sweep.pages >= self.cfg.max_pages {
            let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            return Attempt::Fatal(SourceError::TooManyPages {
                name,
                url,
                from: time(sweep.window.from),
                to: time(sweep.window.to),
                pages: sweep.pages,
            });
        }
        bump(&self.stats.requests, 1);
        debug!(source = %name, %url, "request");
        let backoff = full_jitter(&self.cfg.backoff, failures, &mut self.rng);
        let limits = self.vendor.answer_limits();
        let w = sweep.window;
        let splittable = sweep.page == PageCursor::Whole && split_window(w).is_some();
        let asked = request.url().clone();
        let sent_at = self.clock.now();
        let answer = self.http.execute(request).await;
        self.stats.request_seconds.observe(self.clock.now().saturating_duration_since(sent_at));
        let resp = match answer {
            Ok(resp) if resp.url() != &asked && self.vendor.redirected_to(resp.url()) => {
                info!(source = %name, from = %url, to = %redact::url(resp.url()),
                    "the vendor redirected to its newer API: asking it directly from now on");
                resp
            }
            Ok(resp) => resp,
            Err(e) => {
                self.stats.count_status(0);
                let timed_out = e.is_timeout();
                warn!(source = %name, %url, error = %transport_error(e), retry_in = ?backoff, "request failed; retrying the same page");
                return Attempt::Retry { delay: backoff, rate_limited: false, timed_out };
            }
        };
        let (status, headers) = (resp.status(), resp.headers().clone());
        let answered = resp.url().clone();
        self.stats.count_status(status.as_u16());
        self.observe_vendor_clock(&headers);
        let now = self.clock.now_utc();
        let signals = self.vendor.rate_signals();
        let verdict = ratelimit::classify_for(status, &headers, now, signals.as_ref());
        // An OAuth2 access token the vendor refused (revoked, expired early, signed with a key
        // the vendor has just rotated) is dropped at every 401, so each later attempt asks for a
        // new one; the first 401 asks the page again at once, and a second in a row takes the
        // usual refusal path (its retries with back-off, each with a fresh token).
        if status == reqwest::StatusCode::UNAUTHORIZED && bearer.is_some() && self.vendor.token_refused() {
            bump(&self.stats.token_refreshes, 1);
            if !self.token_retried {
                self.token_retried = true;
                info!(source = %name, %url, "the vendor refused the OAuth2 access token (401): asking the token endpoint for a new one");
                return Attempt::Retry { delay: Duration::ZERO, rate_limited: false, timed_out: false };
            }
        } else if status != reqwest::StatusCode::UNAUTHORIZED {
            self.token_retried = false;
        }
        // A definition's 403 with a wait is a rate limit (GitHub's secondary limits) — but one
        // that never ends is a refused permission behind a gateway that adds Retry-After: after
        // FORBIDDEN_LIMITS_BEFORE_OPERATOR in a row it is reported as the operator's to fix,
        // and the waits are still honoured.
        if status == reqwest::StatusCode::FORBIDDEN && matches!(verdict, Verdict::RateLimited(_)) {
            self.forbidden_limits = self.forbidden_limits.saturating_add(1);
            if self.forbidden_limits >= FORBIDDEN_LIMITS_BEFORE_OPERATOR {
                let now_ms = self.clock.now_utc().timestamp_millis();
                let why = format!(
                    "{url} answered 403 with a wait {} times in a row: a refused permission, not a rate limit? (the waits are honoured)",
                    self.forbidden_limits
                );
                self.stats.trouble.failed(now_ms, why.clone(), true);
                error!(source = %name, %url, forbidden = self.forbidden_limits, "operator action needed: {why}");
            }
        } else if status.is_success() {
            self.forbidden_limits = 0;
        }
        // A 429 waits for the longer of its own wait and the spent budget's reset, capped (and
        // reported) once, in its arm below.
        let budget = ratelimit::budget_pause_for(&headers, now, signals.as_ref());
        if let Some(pause) = budget.filter(|_| !matches!(verdict, Verdict::RateLimited(_))) {
            debug!(source = %name, ?pause, "vendor says the rate budget is spent: pausing before the next request");
            self.pause_credential(self.capped(pause)).await;
        }
        if verdict == Verdict::Ok {
            self.gate.mark_worked();
        }
        match verdict {
            Verdict::Ok if self.vendor.streams() => self.stream(resp, &url, splittable, backoff).await,
            _ if status.is_redirection() => {
                // Not followed by the client (`Redirects::SameOrigin`): another origin, or too many.
                bump(&self.stats.redirects_refused, 1);
                let location = headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| resp.url().join(l).ok())
                    .map_or_else(|| "(no usable Location)".to_owned(), |l| redact::url(&l));
                Attempt::Fatal(SourceError::Rejected {
                    name,
                    url: redact::url(resp.url()),
                    status: status.as_u16(),
                    detail: format!(
                        "a redirect to {location} is not followed: sources follow redirects only on their own \
                         origin (scheme, host, port), at most {MAX_REDIRECTS}, so credentials never leave it; \
                         check base_url"
                    ),
                })
            }
            Verdict::Ok => {
                let cap = limits.max_bytes.filter(|_| splittable).map_or(MAX_BODY_BYTES, |b| b.min(MAX_BODY_BYTES));
                let body = match read_capped(resp, cap, Overflow::Refuse).await.map_err(AnswerError::from) {
                    Ok(body) => body,
                    Err(AnswerError::TooLarge { .. }) if splittable => {
                        return Attempt::Split("more bytes than max_response_bytes");
                    }
                    Err(e) => {
                        bump(&self.stats.bad_answers, 1);
                        let timed_out = matches!(e, AnswerError::Transport(_, true));
                        warn!(source = %name, %url, error = %e, retry_in = ?backoff, "answer not read; retrying the same page");
                        return Attempt::Retry { delay: backoff, rate_limited: false, timed_out };
                    }
                };
                let over_records = |page: &Page| {
                    page.oversized || limits.max_records.is_some_and(|m| page.records.len() + page.rejected.len() > m)
                };
                match self.vendor.read_page(&body, &headers, &answered, &self.cfg.base_url, &sweep.page) {
                    Ok(page) if splittable && over_records(&page) => Attempt::Split("more records than max_records"),
                    Ok(page) if page.oversized => {
                        // Only part of it was read: it cannot be taken, and this window cannot
                        // be split further. Asked again after the back-off, never at full rate.
                        bump(&self.stats.bad_answers, 1);
                        error!(source = %name, %url, max_items = MAX_ANSWER_ITEMS, retry_in = ?backoff,
                            "answer holds more items than are read at once, for a window that cannot be split further; \
                             retrying the same window");
                        Attempt::Retry { delay: backoff, rate_limited: false, timed_out: false }
                    }
                    Ok(page) => {
                        if sweep.page == PageCursor::Whole
                            && (over_records(&page) || limits.max_bytes.is_some_and(|b| body.len() > b))
                        {
                            // The vendor cannot give this second in smaller answers: it was read
                            // whole, so it is stored as it is rather than asked for ever.
                            bump(&self.stats.oversized_taken, 1);
                            error!(source = %name, %url, records = page.records.len() + page.rejected.len(),
                                bytes = body.len(), from = %w.from, to = %w.to,
                                "answer over max_records/max_response_bytes for a window that cannot be split further; \
                                 taking it as it is");
                        }
                        // Small answers let the span grow back towards max_span.
                        let n = page.records.len() + page.rejected.len();
                        if sweep.page == PageCursor::Whole && limits.max_records.is_some_and(|m| n * 4 < m) {
                            self.span = self.span.saturating_mul(2).min(self.cfg.max_span);
                        }
                        Attempt::Page(page)
                    }
                    Err(e) => {
                        bump(&self.stats.bad_answers, 1);
                        warn!(source = %name, %url, error = %e, retry_in = ?backoff, "malformed page; retrying the same page");
                        Attempt::Retry { delay: backoff, rate_limited: false, timed_out: false }
                    }
                }
            }
            Verdict::RateLimited(wait) => {
                let wait = wait.or(self.vendor.bare_429_wait()).unwrap_or(backoff);
                let delay = self.capped(wait.max(budget.unwrap_or_default()));
                // Stored before it is reported: a restart right after still honours it.
                self.pause_credential(delay).await;
                info!(source = %name, %url, ?delay, status = status.as_u16(),
                    "rate limited ({}): pausing, then asking the same page again", status.as_u16());
                Attempt::Retry { delay, rate_limited: true, timed_out: false }
            }
            Verdict::Retryable(wait) => {
                let delay = self.capped(wait.unwrap_or(backoff));
                // A wait the vendor announced (a 503's `Retry-After`) binds the credential like a
                // 429's: shared with every source on it, and stored so a restart honours it.
                if wait.is_some() {
                    self.pause_credential(delay).await;
                }
                warn!(source = %name, %url, status = status.as_u16(), retry_in = ?delay, "vendor error; retrying the same page");
                Attempt::Retry { delay, rate_limited: false, timed_out: false }
            }
            Verdict::Unauthorized | Verdict::Fatal => {
                let body = read_capped(resp, ERROR_BODY_BYTES, Overflow::Refuse).await.unwrap_or_default();
                let e = SourceError::Rejected {
                    name,
                    url,
                    status: status.as_u16(),
                    // A vendor quoting the access token back must not put it in the log.
                    detail: body_excerpt(
                        &body,
                        &self.cfg.vendor.secrets().into_iter().chain(bearer.as_ref()).collect::<Vec<_>>(),
                    ),
                };
                if verdict == Verdict::Unauthorized { Attempt::Unauthorized(e) } else { Attempt::Fatal(e) }
            }
        }
    }

    /// Decodes a streamed answer (Astronomer's gzipped NDJSON) on a blocking thread and stages
    /// its records chunk by chunk. Only a stream read to its clean end counts: anything else
    /// discards what was staged and asks the window again (a truncated gzip stores nothing).
    async fn stream(&mut self, resp: reqwest::Response, url: &str, splittable: bool, backoff: Duration) -> Attempt {
        use futures_util::TryStreamExt as _;
        let name = self.cfg.name.clone();
        let retry = |timed_out| Attempt::Retry { delay: backoff, rate_limited: false, timed_out };
        self.pending_late = (0, 0);
        if let Err(e) = self.queue.discard_staged(&name).await {
            error!(source = %name, error = %e, "cannot clear the staging area");
            return retry(false);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<Record>, Vec<Rejected>)>(2);
        // Set when the body stopped at request_timeout: that counts toward splitting the window.
        let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let body = tokio_util::io::StreamReader::new(resp.bytes_stream().map_err({
            let timed_out = Arc::clone(&timed_out);
            move |e| {
                if e.is_timeout() {
                    timed_out.store(true, Ordering::Relaxed);
                }
                std::io::Error::other(transport_error(e))
            }
        }));
        let reader = tokio_util::io::SyncIoBridge::new(body);
        let vendor = self.vendor.clone();
        let decoder = tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            vendor.decode(&mut reader, &mut |records, rejected| tx.blocking_send((records, rejected)).is_ok())
        });
        let mut staging_failed = None;
        let mut dead_summary = DeadSummary::default();
        while let Some((records, mut rejected)) = rx.recv().await {
            let events = self.events(records, &mut rejected);
            dead_summary.add(&rejected);
            self.count_late(&events).await;
            let dead = self.dead_letters(rejected);
            if let Err(e) = self.queue.stage(&name, events, dead).await {
                staging_failed = Some(e);
                break;
            }
        }
        drop(rx);
        let decoded = decoder.await;
        let outcome = match (staging_failed, decoded) {
            (None, Ok(Ok(seen))) => {
                dead_summary.log(&name, url);
                return Attempt::Page(Page { staged: Some(seen), ..Page::default() });
            }
            (Some(e), _) => {
                error!(source = %name, %url, error = %e, "cannot stage the answer (disk full?); asking the window again");
                retry(false)
            }
            (None, Ok(Err(DecodeError::TooLarge(_)))) if splittable => Attempt::Split("decoded answer too large"),
            (None, Ok(Err(e))) => {
                bump(&self.stats.bad_answers, 1);
                warn!(source = %name, %url, error = %e, retry_in = ?backoff, "broken answer; nothing of it stored, asking the window again");
                retry(timed_out.load(Ordering::Relaxed))
            }
            (None, Err(e)) => {
                error!(source = %name, %url, error = %e, "the answer decoder failed; asking the window again");
                retry(false)
            }
        };
        if let Err(e) = self.queue.discard_staged(&name).await {
            error!(source = %name, error = %e, "cannot clear the staging area");
        }
        outcome
    }

    /// The queue's form of a page's records: OCSF events keyed for dedupe; a record the
    /// mapping cannot turn into an event becomes a dead letter with the reason.
    fn events(&self, records: Vec<Record>, rejected: &mut Vec<Rejected>) -> Vec<NewEvent> {
        let org = self.cfg.vendor.organization_id();
        let processed_ms = self.clock.now_utc().timestamp_millis();
        let mut events = Vec::with_capacity(records.len());
        for r in records {
            let ctx = ocsf::Context {
                organization: org,
                dedupe_key: &r.key,
                time: r.time,
                raw: r.raw.get(),
                log_name: &self.cfg.log_name,
                processed_ms,
            };
            match crate::vendors::map_record(self.mapper, &ctx, &self.cfg.ocsf) {
                Ok(body) => events.push(NewEvent { dedupe_key: r.key, event_time_ms: r.time.timestamp_millis(), body }),
                Err(e) => rejected.push(Rejected {
                    key: r.key,
                    reason: format!("cannot map to OCSF: {e}"),
                    raw: r.raw.get().as_bytes().to_vec(),
                }),
            }
        }
        events
    }

    /// The queue's form of rejected records; logged by the caller once per page
    /// ([`DeadSummary`]), never once per record.
    fn dead_letters(&self, rejected: Vec<Rejected>) -> Vec<NewDeadLetter> {
        rejected.into_iter().map(|r| NewDeadLetter { key: r.key, reason: r.reason, raw: r.raw }).collect()
    }

    /// Makes `sweep` ask a smaller window ([`split_window`]) and remembers the smaller span of
    /// new data for the windows that follow; false when the window cannot be split.
    fn split(&mut self, sweep: &mut Sweep, done: Option<DateTime<Utc>>, why: &'static str) -> bool {
        let w = sweep.window;
        let Some(part) = first_part(w, done) else { return false };
        sweep.window = part;
        // The span of new data windows get from now on (a piece of the overlap has none).
        let fresh = part.to - done.map_or(part.from, |d| d.max(part.from));
        if fresh > chrono::Duration::zero() {
            self.span = fresh.to_std().unwrap_or(self.span).min(self.cfg.max_span);
        }
        bump(&self.stats.window_splits, 1);
        let name = &self.cfg.name;
        if done.is_some_and(|d| part.to <= d) {
            bump(&self.stats.overlap_pieces, 1);
            info!(source = %name, why, from = %part.from, to = %part.to,
                "answer too large: asking the overlap again in pieces (for records indexed late into it)");
        } else {
            info!(source = %name, why, from = %w.from, to = %part.to, "answer too large: asking half the window");
        }
        true
    }

    /// A vendor's wait, capped by `max_retry_after` (a far-future `Retry-After` is reported).
    fn capped(&self, wait: Duration) -> Duration {
        if wait > self.cfg.max_retry_after {
            bump(&self.stats.retry_after_capped, 1);
            warn!(source = %self.cfg.name, asked = ?wait, capped = ?self.cfg.max_retry_after,
                "vendor asked for a longer pause than max_retry_after; capping it");
            return self.cfg.max_retry_after;
        }
        wait
    }

    fn pause_for(&mut self, d: Duration) {
        self.paused_until = self.paused_until.max(self.clock.now() + d);
    }

    /// Waits out this source's back-off and its credential's pause, then the credential's
    /// proactive limiter. The pause is read again after every wait: another source on the
    /// same credential may have drawn a 429 meanwhile.
    async fn wait_turn(&self) {
        loop {
            let until = self.paused_until.max(self.gate.paused_until());
            if until > self.clock.now() {
                self.clock.sleep_until(until).await;
                continue;
            }
            match self.gate.limiter().check() {
                Ok(()) => return,
                Err(not_until) => {
                    let now = governor::clock::Clock::now(&self.clock);
                    self.clock.sleep(not_until.wait_time_from(now)).await;
                }
            }
        }
    }

    /// Maps the page and commits it with its checkpoint (a streamed page: commits what was
    /// staged). A failing commit (disk full, I/O error) is retried with back-off while the page
    /// stays in memory (or in staging); nothing advances.
    async fn store(
        &mut self,
        page: Page,
        sweep: &Sweep,
        next: &Checkpoint,
        shutdown: &CancellationToken,
    ) -> Result<(), SourceExit> {
        let name = self.cfg.name.clone();
        bump(&self.stats.pages, 1);
        let fetched = page.staged.map_or(page.records.len() + page.rejected.len(), |s| s.records + s.rejected);
        bump(&self.stats.fetched, fetched as u64);
        debug!(source = %name, records = fetched, "page read; mapping and committing it");
        let staged = page.staged.is_some();
        let mut rejected = page.rejected;
        let events = self.events(page.records, &mut rejected);
        let mut dead_summary = DeadSummary::default();
        dead_summary.add(&rejected);
        dead_summary.log(&name, &redact::url(&self.cfg.base_url));
        if !staged {
            self.pending_late = (0, 0);
            self.count_late(&events).await;
        }
        let dead_letters = self.dead_letters(rejected);
        let prune = next
            .sweep
            .is_none()
            .then(|| (sweep.window.to - chrono_dur(self.cfg.overlap) - DEDUPE_MARGIN).timestamp_millis());
        let state = serde_json::to_string(next).unwrap_or_default();
        // Built once; a retried commit shares it rather than copying the page.
        let done_until_ms = next.done_until.map(|t| t.timestamp_millis());
        let write = Arc::new(PageWrite {
            source: name.clone(),
            events,
            dead_letters,
            checkpoint: Some(state.clone()),
            prune_dedupe_before_ms: prune,
            done_until_ms,
        });
        let mut failures = 0u32;
        loop {
            let committed = if staged {
                self.queue.commit_staged_at(&name, Some(state.clone()), done_until_ms, prune).await
            } else {
                self.queue.store_page(Arc::clone(&write)).await
            };
            match committed {
                Ok(outcome) => {
                    if failures > 0 {
                        self.recovered();
                    }
                    bump(&self.stats.stored, outcome.stored as u64);
                    bump(&self.stats.duplicates, outcome.duplicates as u64);
                    bump(&self.stats.dead_lettered, outcome.dead_lettered as u64);
                    debug!(source = %name, stored = outcome.stored, duplicates = outcome.duplicates, "page committed");
                    self.publish_late();
                    return Ok(());
                }
                Err(QueueError::Closed) => return Err(SourceExit::Shutdown),
                // A bug, not a passing fault: retrying cannot help, and storing would lose data.
                Err(err @ QueueError::CheckpointBackwards { .. }) => {
                    return Err(SourceExit::Failed(SourceError::Queue { name, err }));
                }
                Err(e) => {
                    let wait = full_jitter(&self.cfg.backoff, failures, &mut self.rng);
                    error!(source = %name, error = %e, retry_in = ?wait,
                        "cannot commit the page to the queue; fetching stopped, checkpoint unchanged");
                    let now_ms = self.clock.now_utc().timestamp_millis();
                    self.stats.trouble.failed(now_ms, format!("cannot commit a page to the queue: {e}"), false);
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        _ = self.clock.sleep(wait) => {}
                        _ = shutdown.cancelled() => return Err(SourceExit::Shutdown),
                    }
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum AnswerError {
    /// The text, and whether it was request_timeout.
    #[error("{0}")]
    Transport(String, bool),
    #[error("answer larger than the limit of {cap} bytes{announced}; not read further")]
    TooLarge { cap: usize, announced: String },
}

/// A vendor's answer read whole ([`read_capped`], [`Overflow::Refuse`]), or why not, in the
/// source's words.
impl From<BodyError> for AnswerError {
    fn from(e: BodyError) -> AnswerError {
        match e {
            BodyError::TooLarge { cap, announced } => AnswerError::TooLarge {
                cap,
                announced: announced.map_or_else(String::new, |len| format!(" (Content-Length: {len})")),
            },
            BodyError::Broken { error, .. } => {
                let timeout = error.is_timeout();
                AnswerError::Transport(transport_error(error), timeout)
            }
        }
    }
}

/// A transport failure in an operator's words, never with the URL (it may carry secrets):
/// reqwest's own text says only "error sending request" or "request or response body error",
/// so the causes follow ("… connection refused"), and a timeout says so.
fn transport_error(e: reqwest::Error) -> String {
    let timeout = if e.is_timeout() { " (no complete answer within request_timeout)" } else { "" };
    format!("{}{timeout}", crate::tls::http_error(e))
}

/// The first 80 characters of a stored text, for an error message.
fn excerpt(text: &str) -> &str {
    text.char_indices().nth(80).map_or(text, |(i, _)| &text[..i])
}

/// How much of an error answer is read, for the operator's message.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// The start of a vendor's error body, printable and short, for an operator's message.
/// A secret the vendor echoes back (some 401 bodies quote the refused key) is scrubbed: the
/// excerpt reaches the log, `/ready` and `check --connect`.
fn body_excerpt(body: &[u8], secrets: &[&secrecy::SecretString]) -> String {
    // The cut at 300 bytes must not split a secret into a part the scrub no longer finds.
    let scrubbed = crate::redact::secrets_in(&String::from_utf8_lossy(body), secrets);
    let text: String = scrubbed.chars().take(300).collect();
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.trim().is_empty() { "(empty body)".to_owned() } else { clean.trim().to_owned() }
}

/// What is left of a stored pause: by time since boot when stored in this boot (its id, and an
/// uptime not below the one it was stored at: a container whose `/proc/uptime` is its own, as
/// under lxcfs, restarts it under the host's boot id), else by the wall clock.
fn pause_left_ms(stored: &StoredPause, now: Option<&crate::clock::SinceBoot>, wall_ms: i64) -> i64 {
    match (&stored.boot, now) {
        (Some(boot), Some(now)) if boot.id == now.boot_id && duration_ms(now.elapsed) >= boot.at_ms => {
            boot.until_ms.saturating_sub(duration_ms(now.elapsed))
        }
        _ => stored.until_ms.saturating_sub(wall_ms),
    }
}

/// Milliseconds of `d`, saturating (for times stored as integers).
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp(), 0).single().unwrap_or(t)
}

#[cfg(test)]
mod review21n_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::{parse_reset, retry_after};
    use reqwest::StatusCode;
    use reqwest::header::HeaderValue;

    pub(super) fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    pub(super) fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// Pins the retry policy: change this table only with a reason.
    #[test]
    fn test_classify_table() {
        let now = at("2026-03-18T08:00:00Z");
        let none = HeaderMap::new();
        let ra = headers(&[("retry-after", "7")]);
        let date = headers(&[("retry-after", "Wed, 18 Mar 2026 08:00:30 GMT")]);
        let reset = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1773820845")]);
        let secs = |s| Some(Duration::from_secs(s));
        let table: &[(u16, &HeaderMap, Verdict)] = &[
            (200, &none, Verdict::Ok),
            (204, &none, Verdict::Ok),
            (429, &ra, Verdict::RateLimited(secs(7))),
            (429, &date, Verdict::RateLimited(secs(30))),
            (429, &reset, Verdict::RateLimited(secs(45))),
            (429, &none, Verdict::RateLimited(None)),
            (408, &none, Verdict::Retryable(None)),
            (500, &none, Verdict::Retryable(None)),
            (502, &none, Verdict::Retryable(None)),
            (503, &ra, Verdict::Retryable(secs(7))),
            (504, &none, Verdict::Retryable(None)),
            (301, &none, Verdict::Fatal),
            (400, &none, Verdict::Fatal),
            // Final only for a credential that never worked (the loop decides, AUTH_RETRIES).
            (401, &none, Verdict::Unauthorized),
            (403, &none, Verdict::Unauthorized),
            (404, &none, Verdict::Fatal),
            (422, &none, Verdict::Fatal),
        ];
        for (status, h, want) in table {
            let got = classify(StatusCode::from_u16(*status).unwrap(), h, now);
            assert_eq!(got, *want, "status {status}");
        }
    }

    #[test]
    fn test_retry_after_forms() {
        let now = at("2026-03-18T08:00:00Z");
        assert_eq!(retry_after(&headers(&[("retry-after", " 120 ")]), now), Some(Duration::from_secs(120)));
        let past = headers(&[("retry-after", "Wed, 18 Mar 2026 07:00:00 GMT")]);
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")]), now), None);
    }

    #[test]
    fn test_reset_forms_and_budget_pause() {
        let now = at("2026-03-18T08:00:00Z");
        assert_eq!(parse_reset("30", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_reset("1773820860", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_reset("2026-03-18T08:00:10Z", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_reset("Wed, 18 Mar 2026 08:00:05 GMT", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_reset("6m0s", now), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("NaN", now), None);
        let spent = headers(&[("x-rate-limit-remaining", "0"), ("x-rate-limit-reset", "2026-03-18T08:00:20Z")]);
        assert_eq!(budget_pause(&spent, now), Some(Duration::from_secs(20)));
        let left = headers(&[("x-rate-limit-remaining", "3"), ("x-rate-limit-reset", "20")]);
        assert_eq!(budget_pause(&left, now), None);
    }

    /// Regression (issue 15 point 5): an agent whose clock runs 10 minutes ahead measured an
    /// HTTP-date `Retry-After` (and absolute resets) against its own clock, found them in the
    /// past and came back at once. Against the answer's `Date` they are the vendor's 30 s.
    #[test]
    fn test_absolute_waits_are_measured_against_the_answers_date() {
        let ahead = at("2026-03-18T08:10:00Z");
        let date = ("date", "Wed, 18 Mar 2026 08:00:00 GMT");
        let ra = headers(&[date, ("retry-after", "Wed, 18 Mar 2026 08:00:30 GMT")]);
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, &ra, ahead), Verdict::RateLimited(Some(secs(30))));
        let epoch = headers(&[date, ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1773820830")]);
        assert_eq!(budget_pause(&epoch, ahead), Some(secs(30)));
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, &epoch, ahead), Verdict::RateLimited(Some(secs(30))));
        let rfc = headers(&[date, ("x-rate-limit-remaining", "0"), ("x-rate-limit-reset", "2026-03-18T08:00:30Z")]);
        assert_eq!(budget_pause(&rfc, ahead), Some(secs(30)));
        // Without a Date, our own clock is all there is.
        let bare = headers(&[("retry-after", "Wed, 18 Mar 2026 08:00:30 GMT")]);
        assert_eq!(retry_after(&bare, at("2026-03-18T08:00:00Z")), Some(secs(30)));
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Regression (issue 15 point 5): Aitronos' `X-RateLimit-Retry-After` (§4.6) was ignored on
    /// a 429 that carried no `Retry-After`.
    #[test]
    fn test_aitronos_x_ratelimit_retry_after_is_honoured() {
        let now = at("2026-03-18T08:00:00Z");
        let only = headers(&[("x-ratelimit-retry-after", "42")]);
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, &only, now), Verdict::RateLimited(Some(secs(42))));
        let both = headers(&[("retry-after", "10"), ("x-ratelimit-retry-after", "42")]);
        assert_eq!(retry_after(&both, now), Some(secs(42)), "the longer of the two");
    }

    #[test]
    fn test_read_record_takes_the_two_top_level_fields_however_spelled() {
        let read = |text: &str| {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            read_record(&raw, "id", "time").map(|r| (r.key, r.time)).map_err(|r| r.reason)
        };
        let t = at("2026-03-18T10:00:00Z");
        // An escaped member name, a nested `id` that is not the record's, a numeric id.
        assert_eq!(read(r#"{"x":{"id":"inner"},"i\u0064":"k1","time":"2026-03-18T10:00:00Z"}"#), Ok(("k1".into(), t)));
        assert_eq!(read(r#"{"id":42,"time":"2026-03-18T10:00:00Z"}"#), Ok(("42".into(), t)));
        // The last of repeated names wins, as in a map.
        assert_eq!(read(r#"{"id":"a","time":"x","id":"b","time":"2026-03-18T10:00:00Z"}"#), Ok(("b".into(), t)));
        assert!(read(r#"[1,2]"#).unwrap_err().contains("not a JSON object"));
        assert!(read(r#"{"id":" ","time":"2026-03-18T10:00:00Z"}"#).unwrap_err().contains("no usable `id`"));
        assert!(read(r#"{"id":"k"}"#).unwrap_err().contains("`time` is not a date-time: missing"));
        assert!(read(r#"{"id":"k","time":5}"#).unwrap_err().contains("`time` is not a date-time: 5"));
    }

    /// Invariant 1 for every split and every next window: whatever the window, the checkpoint
    /// and the span shrunk by earlier splits, a window ends strictly after `done_until`, a split
    /// is a strictly smaller part of its window, and a split window reaches past the checkpoint.
    #[test]
    fn test_splits_always_progress_and_the_overlap_is_still_asked_whole() {
        // The loop's window rules as pure functions, against a vendor whose answers are too
        // large while a window holds more than `cap` of a dense burst of records. Every stored
        // window must move the checkpoint or the re-ask cursor forward, and after the first
        // window the stored windows must cover the overlap and everything past it: the old rule
        // (drop the overlap when splitting) never asked the overlap again, so records indexed
        // late into it were lost (DST seed 72).
        let t0 = at("2026-03-18T08:00:00Z");
        let s = chrono::Duration::seconds;
        // The last figure bounds the requests: cut at the checkpoint first ([`first_part`]), a
        // burst in the overlap costs a few pieces per poll; halved instead, it shrank the span of
        // new data too, and the same ranges took 14, 79, 12 and 81 requests.
        for (overlap, span, burst_at, burst_len, most) in
            [(300, 3600, -200, 60, 10), (300, 3600, -10, 20, 10), (60, 60, -30, 120, 14), (600, 7200, 100, 30, 40)]
        {
            let records: Vec<DateTime<Utc>> = (0..1200).map(|i| t0 + s(burst_at) + s(burst_len) * i / 1200).collect();
            let cap = 1000;
            let fits = |w: &Window| records.iter().filter(|t| **t >= w.from && **t < w.to).count() <= cap;
            let horizon = t0 + s(4 * 3600);
            let mut cp = Checkpoint { done_until: Some(t0), ..Checkpoint::default() };
            let mut span_now = s(span);
            let mut covered: Vec<Window> = Vec::new();
            let mut requests = 0;
            for step in 0.. {
                assert!(step < 400, "overlap {overlap}: no end after 400 windows: {cp:?}");
                let done = cp.done_until.unwrap();
                if done >= horizon {
                    break;
                }
                let (from, _) = window_start(done, cp.rechecked_until, s(overlap), false);
                let mut w = Window {
                    from,
                    to: horizon.min(window_end(from, Some(done), span_now, s(3600).max(s(overlap + 1)))),
                };
                assert!(w.to > w.from, "empty window {w:?}");
                while !fits(&w) {
                    requests += 1;
                    match first_part(w, Some(done)) {
                        Some(part) => {
                            assert!(part.from == w.from && part.to < w.to, "{part:?} is not the first part of {w:?}");
                            if part.to > done {
                                span_now = part.to - done;
                            }
                            w = part;
                        }
                        None => break, // taken whole (oversized_taken)
                    }
                }
                // Small answers let the span grow back (as `attempt` does).
                if records.iter().filter(|t| **t >= w.from && **t < w.to).count() * 4 < cap {
                    span_now = (span_now * 2).min(s(3600));
                }
                let next = completed(cp.done_until, &w, w.to, false);
                let before = (cp.done_until, cp.rechecked_until.unwrap_or(from));
                let after = (next.done_until, next.rechecked_until.unwrap_or(next.done_until.unwrap()));
                assert!(next.done_until >= cp.done_until, "checkpoint moved backwards: {cp:?} -> {next:?}");
                assert!(after > before, "no progress: {cp:?} -> {next:?} after {w:?}");
                covered.push(w);
                requests += 1;
                cp = next;
            }
            assert!(requests <= most, "overlap {overlap}, burst {burst_at}+{burst_len}: {requests} requests");
            // The stored windows cover [t0 − overlap, horizon) without a gap.
            covered.sort_by_key(|w| w.from);
            let mut reach = t0 - s(overlap);
            for w in &covered {
                assert!(w.from <= reach, "overlap {overlap}, burst {burst_at}: [{reach}, {}) never asked", w.from);
                reach = reach.max(w.to);
            }
            assert!(reach >= horizon, "asked up to {reach} only");
        }
        // No checkpoint yet: plain halving from the start.
        let w = Window { from: t0, to: t0 + s(10) };
        assert_eq!(split_window(w), Some(Window { from: t0, to: t0 + s(5) }));
        assert_eq!(split_window(Window { from: t0, to: t0 + s(1) }), None);
    }

    /// A page digest tells a repeated page from the next one, by its keys in order.
    #[test]
    fn test_page_digest_is_the_keys() {
        let page = |keys: &[&str]| Page {
            records: keys
                .iter()
                .map(|k| Record {
                    key: (*k).into(),
                    time: at("2026-03-18T08:00:00Z"),
                    raw: RawValue::from_string("{}".into()).unwrap(),
                })
                .collect(),
            ..Page::default()
        };
        assert_eq!(page_digest(&page(&["a", "b"])), page_digest(&page(&["a", "b"])));
        assert_ne!(page_digest(&page(&["a", "b"])), page_digest(&page(&["b", "a"])));
        assert_ne!(page_digest(&page(&["ab"])), page_digest(&page(&["a", "b"])));
        assert_eq!(page_digest(&page(&[])).len(), 16);
    }

    /// Bounded work per answer: the first item that is not an object fails the whole array at
    /// once; items past MAX_ANSWER_ITEMS are skipped unread; a paged vendor allows its page size
    /// plus PAGE_SLACK.
    #[test]
    fn test_items_are_objects_and_bounded() {
        let read = |text: &str| serde_json::from_str::<Items<'_>>(text).map(|i| (i.list.len(), i.overflow));
        assert_eq!(read(r#"[{"a":1}, {}]"#).unwrap(), (2, false));
        let err = read("[{},1,1,1]").unwrap_err().to_string();
        assert!(err.contains("item 2 is not a JSON object: 1"), "{err}");
        assert!(read(r#"["x"]"#).is_err() && read("[[{}]]").is_err() && read("{}").is_err());
        let many = format!("[{}]", vec!["{}"; MAX_ANSWER_ITEMS + 3].join(","));
        assert_eq!(read(&many).unwrap(), (MAX_ANSWER_ITEMS, true));
        let page = |n: usize| {
            let text = format!("[{}]", vec!["{}"; n].join(","));
            page_items(serde_json::from_str(&text).unwrap(), 5).map(|l| l.len()).map_err(|e| e.0)
        };
        assert_eq!(page(5 + PAGE_SLACK), Ok(5 + PAGE_SLACK));
        assert!(page(6 + PAGE_SLACK).unwrap_err().contains("106 items on a page of 5"));
    }

    #[test]
    fn test_event_time_forms() {
        let want = at("2026-04-02T14:07:51.204915Z");
        for text in [
            "2026-04-02T14:07:51.204915Z",
            "2026-04-02T14:07:51.204915+00:00",
            "2026-04-02T16:07:51.204915+02:00",
            "2026-04-02T14:07:51.204915",
            "2026-04-02 14:07:51.204915",
        ] {
            assert_eq!(parse_event_time(text), Some(want), "{text}");
        }
        assert_eq!(parse_event_time("2026-04-02T14:07:51Z"), Some(at("2026-04-02T14:07:51Z")));
        assert_eq!(parse_event_time("2026-04-02"), Some(at("2026-04-02T00:00:00Z")));
        assert_eq!(parse_event_time("yesterday"), None);
        assert_eq!(parse_event_time(""), None);
    }

    /// A window asked when its end was already older than `lag + overlap` is settled: the next
    /// starts at its end without asking the overlap again; otherwise (near now) the overlap is
    /// asked as before, and a piece of the overlap is never settled.
    #[test]
    fn test_a_settled_window_is_not_asked_again() {
        let overlap = chrono::Duration::minutes(5);
        let w = Window { from: at("2026-03-18T08:00:00Z"), to: at("2026-03-18T09:00:00Z") };
        let settled = completed(Some(w.from), &w, w.to, true);
        assert!(settled.settled);
        assert_eq!(window_start(w.to, settled.rechecked_until, overlap, settled.settled), (w.to, false));
        let fresh = completed(Some(w.from), &w, w.to, false);
        assert_eq!(window_start(w.to, fresh.rechecked_until, overlap, fresh.settled), (w.to - overlap, false));
        let piece = Window { from: at("2026-03-18T07:55:00Z"), to: at("2026-03-18T07:58:00Z") };
        assert!(!completed(Some(w.from), &piece, piece.to, true).settled);
        let text = serde_json::to_string(&fresh).unwrap();
        assert!(!text.contains("settled"), "not written when false (older agents read it): {text}");
    }

    /// A stored pause is measured by time since boot in the same boot, whatever the wall clock
    /// did; by the wall clock after a reboot (another id) or when the uptime went back under the
    /// same id (review: lxcfs gives a container its own uptime, and a 60 s pause became an hour).
    #[test]
    fn test_a_stored_pause_is_measured_by_the_boot_it_was_stored_in() {
        use crate::clock::SinceBoot;
        let stored = StoredPause {
            until_ms: 1_000_060_000,
            boot: Some(BootPause { id: "b1".into(), at_ms: 500_000, until_ms: 560_000 }),
        };
        let up = |id: &str, ms: u64| SinceBoot { boot_id: id.into(), elapsed: Duration::from_millis(ms) };
        // 20 s later in the same boot, the wall clock stepped an hour ahead: 40 s left.
        assert_eq!(pause_left_ms(&stored, Some(&up("b1", 520_000)), 1_003_620_000), 40_000);
        // Another boot: the wall clock (10 s after storing: 50 s left).
        assert_eq!(pause_left_ms(&stored, Some(&up("b2", 5_000)), 1_000_010_000), 50_000);
        // The same id with an uptime below the stored one: not that boot; the wall clock.
        assert_eq!(pause_left_ms(&stored, Some(&up("b1", 50_000)), 1_000_010_000), 50_000);
        // No boot time here, or none stored: the wall clock.
        assert_eq!(pause_left_ms(&stored, None, 1_000_030_000), 30_000);
        let wall_only = StoredPause { boot: None, ..stored.clone() };
        assert_eq!(pause_left_ms(&wall_only, Some(&up("b1", 520_000)), 1_000_030_000), 30_000);
    }

    #[test]
    fn test_checkpoint_round_trips_as_json() {
        let cp = Checkpoint {
            done_until: Some(at("2026-03-18T08:00:00Z")),
            sweep: Some(Sweep {
                window: Window { from: at("2026-03-18T07:55:00Z"), to: at("2026-03-18T09:00:00Z") },
                page: PageCursor::Offset { skip: 300 },
                pages: 3,
                // Kept across restarts, so a repeated page is recognised after one too.
                last_page: Some("0123456789abcdef".into()),
                earlier_pages: vec!["fedcba9876543210".into()],
                restarted: true,
                vendor_start: Some(at("2026-03-18T09:00:03Z")),
            }),
            rechecked_until: Some(at("2026-03-18T07:57:30Z")),
            settled: true,
            began: Some(at("2026-03-18T00:00:00Z")),
        };
        let text = serde_json::to_string(&cp).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&text).unwrap(), cp);
        // Written before sweeps counted their pages: still loads, counting from 0.
        let old = r#"{"done_until":null,"sweep":{"window":{"from":"2026-03-18T07:55:00Z","to":"2026-03-18T09:00:00Z"},
            "page":{"kind":"number","page":4}}}"#;
        let sweep = serde_json::from_str::<Checkpoint>(old).unwrap().sweep.unwrap();
        assert_eq!((sweep.page, sweep.pages), (PageCursor::Number { page: 4 }, 0));
    }

    /// A backfill range resumed near its start asks its overlap again only from its start: what
    /// lies before belongs to another range (its records are under that range's dedupe keys, so
    /// asking it here would store them twice). Further in, the overlap is the usual one.
    #[tokio::test(start_paused = true)]
    async fn test_a_backfill_ranges_overlap_stays_inside_the_range() {
        use crate::config::{Config, StartAt};
        use crate::queue::QueueOptions;

        let clock = Clock::starting_at(at("2026-03-18T12:00:00Z"));
        let dir = tempfile::tempdir().unwrap();
        let text = "state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n\
                    organization_id = \"ORG_A\"\napi_key = \"k\"\n[[sinks]]\nname = \"file\"\ntype = \"file\"\n\
                    path = \"out.ndjson\"\n";
        let mut cfg =
            Config::parse_with_env(text, &dir.path().join("a.toml"), &|_: &str| None).unwrap().sources[0].clone();
        let start = at("2026-03-17T00:00:00Z");
        cfg.name = "a.backfill.20260317T000000Z-20260318T000000Z".into();
        (cfg.start, cfg.until, cfg.lag) = (StartAt::At(start), Some(at("2026-03-18T00:00:00Z")), Duration::ZERO);
        let overlap = chrono_dur(cfg.overlap);
        let queue = Queue::open(dir.path(), QueueOptions { max_bytes: 1 << 30, sinks: vec!["file".into()] }).unwrap();
        let source = Source::new(cfg, reqwest::Client::new(), queue.clone(), clock);
        let from = |done| {
            let cp = Checkpoint { done_until: Some(done), ..Checkpoint::default() };
            source.next_window(&cp).map(|w| w.from)
        };
        assert_eq!(from(start + chrono::Duration::minutes(2)), Ok(start), "not before the range's start");
        let later = start + chrono::Duration::hours(1);
        assert_eq!(from(later), Ok(later - overlap));
        drop(source);
        queue.close().await.unwrap();
    }

    /// Issue 21 point 4: the sources' shared client keeps at most
    /// [`crate::http::SOURCE_IDLE_CONNECTIONS_PER_HOST`] unused connections to a vendor host.
    /// Sources poll in step, so a poll of many organizations opens as many connections at once;
    /// before, every one of them stayed open until the next poll (about 30 KiB each). A real
    /// socket: the server holds every answer until all requests arrived (so each came on its
    /// own connection), then counts the connections the client closes once they are idle.
    #[tokio::test]
    async fn test_the_sources_client_closes_idle_connections_past_its_bound() {
        use crate::config::Config;
        use std::sync::atomic::AtomicUsize;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        const REQUESTS: usize = crate::http::SOURCE_IDLE_CONNECTIONS_PER_HOST + 8;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let all_arrived = Arc::new(tokio::sync::Barrier::new(REQUESTS));
        let closed = Arc::new(AtomicUsize::new(0));
        let closing = Arc::new(tokio::sync::Notify::new());
        let server = {
            let (all_arrived, closed, closing) = (all_arrived.clone(), closed.clone(), closing.clone());
            tokio::spawn(async move {
                loop {
                    let (mut conn, _) = listener.accept().await.unwrap();
                    let (all_arrived, closed, closing) = (all_arrived.clone(), closed.clone(), closing.clone());
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            let n = conn.read(&mut buf).await.unwrap();
                            assert!(n > 0, "the client closed before asking");
                            head.extend_from_slice(&buf[..n]);
                        }
                        all_arrived.wait().await;
                        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await.unwrap();
                        // Kept alive: the next read ends only when the client closes it.
                        while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                        closed.fetch_add(1, Ordering::SeqCst);
                        closing.notify_one();
                    });
                }
            })
        };
        let dir = tempfile::tempdir().unwrap();
        let text = "state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n\
                    organization_id = \"ORG_A\"\napi_key = \"k\"\n[[sinks]]\nname = \"file\"\ntype = \"file\"\n\
                    path = \"out.ndjson\"\n";
        let cfg = Config::parse_with_env(text, &dir.path().join("a.toml"), &|_: &str| None).unwrap().sources[0].clone();
        let client = http_client(&cfg).unwrap();
        let url = format!("http://{addr}/audit");
        let asks = (0..REQUESTS).map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(url).send().await.unwrap().bytes().await.unwrap() })
        });
        for ask in asks.collect::<Vec<_>>() {
            assert_eq!(&ask.await.unwrap()[..], b"{}");
        }
        // Waits for the closes (a bound, not a pause: the loop ends at the eighth).
        let excess = REQUESTS - crate::http::SOURCE_IDLE_CONNECTIONS_PER_HOST;
        let waited = tokio::time::timeout(Duration::from_secs(20), async {
            while closed.load(Ordering::SeqCst) < excess {
                closing.notified().await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{} of {REQUESTS} idle connections closed by the client, {excess} expected",
            closed.load(Ordering::SeqCst)
        );
        server.abort();
    }

    /// Issue 21 point 4: a source's task is its `run` future, allocated at its largest state for
    /// as long as the source lives, idle or not. The page's work (request, decoding, mapping,
    /// the store) is boxed while it runs, so what an idle source keeps stays smaller: its task
    /// was 8.8 KiB in the release build before (heaptrack, 500 sources: 4.4 MiB).
    #[tokio::test]
    async fn test_an_idle_source_task_keeps_little_memory() {
        use crate::config::Config;
        use crate::queue::QueueOptions;

        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path(), QueueOptions { max_bytes: 1 << 30, sinks: vec!["file".into()] }).unwrap();
        // One future type for every vendor (the vendor is a value inside the source).
        let text = "state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n\
                    organization_id = \"ORG_A\"\napi_key = \"k\"\n[[sinks]]\nname = \"file\"\ntype = \"file\"\n\
                    path = \"out.ndjson\"\n";
        let cfg = Config::parse_with_env(text, &dir.path().join("a.toml"), &|_: &str| None).unwrap().sources[0].clone();
        let source = Source::new(cfg, reqwest::Client::new(), queue.clone(), Clock::system());
        let task = source.run(RunMode::Follow, CancellationToken::new());
        let size = std::mem::size_of_val(&task);
        // The test build's figures (unoptimized layouts): 7,616 bytes before, 4,592 after.
        assert!(size <= 6 * 1024, "a source's task future is {size} bytes");
        drop(task);
        queue.close().await.unwrap();
    }

    /// Issue 18 point 4: a live source's overlap stops at the start of its first window
    /// (`began`), so a backfill ending there resends nothing; a checkpoint of an older version
    /// (no `began`) keeps the overlap it had.
    #[tokio::test(start_paused = true)]
    async fn test_no_window_starts_before_the_first_windows_start() {
        use crate::config::Config;
        use crate::queue::QueueOptions;

        let clock = Clock::starting_at(at("2026-03-18T12:00:00Z"));
        let dir = tempfile::tempdir().unwrap();
        let text = "state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n\
                    organization_id = \"ORG_A\"\napi_key = \"k\"\nlag = \"0s\"\noverlap = \"10m\"\n[[sinks]]\n\
                    name = \"file\"\ntype = \"file\"\npath = \"out.ndjson\"\n";
        let cfg = Config::parse_with_env(text, &dir.path().join("a.toml"), &|_: &str| None).unwrap().sources[0].clone();
        let queue = Queue::open(dir.path(), QueueOptions { max_bytes: 1 << 30, sinks: vec!["file".into()] }).unwrap();
        let source = Source::new(cfg, reqwest::Client::new(), queue.clone(), clock);
        let began = at("2026-03-18T11:00:00Z");
        // A first window of two minutes, shorter than the overlap.
        let done = began + chrono::Duration::minutes(2);
        let cp = Checkpoint { done_until: Some(done), began: Some(began), ..Checkpoint::default() };
        assert_eq!(source.next_window(&cp).map(|w| w.from), Ok(began));
        assert_eq!(cp.asks_again_from(Duration::from_secs(600)), Some(began));
        let older = Checkpoint { began: None, ..cp };
        assert_eq!(source.next_window(&older).map(|w| w.from), Ok(done - chrono::Duration::minutes(10)));
        drop(source);
        queue.close().await.unwrap();
    }

    /// Issue 18 point 4: the checkpoint records where the first window started while that
    /// window is swept (a sweep interrupted there has it too) and carries it unchanged after.
    #[tokio::test(start_paused = true)]
    async fn test_the_first_windows_start_is_recorded_once_and_carried() {
        use crate::config::Config;
        use crate::queue::QueueOptions;
        use crate::sim::{RateLimitSetting, Sim, SimOptions};

        let clock = Clock::starting_at(at("2026-03-18T12:00:00Z"));
        let mut opts = SimOptions::default();
        opts.aitronos.records = 50;
        opts.faults.rate_limit = RateLimitSetting::Off;
        let sim = Sim::start(([127, 0, 0, 1], 0).into(), opts, clock.clone()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = |max_pages: u32| {
            let text = format!(
                "state_dir = {state:?}\n[[sources]]\nname = \"live\"\nvendor = \"aitronos\"\n\
                 organization_id = {org:?}\napi_key = {key:?}\nbase_url = {base:?}\nstart = \"2026-03-16T12:00:00Z\"\n\
                 max_span = \"3d\"\npage_size = 5\nrate_limit = {{ requests = 1000, per = \"1s\" }}\n\
                 max_pages = {max_pages}\n[[sinks]]\nname = \"file\"\ntype = \"file\"\npath = \"out.ndjson\"\n",
                state = dir.path().display().to_string(),
                org = sim.aitronos_organization_id(),
                key = sim.aitronos_api_key(),
                base = sim.base_url().to_string(),
            );
            Config::parse_with_env(&text, &dir.path().join("a.toml"), &|_: &str| None).unwrap().sources[0].clone()
        };
        let queue = Queue::open(dir.path(), QueueOptions { max_bytes: 1 << 30, sinks: vec!["file".into()] }).unwrap();
        let run = |max_pages| {
            let source = Source::new(config(max_pages), reqwest::Client::new(), queue.clone(), clock.clone());
            async move { source.run(RunMode::CatchUp, CancellationToken::new()).await }
        };
        let stored =
            || async { serde_json::from_str::<Checkpoint>(&queue.checkpoint("live").await.unwrap().unwrap()).unwrap() };
        let began = at("2026-03-16T12:00:00Z");

        // Stopped inside the first window: the sweep's checkpoint has it already.
        let exit = run(3).await;
        assert!(matches!(exit, SourceExit::Failed(SourceError::TooManyPages { .. })), "{exit:?}");
        let cp = stored().await;
        assert_eq!((cp.done_until, cp.began), (None, Some(began)), "{cp:?}");
        // Resumed to its end, then a later window: carried unchanged.
        assert!(matches!(run(100).await, SourceExit::CaughtUp));
        let first = stored().await;
        assert_eq!(first.began, Some(began), "{first:?}");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(matches!(run(100).await, SourceExit::CaughtUp));
        let later = stored().await;
        assert!(later.done_until > first.done_until, "a later window was stored: {later:?}");
        assert_eq!(later.began, Some(began), "{later:?}");
        queue.close().await.unwrap();
        sim.shutdown().await;
    }

    /// A sweep that would need more than `max_pages` pages stops with an error naming the
    /// source, the window, the next page's URL and the cap, after exactly `max_pages` requests;
    /// what those pages held is stored, and the checkpoint stays on the window with its page
    /// count, so a larger cap resumes the same sweep where it stopped and loses nothing.
    #[tokio::test(start_paused = true)]
    async fn test_page_cap_stops_the_sweep_keeps_what_was_stored_and_resumes() {
        use crate::config::Config;
        use crate::queue::QueueOptions;
        use crate::sim::{RateLimitSetting, Sim, SimOptions};

        let clock = Clock::starting_at(at("2026-03-18T12:00:00Z"));
        let mut opts = SimOptions::default();
        opts.aitronos.records = 50;
        opts.faults.rate_limit = RateLimitSetting::Off;
        let sim = Sim::start(([127, 0, 0, 1], 0).into(), opts, clock.clone()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = |max_pages: u32| {
            let text = format!(
                "state_dir = {state:?}\n[[sources]]\nname = \"capped\"\nvendor = \"aitronos\"\n\
                 organization_id = {org:?}\napi_key = {key:?}\nbase_url = {base:?}\nstart = \"2d\"\n\
                 max_span = \"3d\"\npage_size = 5\nrate_limit = {{ requests = 1000, per = \"1s\" }}\n\
                 max_pages = {max_pages}\n[[sinks]]\nname = \"file\"\ntype = \"file\"\npath = \"out.ndjson\"\n",
                state = dir.path().display().to_string(),
                org = sim.aitronos_organization_id(),
                key = sim.aitronos_api_key(),
                base = sim.base_url().to_string(),
            );
            Config::parse_with_env(&text, &dir.path().join("a.toml"), &|_: &str| None).unwrap().sources[0].clone()
        };
        let queue = Queue::open(dir.path(), QueueOptions { max_bytes: 1 << 30, sinks: vec!["file".into()] }).unwrap();
        let run = |max_pages| {
            let source = Source::new(config(max_pages), reqwest::Client::new(), queue.clone(), clock.clone());
            let stats = source.stats();
            async move { (source.run(RunMode::CatchUp, CancellationToken::new()).await, stats.snapshot()) }
        };

        // 50 records in pages of 5: ten pages, three allowed.
        let (exit, stats) = run(3).await;
        let SourceExit::Failed(e @ SourceError::TooManyPages { .. }) = exit else {
            panic!("not the page cap: {exit:?}")
        };
        let msg = e.to_string();
        for piece in ["source capped:", "after 3 pages (max_pages)", "skip=15", "raise max_pages", "T12:00:00Z"] {
            assert!(msg.contains(piece), "{msg:?} lacks {piece:?}");
        }
        assert_eq!(sim.request_log().len(), 3, "asked exactly max_pages pages");
        assert_eq!((stats.requests, stats.pages, stats.stored), (3, 3, 15), "{stats:?}");
        let cp: Checkpoint = serde_json::from_str(&queue.checkpoint("capped").await.unwrap().unwrap()).unwrap();
        let sweep = cp.sweep.expect("the unfinished sweep stays in the checkpoint");
        assert_eq!((cp.done_until, sweep.page, sweep.pages), (None, PageCursor::Offset { skip: 15 }, 3));

        // A larger cap resumes at page 4 of the same window: seven more requests, all 50 stored.
        let (exit, stats) = run(100).await;
        assert!(matches!(exit, SourceExit::CaughtUp), "{exit:?}");
        let log = sim.request_log();
        assert_eq!(log.len(), 10, "{log:?}");
        let resumed = &log[3].query;
        let window_end = sweep.window.to.format("to_date=%Y-%m-%dT%H%%3A%M%%3A%SZ").to_string();
        assert!(resumed.contains("skip=15") && resumed.contains(&window_end), "not the same sweep resumed: {resumed}");
        assert_eq!(stats.stored, 35, "{stats:?}");
        let cp: Checkpoint = serde_json::from_str(&queue.checkpoint("capped").await.unwrap().unwrap()).unwrap();
        assert_eq!((cp.done_until, cp.sweep), (Some(sweep.window.to), None));
        queue.close().await.unwrap();
        sim.shutdown().await;
    }
}
