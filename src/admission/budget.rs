//! The budget guard: balance alert thresholds and an optional hard floor.
//!
//! Owns the floor decision: below `floor_usd` (Diem and USD together, both bill 1:1 in USD
//! terms) new inference requests are refused by the gateway with 402 until the balance
//! recovers — typically at the 00:00 UTC Diem reset, seen by the periodic rate-limits read,
//! which is never refused. Thresholds are handed to the hub as alerts at start.

use crate::hub::state::Balance;

/// `[budget]` in the config. Everything is off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BudgetConfig {
    /// Raise an alert when the Diem balance falls below this.
    pub alert_diem_below: Option<f64>,
    /// Raise an alert when the USD balance falls below this.
    pub alert_usd_below: Option<f64>,
    /// Refuse new requests while Diem + USD is below this.
    pub floor_usd: Option<f64>,
}

impl BudgetConfig {
    /// The total the floor is compared with, when a floor applies and a balance is known.
    pub fn below_floor(&self, balance: &Balance) -> Option<(f64, f64)> {
        let floor = self.floor_usd?;
        if balance.diem.is_none() && balance.usd.is_none() {
            return None;
        }
        let total = balance.diem.unwrap_or(0.0) + balance.usd.unwrap_or(0.0);
        (total < floor).then_some((total, floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balance(diem: Option<f64>, usd: Option<f64>) -> Balance {
        Balance {
            diem,
            usd,
            ..Balance::default()
        }
    }

    #[test]
    fn no_floor_or_no_balance_never_refuses() {
        let off = BudgetConfig::default();
        assert_eq!(off.below_floor(&balance(Some(0.0), Some(0.0))), None);
        let on = BudgetConfig {
            floor_usd: Some(1.0),
            ..BudgetConfig::default()
        };
        assert_eq!(
            on.below_floor(&balance(None, None)),
            None,
            "unknown balance"
        );
    }

    #[test]
    fn diem_and_usd_count_together() {
        let on = BudgetConfig {
            floor_usd: Some(1.0),
            ..BudgetConfig::default()
        };
        assert_eq!(on.below_floor(&balance(Some(0.6), Some(0.6))), None);
        assert_eq!(
            on.below_floor(&balance(Some(0.25), Some(0.5))),
            Some((0.75, 1.0))
        );
        assert_eq!(on.below_floor(&balance(None, Some(0.5))), Some((0.5, 1.0)));
    }
}
