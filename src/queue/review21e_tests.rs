//! Adversarial review of the page-at-a-time queue storage (schema 9, `pages.rs`): damaged rows,
//! a salvaged database, group commit with a failing page, the purge mark against sinks added,
//! removed and renamed, replay, migration, and a model-checked random run.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::tests::{all, bodies, db, ev, opts, page, stored_then};
use super::writer::Command;
use super::*;

fn ids(batch: &[QueuedEvent]) -> Vec<i64> {
    batch.iter().map(|e| e.id).collect()
}

/// What the live byte count says against what a fresh open measures.
async fn reopen_measure(dir: &Path, sinks: &[&str]) -> u64 {
    let q = Queue::open(dir, opts(sinks, u64::MAX)).unwrap();
    let bytes = q.queued_bytes();
    q.close().await.unwrap();
    bytes
}

// ---------------------------------------------------------------- findings (fail on the change)

/// A damaged row whose id range is huge (`last_id` far past `first_id`) must be an error naming
/// the file, never a panic of the database thread (debug: `count * 4` overflows in
/// `Sizes::new`) nor, in release where it wraps, a row of 2^62 "events" read as empty bodies.
#[tokio::test]
async fn review21e_a_row_with_an_overflowing_id_range_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // 2^62 + 1 ids: `count * 4` wraps to 4 in release, so a 4-byte `sizes` (2: the body of "ab")
    // is taken as right, and every id after the first reads as an empty body.
    let huge = "UPDATE pages SET last_id = first_id + 4611686018427387904, sizes = X'02000000'";
    stored_then(dir.path(), vec![ev("a", 1, "a"), ev("b", 2, "b")], huge).await;
    // Found when the queue is measured at open: the agent refuses the damaged file.
    let q = match Queue::open(dir.path(), opts(&["s"], 1000)) {
        Err(e) => {
            let msg = e.to_string();
            assert!(matches!(e, QueueError::Damaged { .. }) && msg.contains("auditrelay.db"), "{msg}");
            return;
        }
        Ok(q) => q,
    };
    match q.read_batch("s", 10, usize::MAX).await {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("damaged") && msg.contains("auditrelay.db"), "{msg}");
        }
        Ok(batch) => panic!("a damaged row was read as events {:?} {:?}", ids(&batch), bodies(&batch)),
    }
    q.stats().await.expect("the database thread still answers");
    q.close().await.unwrap();
}

/// A row whose body does not match its sizes (longer, shorter) is damaged: it must not be
/// delivered as events. (Found on the deflating version, whose plain path checked nothing.)
#[tokio::test]
async fn review21e_a_plain_row_whose_body_does_not_match_its_sizes_is_an_error() {
    for damage in ["UPDATE pages SET body = CAST('abZZZZ' AS BLOB)", "UPDATE pages SET body = CAST('a' AS BLOB)"] {
        let dir = tempfile::tempdir().unwrap();
        stored_then(dir.path(), vec![ev("a", 1, "a"), ev("b", 2, "b")], damage).await;
        // Found when the queue is measured at open (`length(body)` against the sizes).
        let q = match Queue::open(dir.path(), opts(&["s"], 1000)) {
            Err(e) => {
                assert!(matches!(e, QueueError::Damaged { .. }) && e.to_string().contains("damaged"), "{damage}: {e}");
                continue;
            }
            Ok(q) => q,
        };
        match q.read_batch("s", 10, usize::MAX).await {
            Err(e) => assert!(e.to_string().contains("damaged"), "{damage}: {e}"),
            Ok(batch) => {
                panic!("{damage}: read as events {:?}", batch.iter().map(|e| e.body.clone()).collect::<Vec<_>>())
            }
        }
        q.close().await.unwrap();
    }
}

