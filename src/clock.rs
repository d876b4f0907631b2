//! Time for the whole agent: wall time for vendor windows, monotonic time for waits.
//!
//! Every wait in the agent and the simulator goes through `tokio::time`, so tests run with
//! `tokio::time::pause()` and never sleep for real. The rate limiter (governor) reads this clock
//! too, so paused time moves it. Wall time is `SystemTime::now()` in production; a test clock
//! anchors wall time to a fixed instant and lets it move with tokio's (paused) clock.
//!
//! A third time outlives the process but not the machine: time since boot
//! ([`Clock::since_boot`]: the kernel's `CLOCK_BOOTTIME`, which counts suspend and no clock
//! step moves, with the boot's id). A rate-limit pause is stored against it, so a restart
//! inside the pause honours it exactly even if the wall clock stepped meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
    /// Where time since boot comes from.
    boot: Boot,
}

/// The machine a clock runs on, for [`Clock::since_boot`].
#[derive(Clone, Debug)]
enum Boot {
    /// The kernel: `/proc/sys/kernel/random/boot_id` and `/proc/uptime` (`CLOCK_BOOTTIME`).
    System,
    /// A simulated machine, booted at `at` (tokio time) with this id.
    Simulated { id: Arc<str>, at: tokio::time::Instant },
}

/// How long this machine has been up, and which boot that is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinceBoot {
    /// Differs after every reboot (the kernel's random boot id).
    pub boot_id: String,
    /// Time since that boot, counting time suspended; no wall-clock step moves it.
    pub elapsed: Duration,
}

/// `/proc/uptime`'s first field ("12345.67 …"): seconds since boot, suspend included.
fn parse_uptime(text: &str) -> Option<Duration> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

fn system_since_boot() -> Option<SinceBoot> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?.trim().to_owned();
    let elapsed = parse_uptime(&std::fs::read_to_string("/proc/uptime").ok()?)?;
    (!boot_id.is_empty()).then_some(SinceBoot { boot_id, elapsed })
}

/// A fresh simulated boot id per test clock ("a reboot"), unless shared by [`Clock::restarted_at`].
fn simulated_boot() -> Boot {
    static BOOTS: AtomicU64 = AtomicU64::new(0);
    let n = BOOTS.fetch_add(1, Ordering::Relaxed);
    Boot::Simulated { id: format!("simulated-boot-{n}").into(), at: tokio::time::Instant::now() }
}

impl Clock {
    /// The real clock: wall time from the operating system.
    pub fn system() -> Self {
        Clock { anchor: None, step_ms: Arc::default(), boot: Boot::System }
    }

    /// A test clock: wall time starts at `wall` and advances with tokio's clock (paused or not).
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        Clock { anchor: Some((wall, tokio::time::Instant::now())), step_ms: Arc::default(), boot: simulated_boot() }
    }

    /// A test clock for an agent restarted on the same (simulated) machine: wall time starts at
    /// `wall` (a clock step across the restart), time since boot goes on from this clock's.
    pub fn restarted_at(&self, wall: DateTime<Utc>) -> Self {
        Clock { boot: self.boot.clone(), ..Clock::starting_at(wall) }
    }

    /// Time since this machine booted, and the boot's id; `None` where the kernel does not tell
    /// (no `/proc`): callers fall back to wall time.
    pub fn since_boot(&self) -> Option<SinceBoot> {
        match &self.boot {
            Boot::System => system_since_boot(),
            Boot::Simulated { id, at } => Some(SinceBoot {
                boot_id: id.to_string(),
                elapsed: tokio::time::Instant::now().saturating_duration_since(*at),
            }),
        }
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

    /// `work`, given at most `limit` of monotonic time: `Err` when the time ran out first (in
    /// paused tests the limit passes in virtual time).
    pub fn timeout<F: std::future::IntoFuture>(&self, limit: Duration, work: F) -> tokio::time::Timeout<F::IntoFuture> {
        tokio::time::timeout(limit, work)
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

    #[tokio::test(start_paused = true)]
    async fn test_time_since_boot_survives_a_restart_and_ignores_clock_steps() {
        let start =
            DateTime::parse_from_rfc3339("2026-03-18T08:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default();
        let clock = Clock::starting_at(start);
        clock.sleep(Duration::from_secs(30)).await;
        let before = clock.since_boot();
        let restarted = clock.restarted_at(start + chrono::Duration::hours(2));
        restarted.step_wall(chrono::Duration::hours(-5));
        restarted.sleep(Duration::from_secs(10)).await;
        let (Some(before), Some(after)) = (before, restarted.since_boot()) else {
            panic!("a test clock knows its boot")
        };
        assert_eq!(after.boot_id, before.boot_id, "a restart is the same boot");
        assert_eq!(after.elapsed - before.elapsed, Duration::from_secs(10), "wall steps do not move it");
        let rebooted = Clock::starting_at(start).since_boot().map(|b| b.boot_id);
        assert_ne!(rebooted, Some(before.boot_id), "a new test clock is a new boot");
    }

    #[test]
    fn test_uptime_is_read_from_its_first_field() {
        assert_eq!(parse_uptime("350735.47 234388.90\n"), Some(Duration::from_millis(350_735_470)));
        assert_eq!(parse_uptime(""), None);
        assert_eq!(parse_uptime("-1 2"), None);
        assert_eq!(parse_uptime("abc"), None);
    }

    #[test]
    fn test_the_system_clock_knows_this_linux_boot() {
        let boot = Clock::system().since_boot();
        assert!(boot.as_ref().is_some_and(|b| b.boot_id.len() >= 32 && b.elapsed > Duration::ZERO), "{boot:?}");
    }
}
