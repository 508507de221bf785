//! Balance alert thresholds the user sets (WebSocket `setAlert`, `[admission.budget]`) and
//! whether each is firing. Pure data, re-exported from [`super::state`].

use serde::{Deserialize, Serialize};

use super::state::Balance;

/// A billing currency an alert threshold watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertCurrency {
    Diem,
    Usd,
}

/// Alert thresholds the user set (WebSocket `setAlert`); `None` = no alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Alerts {
    /// Alert when the Diem balance falls below this.
    pub diem_below: Option<f64>,
    /// Alert when the USD balance falls below this.
    pub usd_below: Option<f64>,
    /// The Diem alert is firing (balance below its threshold).
    pub diem_firing: bool,
    /// The USD alert is firing.
    pub usd_firing: bool,
}

impl Alerts {
    /// Re-evaluates both alerts against `balance`; returns the ones whose firing state changed.
    pub fn evaluate(&mut self, balance: &Balance) -> Vec<(AlertCurrency, bool)> {
        let mut changed = Vec::new();
        for (currency, below, value, firing) in [
            (
                AlertCurrency::Diem,
                self.diem_below,
                balance.diem,
                &mut self.diem_firing,
            ),
            (
                AlertCurrency::Usd,
                self.usd_below,
                balance.usd,
                &mut self.usd_firing,
            ),
        ] {
            let now_firing = matches!((below, value), (Some(t), Some(v)) if v < t);
            if now_firing != *firing {
                *firing = now_firing;
                changed.push((currency, now_firing));
            }
        }
        changed
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
    fn alerts_fire_and_clear_once_per_crossing() {
        let mut a = Alerts {
            diem_below: Some(5.0),
            usd_below: Some(1.0),
            ..Alerts::default()
        };
        assert_eq!(a.evaluate(&balance(None, None)), vec![]);
        assert_eq!(
            a.evaluate(&balance(Some(4.0), Some(2.0))),
            vec![(AlertCurrency::Diem, true)]
        );
        assert_eq!(a.evaluate(&balance(Some(3.0), Some(2.0))), vec![]);
        assert_eq!(
            a.evaluate(&balance(Some(6.0), Some(0.5))),
            vec![(AlertCurrency::Diem, false), (AlertCurrency::Usd, true)]
        );
        assert!(a.usd_firing && !a.diem_firing);
    }

    #[test]
    fn no_threshold_never_fires() {
        let mut a = Alerts::default();
        assert_eq!(a.evaluate(&balance(Some(0.0), Some(0.0))), vec![]);
        assert!(!a.diem_firing && !a.usd_firing);
    }
}