/// README "Damaged state" salvages with `sqlite3 .recover`, which loses the rows of a damaged
/// b-tree page. With `event_ids`' row gone (`user_version` kept at 9), or the whole table with
/// `user_version` 0 (what `sqlite3 auditrelay.db.damaged .recover | sqlite3 auditrelay.db`,
/// sqlite3 3.40.1 here, left when `event_ids`' root page was unreadable), the agent must still
/// open and never issue an id at or below a sink's cursor (3): such an event is never delivered
/// and its row never deleted. Before the fix: "cannot measure the queue: Query returned no
/// rows", and id 1 reissued after the table was recreated at (1, 0, 0).
#[tokio::test]
async fn review21e_a_salvaged_database_without_event_ids_never_issues_an_id_below_a_cursor() {
    for salvage in ["DELETE FROM event_ids", "DROP TABLE event_ids; PRAGMA user_version = 0;"] {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        q.store_page(page("src", vec![ev("a", 1, "a"), ev("b", 2, "b"), ev("c", 3, "c")])).await.unwrap();
        q.ack("s", 3).await.unwrap();
        q.close().await.unwrap();
        db(dir.path()).execute_batch(salvage).unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        q.store_page(page("src", vec![ev("d", 4, "d")])).await.unwrap();
        let batch = q.read_batch("s", 10, usize::MAX).await.unwrap();
        let got = (ids(&batch), bodies(&batch));
        assert_eq!(got, (vec![4], vec!["d".to_owned()]), "{salvage}: a new id above the cursor");
        q.close().await.unwrap();
    }
}

/// The same for a version 8 database salvaged without its `sqlite_sequence` row (the queue was
/// empty: every sink at 500): the upgrade takes `issued` from the sequence and `MAX(id)` only,
/// so the next event gets id 1, at or below every cursor: skipped by every sink, then deleted.
/// (Version 8 had the same exposure; the upgrade is where `issued` could also take the cursors.)
#[tokio::test]
async fn review21e_a_v8_database_without_its_sequence_row_never_issues_an_id_below_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    Queue::open(dir.path(), opts(&["s"], 1000)).unwrap().close().await.unwrap();
    db(dir.path())
        .execute_batch(
            "DROP TABLE pages; DROP TABLE event_ids;
             CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
                                  event_time_ms INTEGER NOT NULL, body BLOB NOT NULL,
                                  collected_ms INTEGER NOT NULL DEFAULT 0);
             UPDATE sink_cursors SET last_id = 500;
             DELETE FROM sqlite_sequence WHERE name = 'events';
             PRAGMA user_version = 8;",
        )
        .unwrap();
    let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
    q.store_page(page("src", vec![ev("new", 1, "new")])).await.unwrap();
    let batch = q.read_batch("s", 10, usize::MAX).await.unwrap();
    assert_eq!(bodies(&batch), ["new"], "ids issued {:?}", ids(&batch));
    q.close().await.unwrap();
}

// ---------------------------------------------------------------- what held

/// A group of four writes: page a (3 events), page b (300 events: two rows, then its checkpoint
/// insert fails: a trigger), page c (2 events), an ack of everything. b's rows, ids and
/// `issued` roll back together: c's ids follow a's, the ack stops at c's last, and after a
/// reopen the next id follows c's.
#[tokio::test]
async fn review21e_a_page_failing_after_its_rows_were_written_rolls_back_its_ids_and_issued() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
    db(dir.path())
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON checkpoints WHEN NEW.source = 'b'
             BEGIN SELECT RAISE(ABORT, 'boom'); END;",
        )
        .unwrap();
    let (resume, paused) = std::sync::mpsc::channel();
    q.inner.commands.send(Command::Pause { resume: paused }).unwrap();
    let send = |command: Command| q.inner.commands.send(command).unwrap();
    let mk = |src: &str, n: usize| {
        let events = (0..n).map(|i| ev(&format!("{src}{i}"), i as i64, &format!("{src}-{i}"))).collect();
        PageWrite { checkpoint: Some("{}".into()), ..page(src, events) }
    };
    let (r1, a1) = oneshot::channel();
    send(Command::StorePage { page: Arc::new(mk("a", 3)), reply: r1 });
    let (r2, a2) = oneshot::channel();
    send(Command::StorePage { page: Arc::new(mk("b", 300)), reply: r2 });
    let (r3, a3) = oneshot::channel();
    send(Command::StorePage { page: Arc::new(mk("c", 2)), reply: r3 });
    let (r4, a4) = oneshot::channel();
    send(Command::Ack { sink: "s".into(), upto_id: i64::MAX, refused: vec![], reply: r4 });
    resume.send(()).unwrap();
    assert_eq!(a1.await.unwrap().unwrap().stored, 3);
    assert!(a2.await.unwrap().is_err(), "b's checkpoint insert fails");
    assert_eq!(a3.await.unwrap().unwrap().stored, 2);
    a4.await.unwrap().unwrap();
    assert_eq!(*q.subscribe_new_events().borrow(), 5);
    let (issued, rows): (i64, i64) = db(dir.path())
        .query_row("SELECT issued, (SELECT COUNT(*) FROM pages) FROM event_ids", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((issued, rows), (5, 0), "b left nothing; the ack passed a and c");
    q.close().await.unwrap();
    db(dir.path()).execute_batch("DROP TRIGGER boom").unwrap();
    let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
    q.store_page(mk("b", 1)).await.unwrap();
    assert_eq!(ids(&q.read_batch("s", 10, usize::MAX).await.unwrap()), [6]);
    q.close().await.unwrap();
}

