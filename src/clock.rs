//! The only place that reads the wall clock. Everything else receives a [`Clock`], so tests move
//! time instead of sleeping.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

pub trait Clock: Send + Sync + Debug {
    /// Current time in UTC, truncated to whole seconds: SQLite stores RFC 3339 text, which sorts
    /// correctly only at a fixed width, and no decision in elevate needs sub-second precision.
    fn now(&self) -> OffsetDateTime;
}

pub type SharedClock = Arc<dyn Clock>;

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> OffsetDateTime {
        truncate(OffsetDateTime::now_utc())
    }
}

/// A clock that only moves when told to. Used by tests (and benchmarks) to cross expiry
/// boundaries deterministically.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(truncate(start)),
        }
    }

    /// Starts at the real current time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = truncate(*now + by);
    }

    pub fn set(&self, to: OffsetDateTime) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = truncate(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// UTC, whole seconds. The store applies this to every timestamp it writes.
pub fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.replace_nanosecond(0).unwrap_or(utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(time::macros::datetime!(2030-01-01 12:00:00.75 +02:00));
        assert_eq!(
            clock.now(),
            time::macros::datetime!(2030-01-01 10:00:00 UTC)
        );
        clock.advance(Duration::minutes(90));
        assert_eq!(
            clock.now(),
            time::macros::datetime!(2030-01-01 11:30:00 UTC)
        );
    }
}
