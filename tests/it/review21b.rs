//! Adversarial review of issue 21 (lean core), the sinks' request-size fit (`fit_request`, the
//! read's share of the bound): what the cut does to the rules it meets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::time::Duration;

use crate::harness::sinks::{ocsf_events, queue_with, sink_config, start_worker, uid};
use crate::hec::events_of_about;
use crate::hec_emulator::{HecEmulator, HecOptions};

/// A poison event (the collector answers 500 to any request holding it) is followed in the
/// queue by an event larger than `batch_max_bytes` alone but small enough that the two fit the
/// re-read's doubled bound (`Ended::Reread`: at least one event more, `batch_max_bytes` × 2).
/// Before issue 21 the re-read took both: the large event went through, proved the collector
/// alive, and the poison event was dead-lettered after its strikes. Now the re-read asks the
/// queue for only the last batch's *share* of that doubled bound (the poison event's queued
/// bytes over its request bytes, envelope included), which no longer holds the two: the
/// re-read holds the poison event alone again, it fails alone again, and the sink re-reads it
/// for ever: nothing behind it is ever delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_before_a_large_one_does_not_stall_the_sink() {
    let bound = 64 * 1024;
    let poison = ocsf_events()[0].clone();
    // Larger than the bound alone (the collector takes it: its limit is 8 MiB), and with the
    // poison event within the re-read's 2 × bound.
    // (Made from another event than the poison one: its uid must not hold the poison's.)
    let large = events_of_about(2, 2 * bound - poison.len() - 2_000).remove(1);
    assert!(large.len() > bound && poison.len() + large.len() <= 2 * bound, "{} {}", poison.len(), large.len());
    poison_then(poison, large, bound).await;
}

/// The same, older than issue 21 (it fails at 8f4b15c too): the event after the poison one is
/// larger than the re-read's doubled bound alone, so `read_batch`'s byte bound (at least one
/// event, stopping before the bytes pass the bound) never lets the re-read hold the two events
/// `Ended::Reread` asks for. The re-read must hold its events whatever their bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_before_one_larger_than_twice_the_bound_does_not_stall_the_sink() {
    let bound = 64 * 1024;
    let poison = ocsf_events()[0].clone();
    let large = events_of_about(2, 2 * bound + 10_000).remove(1);
    assert!(large.len() > 2 * bound, "{}", large.len());
    poison_then(poison, large, bound).await;
}