/// Sinks added, removed and renamed while a row is passed in part; a late sink below the purge
/// mark; refusals at, below and above the mark; replay then acks; the live byte count always
/// equals what a fresh open measures.
#[tokio::test]
async fn review21e_sinks_changing_around_a_partly_passed_row_skip_nothing_and_count_right() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), opts(&["s1", "s2"], u64::MAX)).unwrap();
    let evs: Vec<NewEvent> = (1..=10).map(|i| ev(&format!("k{i}"), i, &format!("e{i:02}"))).collect();
    q.store_page(page("src", evs)).await.unwrap();
    q.ack("s1", 10).await.unwrap();
    q.ack("s2", 4).await.unwrap();
    assert_eq!(q.queued_bytes(), 18);
    // A late sink: after the purge mark (4), never below.
    q.set_sinks(vec!["s1".into(), "s2".into(), "late".into()]).await.unwrap();
    assert_eq!(q.backlog("late").await.unwrap(), 6);
    let batch = q.read_batch("late", 100, usize::MAX).await.unwrap();
    assert_eq!(ids(&batch), [5, 6, 7, 8, 9, 10]);
    // late refuses 3 (gone: every sink had passed it), 6 (kept) and 99 (beyond: not passed).
    let refused = [3, 6, 99].map(|id| RefusedEvent { id, reason: "no".into() }).to_vec();
    q.ack_refusing("late", 10, refused).await.unwrap();
    let letters = q.dead_letters(10).await.unwrap();
    assert_eq!(
        letters.iter().map(|l| (l.key.clone(), l.raw.clone())).collect::<Vec<_>>(),
        [("late#6".into(), b"e06".to_vec())]
    );
    assert_eq!(q.queued_bytes(), 18 + 3);
    // s2 renamed s3 (its worker stopped), then removed from the set: s3 continues after 4.
    let done = q.rename_sinks(vec![("s2".into(), "s3".into())]).await.unwrap();
    assert_eq!(done[0].cursor, 4);
    q.set_sinks(vec!["s1".into(), "s3".into(), "late".into()]).await.unwrap();
    assert_eq!(ids(&q.read_batch("s3", 100, usize::MAX).await.unwrap()), [5, 6, 7, 8, 9, 10]);
    q.ack("s3", 7).await.unwrap();
    assert_eq!(q.queued_bytes(), 9 + 3);
    q.close().await.unwrap();
    assert_eq!(reopen_measure(dir.path(), &["s1", "s3", "late"]).await, 12);
    // Replay 6: a new id for every sink; then all ack it.
    let q = Queue::open(dir.path(), opts(&["s1", "s3", "late"], u64::MAX)).unwrap();
    let letter = q.dead_letters(10).await.unwrap()[0].id;
    let requeued = q.requeue_dead_letters(vec![RequeueItem { dead_letter_id: letter }]).await.unwrap();
    assert_eq!(requeued[0].event_id, 11);
    assert_eq!(all(&q, "s1").await, ["e06"]);
    assert_eq!(all(&q, "late").await, ["e06"]);
    assert_eq!(all(&q, "s3").await, ["e08", "e09", "e10", "e06"]);
    for s in ["s1", "s3", "late"] {
        q.ack(s, 11).await.unwrap();
    }
    assert_eq!((q.stats().await.unwrap().events, q.queued_bytes()), (0, 0));
    assert_eq!(db(dir.path()).query_row("SELECT COUNT(*) FROM pages", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    q.close().await.unwrap();
}

/// A version 8 database with an empty events table whose sqlite_sequence is high, sinks at
/// different cursors, pre-v4 rows and a backlog across sources interleaved: ids continue after
/// the sequence, every sink gets exactly what it had not delivered, and the file opens again
/// (1601..=5000 hold nothing: marked so at the upgrade, `schema::check_newest_stored`).
#[tokio::test]
async fn review21e_a_v8_database_with_gaps_and_a_high_sequence_migrates_exactly() {
    let dir = tempfile::tempdir().unwrap();
    Queue::open(dir.path(), opts(&["s1", "s2"], u64::MAX)).unwrap().close().await.unwrap();
    let mut sql = String::from(
        "DROP TABLE pages; DROP TABLE event_ids;
         CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
                              event_time_ms INTEGER NOT NULL, body BLOB NOT NULL,
                              collected_ms INTEGER NOT NULL DEFAULT 0);
         INSERT INTO events (id, source, event_time_ms, body, collected_ms) VALUES (5000, 'x', 1, X'00', 1);
         DELETE FROM events;",
    );
    // 600 events from 1001, alternating runs of sources; a gap at 1300..1309; some pre-v4.
    for id in 1001..=1600 {
        if (1300..1310).contains(&id) {
            continue;
        }
        let source = if (id / 7) % 2 == 0 { "a" } else { "b" };
        let collected = if id < 1050 { 0 } else { 100 + id / 100 };
        sql += &format!(
            "INSERT INTO events (id, source, event_time_ms, body, collected_ms) VALUES ({id}, '{source}', {id}, CAST('b{id}' AS BLOB), {collected});"
        );
    }
    sql += "UPDATE sqlite_sequence SET seq = 5000 WHERE name = 'events';
            UPDATE sink_cursors SET last_id = 1200 WHERE sink = 's1';
            UPDATE sink_cursors SET last_id = 1000 WHERE sink = 's2';
            PRAGMA user_version = 8;";
    db(dir.path()).execute_batch(&sql).unwrap();
    let q = Queue::open(dir.path(), opts(&["s1", "s2"], u64::MAX)).unwrap();
    assert_eq!(*q.subscribe_new_events().borrow(), 5000);
    let expect = |from: i64| (from..=1600).filter(|id| !(1300..1310).contains(id)).collect::<Vec<i64>>();
    let mut got = Vec::new();
    loop {
        let batch = q.read_batch("s2", 37, 200).await.unwrap();
        let Some(last) = batch.last().map(|e| e.id) else { break };
        for e in &batch {
            assert_eq!(e.body, format!("b{}", e.id).into_bytes());
        }
        got.extend(ids(&batch));
        q.ack("s2", last).await.unwrap();
    }
    assert_eq!(got, expect(1001));
    assert_eq!(q.backlog("s1").await.unwrap() as usize, expect(1201).len());
    q.store_page(page("a", vec![ev("new", 1, "new")])).await.unwrap();
    let batch = q.read_batch("s2", 10, usize::MAX).await.unwrap();
    assert_eq!(ids(&batch), [5001]);
    q.close().await.unwrap();
    Queue::open(dir.path(), opts(&["s1", "s2"], u64::MAX)).unwrap().close().await.unwrap();
}

