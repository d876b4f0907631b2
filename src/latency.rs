//! Latency histograms the workers fill and `/metrics` reads: vendor requests (per source), sink
//! sends (per sink) and HEC indexer-ack waits (per HEC sink).
//!
//! Owns the bucket bounds and the lock-free counts. It measures nothing itself: callers time
//! with the agent's `Clock` (tokio's monotonic clock, paused in tests, so observations are
//! deterministic there) and hand over the duration. It knows no metric name and writes no text:
//! that is `telemetry.rs`'s. It imports nothing of the crate, so sources and sinks may both
//! use it (sources may not import `telemetry`).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A set of bucket upper bounds, in milliseconds, ascending; `+Inf` is implied.
pub trait Buckets {
    const MS: &'static [u64];
}

/// HTTP requests and sends: the Prometheus client libraries' defaults (5 ms to 10 s, where a
/// healthy API on the same continent answers) stretched to 30 s and 60 s, where slow vendor
/// exports and `request_timeout` (30 s by default) end, so a timeout is told from a slow answer.
#[derive(Debug)]
pub struct HttpBuckets;

impl Buckets for HttpBuckets {
    const MS: &'static [u64] = &[5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];
}

/// HEC indexer-ack waits: at least one `ack_poll_interval` (2 s by default), up to `ack_timeout`
/// (5 min by default); Splunk indexes in seconds when healthy, minutes when queues back up.
#[derive(Debug)]
pub struct AckBuckets;

impl Buckets for AckBuckets {
    const MS: &'static [u64] = &[250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000];
}

/// The most buckets a set may have (with `+Inf`): the counts are a fixed array, no allocation.
const MAX_BUCKETS: usize = 16;

/// Observations counted per bucket (not cumulative: each in the first bucket whose bound it does
/// not exceed, or `+Inf`) and their sum in microseconds. Readers may see an observation in the
/// counts but not yet in the sum (or the other way round): a scrape is a moment, not a lock.
#[derive(Debug)]
pub struct Histogram<B: Buckets> {
    counts: [AtomicU64; MAX_BUCKETS],
    sum_us: AtomicU64,
    buckets: PhantomData<B>,
}

impl<B: Buckets> Default for Histogram<B> {
    fn default() -> Self {
        const { assert!(B::MS.len() < MAX_BUCKETS, "too many buckets") };
        Histogram { counts: Default::default(), sum_us: AtomicU64::new(0), buckets: PhantomData }
    }
}

impl<B: Buckets> Histogram<B> {
    pub fn observe(&self, took: Duration) {
        // A bound of `b` ms holds every duration of at most `b` ms (`le`: less or equal).
        let i = B::MS.partition_point(|bound| Duration::from_millis(*bound) < took);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds_ms: B::MS,
            counts: self.counts[..=B::MS.len()].iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A histogram as read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds_ms: &'static [u64],
    /// Per bucket, not cumulative; one more than `bounds_ms` (the last is `+Inf`).
    pub counts: Vec<u64>,
    pub sum_us: u64,
}

impl HistogramSnapshot {
    /// Every observation: the `_count` (and the `+Inf` bucket, cumulated).
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(bound in ms, observations at most that long)`, ascending, without `+Inf`.
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.bounds_ms
            .iter()
            .zip(self.counts.iter().scan(0u64, |total, n| {
                *total += n;
                Some(*total)
            }))
            .map(|(bound, n)| (*bound, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::<HttpBuckets>::default();
        let empty = h.snapshot();
        assert_eq!((empty.count(), empty.sum_us), (0, 0));
        assert_eq!(empty.counts.len(), HttpBuckets::MS.len() + 1);
        for ms in [0, 5, 6, 1_000, 60_000, 60_001, 3_600_000] {
            h.observe(Duration::from_millis(ms));
        }
        h.observe(Duration::from_micros(5_001));
        let s = h.snapshot();
        assert_eq!(s.count(), 8);
        assert_eq!(s.sum_us, (5 + 6 + 1_000 + 60_000 + 60_001 + 3_600_000) * 1_000 + 5_001);
        let cumulative: Vec<(u64, u64)> = s.cumulative().collect();
        // le 5 ms: 0 and 5 ms; le 10 ms: + 5.001 ms and 6 ms; le 1 s: + 1 s; le 60 s: + 60 s;
        // 60.001 s and an hour only in +Inf.
        assert_eq!(cumulative[0], (5, 2));
        assert_eq!(cumulative[1], (10, 4));
        assert_eq!(cumulative[7], (1_000, 5));
        assert_eq!(*cumulative.last().unwrap(), (60_000, 6));
        assert_eq!(s.counts.last(), Some(&2));
    }
}
