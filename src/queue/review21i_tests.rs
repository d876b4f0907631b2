//! Adversarial review 21i, of new databases made with 16 KiB pages: a file that lost a filesystem
//! block, or holds a bad sector, must be refused as damaged, never read back with a body changed.
//! In the seventh round of issue 21, with no checksum on a row, 16 KiB pages let both through (the
//! file still held whole pages, rounded up, and `quick_check` does not read an overflow page's
//! content; `tests/it/damaged.rs`, its second case, failed), so new databases kept SQLite's 4 KiB
//! pages. Since schema 10 every row's checksum is checked at open and at every read, and new
//! databases are made in 16 KiB pages (`schema::NEW_FILE_PAGE_SIZE`): these tests pin that the
//! checksum, not the page size, is what refuses the damage, in both page sizes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use super::schema::NEW_FILE_PAGE_SIZE;
use super::tests::{ev, opts, page};
use super::*;

/// A body that is not zeros anywhere, so bytes lost from the file show up in it.
fn body(len: usize) -> String {
    (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

/// The queue's file in `dir`, made with `page_size` (None: as `Queue::open` makes a new one;
/// Some: as an older agent, or another tool, made it).
fn make(dir: &std::path::Path, page_size: Option<i64>) {
    if let Some(size) = page_size {
        std::fs::create_dir_all(dir).unwrap();
        let db = rusqlite::Connection::open(dir.join("auditrelay.db")).unwrap();
        db.pragma_update(None, "page_size", size).unwrap();
        db.execute_batch("CREATE TABLE review_pad (x); DROP TABLE review_pad;").unwrap();
    }
}

fn page_size_of(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path).unwrap().pragma_query_value(None, "page_size", |r| r.get(0)).unwrap()
}

/// What opening the damaged file and reading every sink's events gave: the error that refused
/// it, or each sink's bodies (a read that failed says so in place of its bodies).
async fn open_and_read(dir: &std::path::Path, sinks: &[&str]) -> Result<Vec<Vec<String>>, String> {
    let q = Queue::open(dir, opts(sinks, u64::MAX)).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for sink in sinks {
        out.push(match q.read_batch(sink, 100_000, usize::MAX).await {
            Ok(batch) => super::tests::bodies(&batch),
            Err(e) => vec![format!("<opened as sound; then read_batch failed: {e}>")],
        });
    }
    let _ = q.close().await;
    Ok(out)
}

/// Stores one 100,000-byte event in a new queue of the given page size, closes it (WAL folded),
/// loses the last 4 KiB filesystem block of the file, and opens it again: the damage must be
/// refused (README "Damaged state"), never read back as an event whose body changed.
async fn cut_short_by_one_block(page_size: Option<i64>) -> (i64, Result<Vec<Vec<String>>, String>) {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), page_size);
    let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
    q.store_page(page("src", vec![ev("k1", 1, &body(100_000))])).await.unwrap();
    q.close().await.unwrap();
    let path = dir.path().join("auditrelay.db");
    let size = page_size_of(&path);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 4096).unwrap();
    drop(f);
    (size, open_and_read(dir.path(), &["s"]).await)
}

/// A database made as every agent now makes one (16 KiB pages) and cut short by one 4 KiB block
/// is refused as damaged at open. Without the row checksum it opened as sound (review 21i).
#[tokio::test]
async fn review21i_a_new_database_cut_short_by_one_block_is_refused() {
    let (size, got) = cut_short_by_one_block(None).await;
    assert_eq!(size, NEW_FILE_PAGE_SIZE, "new databases are made in 16 KiB pages");
    let err = got.expect_err("a truncated database must be refused");
    assert!(err.contains("damaged"), "{err}");
}

/// The same loss in a database of SQLite's 4 KiB pages (one made by an agent before the eighth
/// round, which keeps its pages) is refused too.
#[tokio::test]
async fn review21i_an_older_4_kib_database_cut_short_by_one_block_is_refused() {
    let (size, got) = cut_short_by_one_block(Some(4096)).await;
    assert_eq!(size, 4096, "an existing database keeps its pages");
    let err = got.expect_err("a truncated database must be refused");
    assert!(err.contains("damaged"), "{err}");
}

/// A bad 512-byte sector anywhere in the file, one position at a time (every 1 KiB), in a
/// database of 16 KiB pages and in one of 4 KiB pages: each time the file is either refused, or
/// a read fails, or every sink reads exactly the events stored for it (its cursor unchanged).
/// A changed body is never read as sound, wherever the bad sector lands (a b-tree page, an
/// overflow page's header or its content, a free page, the cursors). Inside a row's bodies it is
/// the row's checksum that refuses the file.
#[tokio::test]
async fn review21i_a_bad_sector_anywhere_never_reads_a_changed_body() {
    for page_size in [None, Some(4096)] {
        let dir = tempfile::tempdir().unwrap();
        let pristine_dir = dir.path().join("pristine");
        make(&pristine_dir, page_size);
        let stored: Vec<String> = vec![body(100_000), "small one".into(), body(40_000), "small two".into()];
        let q = Queue::open(&pristine_dir, opts(&["a", "b"], u64::MAX)).unwrap();
        q.store_page(page("src", vec![ev("k1", 1, &stored[0]), ev("k2", 2, &stored[1])])).await.unwrap();
        q.store_page(page("src", vec![ev("k3", 3, &stored[2]), ev("k4", 4, &stored[3])])).await.unwrap();
        q.ack("b", 1).await.unwrap();
        q.close().await.unwrap();
        let path = pristine_dir.join("auditrelay.db");
        let size = page_size_of(&path);
        assert_eq!(size, page_size.unwrap_or(NEW_FILE_PAGE_SIZE));
        let pristine = std::fs::read(&path).unwrap();
        assert!(!std::path::Path::new(&format!("{}-wal", path.display())).exists(), "the WAL was folded at close");

        let (mut refused, mut by_checksum, mut failed_reads, mut sound) = (0, 0usize, 0, 0);
        let probe = dir.path().join("probe");
        for at in (0..pristine.len().saturating_sub(512)).step_by(1024) {
            let _ = std::fs::remove_dir_all(&probe);
            std::fs::create_dir_all(&probe).unwrap();
            let mut bad = pristine.clone();
            bad[at..at + 512].fill(0xA5);
            std::fs::write(probe.join("auditrelay.db"), &bad).unwrap();
            match open_and_read(&probe, &["a", "b"]).await {
                Err(e) => {
                    refused += 1;
                    by_checksum += usize::from(e.contains("do not match their checksum"));
                }
                Ok(sinks) => {
                    let want = [stored.clone(), stored[1..].to_vec()];
                    for ((sink, bodies), want) in ["a", "b"].iter().zip(&sinks).zip(&want) {
                        if bodies.iter().any(|b| b.starts_with("<opened as sound; then read_batch failed")) {
                            failed_reads += 1;
                            continue;
                        }
                        assert!(
                            bodies == want,
                            "{size}-byte pages, bad sector at {at}: sink {sink} read {} events of {:?} bytes, \
                             not the {} stored for it",
                            bodies.len(),
                            bodies.iter().map(String::len).collect::<Vec<_>>(),
                            want.len()
                        );
                    }
                    sound += 1;
                }
            }
        }
        // The sweep met the rows' bodies, and what refused them there was their checksum.
        assert!(
            by_checksum > 50 && sound > 0,
            "{size}-byte pages: {refused} refused ({by_checksum} by a row's checksum), {failed_reads} failed reads, \
             {sound} opened"
        );
    }
}