/// Read limits across row boundaries and a huge single event: never more than `max_events`,
/// never over `max_bytes` unless one event alone, always at least one, in order, no gap.
#[tokio::test]
async fn review21e_read_limits_hold_across_rows_and_a_huge_event() {
    for (max_events, max_bytes) in [(0, 0), (5, 5000), (1000, 4999), (7, usize::MAX), (500, 1 << 20)] {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
        let mut evs: Vec<NewEvent> = (0..300).map(|i| ev(&format!("k{i}"), i, &format!("{i:0>1000}"))).collect();
        evs.insert(150, ev("huge", 0, &"h".repeat(600 * 1024)));
        q.store_page(page("src", evs)).await.unwrap();
        let mut next = 1;
        loop {
            let batch = q.read_batch("s", max_events, max_bytes).await.unwrap();
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= max_events.max(1));
            let total: usize = batch.iter().map(|e| e.body.len()).sum();
            assert!(total <= max_bytes || batch.len() == 1, "{max_events}/{max_bytes}: {total}");
            assert_eq!(ids(&batch), (next..next + batch.len() as i64).collect::<Vec<_>>());
            next += batch.len() as i64;
            q.ack("s", next - 1).await.unwrap();
        }
        assert_eq!(next, 302, "{max_events}/{max_bytes}");
        assert_eq!(q.queued_bytes(), 0);
        q.close().await.unwrap();
    }
}

