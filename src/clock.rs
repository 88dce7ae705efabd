//! Wall-clock time: the current Unix milliseconds every record and header carries, and
//! their rendering as ISO 8601 UTC for operators. The calendar arithmetic is the `time`
//! crate's. Also the one doubling backoff the relay waits with between attempts to write
//! a record it must not lose.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds as ISO 8601 UTC (`2026-11-24T08:00:00.000Z`); values outside years
/// 0..=9999 are shown as plain milliseconds.
pub(crate) fn format_time_ms(ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()));
    match at {
        Some(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        None => format!("{ms}ms"),
    }
}

/// Waits that start at 100 ms and double up to a cap: the pause between attempts to
/// write something that must eventually be written (a hand-off, an idempotency mark, a
/// notification), short enough to recover fast from a blip, capped so a long outage is
/// polled, not hammered.
#[derive(Debug, Clone)]
pub(crate) struct DoublingBackoff {
    next: Duration,
    max: Duration,
}

impl DoublingBackoff {
    /// The first wait.
    const FIRST: Duration = Duration::from_millis(100);

    pub(crate) fn new(max: Duration) -> Self {
        DoublingBackoff {
            next: Self::FIRST.min(max),
            max,
        }
    }

    /// The wait to use now; the next one is twice as long (capped).
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Sleeps for [`Self::next_wait`].
    pub(crate) async fn sleep(&mut self) {
        tokio::time::sleep(self.next_wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants_and_falls_back_outside_four_digit_years() {
        assert_eq!(format_time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_time_ms(1_709_251_199_123),
            "2024-02-29T23:59:59.123Z"
        );
        assert_eq!(format_time_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_time_ms(-62_167_219_200_000),
            "0000-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_time_ms(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(format_time_ms(253_402_300_800_000), "253402300800000ms");
        assert_eq!(format_time_ms(-62_167_219_200_001), "-62167219200001ms");
        assert_eq!(format_time_ms(i64::MAX), format!("{}ms", i64::MAX));
    }

    #[test]
    fn times_are_iso_utc() {
        assert_eq!(format_time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_time_ms(1_795_507_200_123),
            "2026-11-24T08:00:00.123Z"
        );
        assert_eq!(format_time_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_time_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_time_ms(i64::MAX), format!("{}ms", i64::MAX));
    }

    #[test]
    fn doubling_backoff_doubles_up_to_its_cap() {
        let mut b = DoublingBackoff::new(Duration::from_millis(500));
        let waits: Vec<u128> = (0..5).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
    }
}
