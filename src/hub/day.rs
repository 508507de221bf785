//! "Today" for the sidepanel: totals of the current UTC day, the day Venice's Diem allocation
//! runs on (it resets at 00:00 UTC).
//!
//! Owns [`DayTotals`]. Requests count by their start time, so the hub live and the store's
//! replay arrive at the same day and totals.

use serde::{Deserialize, Serialize};

use super::state::Totals;
use crate::gateway::usage::{Cost, Usage};

/// Totals of one UTC day, by request start time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DayTotals {
    /// 00:00 UTC of the day, in Unix ms (0 until the first request).
    pub day_start_ms: u64,
    pub totals: Totals,
}

/// Milliseconds in a UTC day (Unix time has no leap seconds).
const DAY_MS: u64 = 86_400_000;

impl DayTotals {
    /// Counts a request that started at `started_ms`; a request from a later day starts a new
    /// day, one from an earlier day (a late record across midnight) no longer counts.
    pub(crate) fn add(
        &mut self,
        started_ms: u64,
        usage: Option<&Usage>,
        cost: Option<&Cost>,
        failed: bool,
    ) {
        let day = started_ms - started_ms % DAY_MS;
        if day > self.day_start_ms {
            *self = DayTotals {
                day_start_ms: day,
                totals: Totals::default(),
            };
        }
        if day == self.day_start_ms {
            self.totals.add(usage, cost, failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_24: u64 = 1_795_478_400_000; // 2026-11-24T00:00:00Z

    fn usage(total: u64) -> Usage {
        Usage {
            total_tokens: total,
            ..Usage::default()
        }
    }

    #[test]
    fn requests_of_one_utc_day_add_up_and_the_next_day_starts_afresh() {
        let mut d = DayTotals::default();
        d.add(NOV_24 + 1_000, Some(&usage(10)), None, false);
        d.add(NOV_24 + DAY_MS - 1, Some(&usage(5)), None, true);
        assert_eq!(d.day_start_ms, NOV_24);
        assert_eq!((d.totals.requests, d.totals.errors), (2, 1));
        assert_eq!(d.totals.total_tokens, 15);

        d.add(NOV_24 + DAY_MS, Some(&usage(7)), None, false);
        assert_eq!(
            d.day_start_ms,
            NOV_24 + DAY_MS,
            "00:00 UTC starts a new day"
        );
        assert_eq!((d.totals.requests, d.totals.total_tokens), (1, 7));

        // A request that started before midnight but finished after it belongs to yesterday.
        d.add(NOV_24 + DAY_MS - 10, Some(&usage(100)), None, false);
        assert_eq!((d.totals.requests, d.totals.total_tokens), (1, 7));
    }
}
