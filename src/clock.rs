//! Time for the whole agent: wall time for vendor windows, monotonic time for waits.
//!
//! Every wait in the agent and the simulator goes through `tokio::time`, so tests run with
//! `tokio::time::pause()` and never sleep for real. The rate limiter (governor) reads this clock
//! too, so paused time moves it. Wall time is `SystemTime::now()` in production; a test clock
//! anchors wall time to a fixed instant and lets it move with tokio's (paused) clock.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Source of "now" shared by sources, sinks and the simulator.
#[derive(Clone, Debug)]
pub struct Clock {
    /// `None`: the system's wall clock. `Some`: wall time = anchor + tokio time elapsed since.
    anchor: Option<(DateTime<Utc>, tokio::time::Instant)>,
}

impl Clock {
    /// The real clock: wall time from the operating system.
    pub fn system() -> Self {
        Clock { anchor: None }
    }

    /// A test clock: wall time starts at `wall` and advances with tokio's clock (paused or not).
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        Clock { anchor: Some((wall, tokio::time::Instant::now())) }
    }

    /// Wall time, for vendor windows, checkpoints and HTTP dates.
    pub fn now_utc(&self) -> DateTime<Utc> {
        match self.anchor {
            None => Utc::now(),
            Some((wall, at)) => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(at);
                wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
            }
        }
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
    }
}