// ---------------------------------------------------------------- model-checked random run

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Default)]
struct Model {
    bodies: BTreeMap<i64, Vec<u8>>,
    issued: i64,
    purged: i64,
    cursors: BTreeMap<String, i64>,
    dead: BTreeMap<String, usize>,
}

impl Model {
    fn purge(&mut self) {
        let Some(floor) = self.cursors.values().min().copied() else { return };
        if floor > self.purged {
            self.purged = floor;
            self.bodies.retain(|id, _| *id > floor);
        }
    }
    fn bytes(&self) -> u64 {
        (self.bodies.values().map(Vec::len).sum::<usize>() + self.dead.values().sum::<usize>()) as u64
    }
    fn pending(&self, sink: &str) -> Vec<i64> {
        let from = self.cursors[sink].max(self.purged);
        self.bodies.keys().copied().filter(|id| *id > from).collect()
    }
}

/// Random pages (sizes up to a row and past it, several sources), reads with random limits,
/// acks at, inside and past what was read (and past the newest), refusals, sinks added and
/// removed, reopen: every read is exactly the model's next events, and the byte count, backlog
/// and event count agree with the model (and with a fresh open).
#[tokio::test]
async fn review21e_a_random_run_agrees_with_a_model() {
    for seed in [1u64, 7, 42, 99, 2026] {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let pool = ["s1", "s2", "s3", "s4"];
        let mut sinks: Vec<String> = vec!["s1".into(), "s2".into()];
        let open = |sinks: &[String]| {
            Queue::open(dir.path(), QueueOptions { max_bytes: u64::MAX, sinks: sinks.to_vec() }).unwrap()
        };
        let mut q = open(&sinks);
        let mut m = Model::default();
        for s in &sinks {
            m.cursors.insert(s.clone(), 0);
        }
        let mut key = 0u64;
        for step in 0..400 {
            match rng.below(10) {
                0..=2 => {
                    let n = match rng.below(4) {
                        0 => 0,
                        1 => rng.below(5) + 1,
                        2 => rng.below(300) + 1,
                        _ => rng.below(700) + 1,
                    };
                    let src = format!("src{}", rng.below(3));
                    let mut evs = Vec::new();
                    for _ in 0..n {
                        key += 1;
                        let len = if rng.below(200) == 0 { 300 * 1024 } else { rng.below(3000) as usize + 1 };
                        let body = format!("{key}:")
                            .into_bytes()
                            .into_iter()
                            .chain(std::iter::repeat(b'x'))
                            .take(len.max(8))
                            .collect::<Vec<u8>>();
                        evs.push(NewEvent { dedupe_key: format!("k{key}"), event_time_ms: key as i64, body });
                    }
                    let out = q.store_page(page(&src, evs.clone())).await.unwrap();
                    assert_eq!(out.stored, n as usize);
                    for e in evs {
                        m.issued += 1;
                        m.bodies.insert(m.issued, e.body);
                    }
                }
                3..=6 => {
                    let sink = sinks[rng.below(sinks.len() as u64) as usize].clone();
                    let max_events = rng.below(600) as usize;
                    let max_bytes = [0usize, 1, 5000, 100_000, 1 << 20, usize::MAX][rng.below(6) as usize];
                    let batch = q.read_batch(&sink, max_events, max_bytes).await.unwrap();
                    let pending = m.pending(&sink);
                    assert_eq!(batch.is_empty(), pending.is_empty(), "seed {seed} step {step}: at least one");
                    assert_eq!(ids(&batch), pending[..batch.len()], "seed {seed} step {step}: {sink}");
                    for e in &batch {
                        assert_eq!(e.body, m.bodies[&e.id], "seed {seed} step {step}: body of {}", e.id);
                    }
                    let Some(last) = batch.last().map(|e| e.id) else { continue };
                    let upto = match rng.below(5) {
                        0 => batch[rng.below(batch.len() as u64) as usize].id,
                        1 => last + rng.below(50) as i64,
                        2 => i64::MAX,
                        _ => last,
                    };
                    let mut refused = Vec::new();
                    if rng.below(3) == 0 {
                        for _ in 0..rng.below(4) {
                            let id = if rng.below(4) == 0 {
                                rng.below(m.issued as u64 + 5) as i64
                            } else {
                                batch[rng.below(batch.len() as u64) as usize].id
                            };
                            refused.push(RefusedEvent { id, reason: "no".into() });
                        }
                    }
                    let purged_before = m.purged;
                    let clamped = upto.min(m.issued);
                    for r in &refused {
                        if r.id <= clamped
                            && r.id > purged_before
                            && let Some(body) = m.bodies.get(&r.id)
                        {
                            m.dead.entry(format!("{sink}#{}", r.id)).or_insert(body.len());
                        }
                    }
                    q.ack_refusing(&sink, upto, refused).await.unwrap();
                    let c = m.cursors.get_mut(&sink).unwrap();
                    *c = (*c).max(clamped);
                    m.purge();
                }
                7 => {
                    // Add or remove a sink (a reload).
                    let s = pool[rng.below(pool.len() as u64) as usize].to_owned();
                    if sinks.contains(&s) {
                        if sinks.len() > 1 {
                            sinks.retain(|x| *x != s);
                            m.cursors.remove(&s);
                        }
                    } else {
                        sinks.push(s.clone());
                        m.cursors.insert(s, 0);
                    }
                    q.set_sinks(sinks.clone()).await.unwrap();
                    m.purge();
                }
                8 => {
                    q.close().await.unwrap();
                    q = open(&sinks);
                    assert_eq!(*q.subscribe_new_events().borrow(), m.issued, "seed {seed} step {step}: newest");
                }
                _ => {
                    // Replay a dead letter of a sink's.
                    let letters = q.dead_letters(1000).await.unwrap();
                    if let Some(l) = letters.iter().find(|l| l.sink.is_some()) {
                        let r = q.requeue_dead_letters(vec![RequeueItem { dead_letter_id: l.id }]).await.unwrap();
                        m.issued += 1;
                        assert_eq!(r[0].event_id, m.issued);
                        m.dead.remove(&l.key);
                        m.bodies.insert(m.issued, l.raw.clone());
                    }
                }
            }
            assert_eq!(q.queued_bytes(), m.bytes(), "seed {seed} step {step}: queued bytes");
            assert_eq!(q.stats().await.unwrap().events, m.bodies.len() as u64, "seed {seed} step {step}: events");
            for s in &sinks {
                assert_eq!(
                    q.backlog(s).await.unwrap(),
                    m.pending(s).len() as u64,
                    "seed {seed} step {step}: backlog {s}"
                );
            }
        }
        q.close().await.unwrap();
        let names: Vec<&str> = sinks.iter().map(String::as_str).collect();
        assert_eq!(reopen_measure(dir.path(), &names).await, m.bytes(), "seed {seed}: measured at open");
    }
}