/// The poison event, then `large`, then three ordinary events, to a HEC sink with a `bound`
/// of 64 KiB: every event but the poison one is indexed, the poison one dead-lettered.
async fn poison_then(poison: Vec<u8>, large: Vec<u8>, bound: usize) {
    let after: Vec<Vec<u8>> = ocsf_events()[2..5].to_vec();
    let mut events = vec![poison.clone(), large.clone()];
    events.extend(after.iter().cloned());

    let hec = HecEmulator::start(HecOptions { max_content_length: 8 << 20, ..HecOptions::default() }).await;
    hec.refuse_requests_with(&uid(&poison), 500, Some(8));
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_with(dir.path(), &["hec"], &events).await;
    let lines = format!(
        "url = {:?}\ntoken = \"hec-test-token\"\nhostname = \"collector-1\"\nbatch_max_bytes = \"64 KiB\"\n",
        hec.url()
    );
    let cfg = sink_config(dir.path(), "hec", &lines);
    assert_eq!(cfg.batch_max_bytes, bound);
    let worker = start_worker(cfg, &queue);

    // Every event but the poison one indexed, the poison one dead-lettered (the back-off is
    // 20..200 ms: before issue 21 this took well under a second).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let done = loop {
        let stats = worker.stats.snapshot();
        let indexed: std::collections::HashSet<String> = hec.indexed_uids().into_iter().collect();
        if stats.dead_lettered == 1 && events[1..].iter().all(|e| indexed.contains(&uid(e))) {
            break true;
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stats = worker.abort().await;
    let requests = hec.requests();
    let holding_only_the_poison = requests
        .iter()
        .filter(|r| r.body.len() < bound && std::str::from_utf8(&r.body).unwrap().contains(&uid(&poison)))
        .count();
    let sizes: Vec<(u16, usize)> = requests.iter().map(|r| (r.status, r.body.len())).take(12).collect();
    assert!(
        done,
        "sink stalled behind a poison event: {} indexed (of {} to index), {} dead-lettered, {} requests ({} of them the poison \
         event alone; first (status, bytes): {sizes:?}), backlog {}; {stats:?}",
        hec.indexed_count(),
        events.len() - 1,
        stats.dead_lettered,
        requests.len(),
        holding_only_the_poison,
        queue.backlog("hec").await.unwrap(),
    );
}

/// What held: with the collector's limit equal to the bound, an event too large alone between
/// ordinary ones is sent alone (the cut leaves it out of its neighbours' request), answered 413
/// and dead-lettered alone; every other event is indexed exactly once, no request passes the
/// limit, and none is split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_too_large_event_between_ordinary_ones_is_the_only_dead_letter() {
    let bound = 64 * 1024;
    let mut events: Vec<Vec<u8>> = ocsf_events()[..40].to_vec();
    let large = events_of_about(41, bound + 4_000).remove(40);
    events.insert(20, large.clone());
    let hec = HecEmulator::start(HecOptions { max_content_length: bound, ..HecOptions::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_with(dir.path(), &["hec"], &events).await;
    let lines = format!(
        "url = {:?}\ntoken = \"hec-test-token\"\nhostname = \"collector-1\"\nbatch_max_bytes = \"64 KiB\"\n",
        hec.url()
    );
    let stats = start_worker(sink_config(dir.path(), "hec", &lines), &queue).drain().await;
    assert_eq!((stats.events, stats.dead_lettered, stats.splits), (40, 1, 0), "{stats:?}");
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for u in hec.indexed_uids() {
        *seen.entry(u).or_default() += 1;
    }
    assert!(!seen.contains_key(&uid(&large)), "the too-large event is not indexed");
    for e in events.iter().filter(|e| **e != large) {
        assert_eq!(seen.get(&uid(e)), Some(&1), "indexed once: {}", uid(e));
    }
    let letters = queue.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let sizes: Vec<(u16, usize)> = hec.requests().iter().map(|r| (r.status, r.body.len())).collect();
    assert_eq!(sizes.iter().filter(|(s, _)| *s == 413).count(), 1, "{sizes:?}");
    assert!(sizes.iter().filter(|(s, _)| *s == 200).all(|(_, n)| *n <= bound), "{sizes:?}");
}

/// What held: the same too-large event first in the queue (a worker just started: nothing taken
/// yet, so its 413 is not believed at once and it goes the server-error way, re-read with the
/// next event): still dead-lettered alone, the rest indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_large_event_first_after_a_start_is_still_the_only_dead_letter() {
    let bound = 64 * 1024;
    let large = events_of_about(41, bound + 4_000).remove(40);
    let mut events = vec![large.clone()];
    events.extend(ocsf_events()[..20].iter().cloned());
    let hec = HecEmulator::start(HecOptions { max_content_length: bound, ..HecOptions::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_with(dir.path(), &["hec"], &events).await;
    let lines = format!(
        "url = {:?}\ntoken = \"hec-test-token\"\nhostname = \"collector-1\"\nbatch_max_bytes = \"64 KiB\"\n",
        hec.url()
    );
    let stats = start_worker(sink_config(dir.path(), "hec", &lines), &queue).drain().await;
    assert_eq!((stats.events, stats.dead_lettered), (20, 1), "{stats:?}");
    let seen: std::collections::HashSet<String> = hec.indexed_uids().into_iter().collect();
    assert!(!seen.contains(&uid(&large)));
    assert!(events[1..].iter().all(|e| seen.contains(&uid(e))), "{stats:?}");
}
