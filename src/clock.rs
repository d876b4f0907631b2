//! Time for the whole agent: wall time for vendor windows, monotonic time for waits.
//!
//! Every wait in the agent and the simulator goes through `tokio::time`, so tests run with
//! `tokio::time::pause()` and never sleep for real. The rate limiter (governor) reads this clock
//! too, so paused time moves it. Wall time is `SystemTime::now()` in production; a test clock
//! anchors wall time to a fixed instant and lets it move with tokio's (paused) clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Source of "now" shared by sources, sinks and the simulator.
#[derive(Clone, Debug)]
pub struct Clock {
    /// `None`: the system's wall clock. `Some`: wall time = anchor + tokio time elapsed since.
    anchor: Option<(DateTime<Utc>, tokio::time::Instant)>,
    /// Milliseconds added to wall time by [`Clock::step_wall`] (shared by clones): a clock
    /// step that moves wall time but not monotonic time. Always 0 outside tests.
    step_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The real clock: wall time from the operating system.
    pub fn system() -> Self {
        Clock { anchor: None, step_ms: Arc::default() }
    }

    /// A test clock: wall time starts at `wall` and advances with tokio's clock (paused or not).
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        Clock { anchor: Some((wall, tokio::time::Instant::now())), step_ms: Arc::default() }
    }

    /// Wall time, for vendor windows, checkpoints and HTTP dates.
    pub fn now_utc(&self) -> DateTime<Utc> {
        let wall = match self.anchor {
            None => Utc::now(),
            Some((wall, at)) => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(at);
                wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
            }
        };
        wall + chrono::Duration::milliseconds(self.step_ms.load(Ordering::Relaxed))
    }

    /// A step of the wall clock, as an NTP step or a VM resumed after hours makes it: wall time
    /// (of this clock and its clones) jumps by `by`, monotonic time — waits, deadlines, the rate
    /// limiter — does not. For tests; nothing in the agent calls it.
    pub fn step_wall(&self, by: chrono::Duration) {
        self.step_ms.fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }

    /// Monotonic time, for deadlines and pauses.
    pub fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }

    /// Waits `d` (in paused tests this advances virtual time instead of sleeping).
    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }

    /// Waits until the monotonic `deadline`.
    pub async fn sleep_until(&self, deadline: tokio::time::Instant) {
        tokio::time::sleep_until(deadline).await
    }
}

/// governor reads the same (possibly paused) tokio clock, so a test that advances time also
/// refills the rate limiter.
impl governor::clock::Clock for Clock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn test_clock_moves_with_paused_tokio_time() {
        let start =
            DateTime::parse_from_rfc3339("2026-03-18T08:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default();
        let clock = Clock::starting_at(start);
        clock.sleep(Duration::from_secs(90)).await;
        assert_eq!((clock.now_utc() - start).num_seconds(), 90);
        let copy = clock.clone();
        let before = clock.now();
        copy.step_wall(chrono::Duration::hours(1));
        assert_eq!((clock.now_utc() - start).num_seconds(), 3690, "a clone's step moves the wall clock");
        assert_eq!(clock.now(), before, "a step moves no monotonic time");
    }
}
