//! Validation of the `[admission]` section into [`AdmissionConfig`].

use std::collections::HashMap;

use super::values::{non_negative, optional_duration, positive_duration};
use crate::admission::budget::BudgetConfig;
use crate::admission::AdmissionConfig;
use crate::config::error::{ConfigError, Origin};
use crate::config::raw::RawAdmission;

fn count(file: &Origin, key: &str, value: Option<u64>, default: u32) -> Result<u32, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => u32::try_from(v)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| ConfigError::invalid(file, key, format!("{v} must be 1..=4294967295"))),
    }
}

fn money(file: &Origin, key: &str, value: Option<f64>) -> Result<Option<f64>, ConfigError> {
    value.map(|v| non_negative(file, key, v)).transpose()
}

pub(super) fn admission(raw: &RawAdmission, file: &Origin) -> Result<AdmissionConfig, ConfigError> {
    let d = AdmissionConfig::default();
    let dur = |key: &str, value: &Option<String>, default: std::time::Duration| match value {
        Some(text) => positive_duration(file, key, Some(text.as_str()), ""),
        None => Ok(default),
    };
    let default_rpm = count(
        file,
        "admission.default_rpm",
        raw.default_rpm,
        d.default_rpm,
    )?;
    let default_tpm = count(
        file,
        "admission.default_tpm",
        raw.default_tpm,
        d.default_tpm,
    )?;
    let mut models = HashMap::new();
    for (id, limits) in &raw.models {
        let key = |field: &str| format!("admission.models.\"{id}\".{field}");
        let rpm = count(file, &key("rpm"), limits.rpm, default_rpm)?;
        let tpm = count(file, &key("tpm"), limits.tpm, default_tpm)?;
        models.insert(id.clone(), (rpm, tpm));
    }
    let max_queue = count(file, "admission.max_queue", raw.max_queue, 64)?;
    Ok(AdmissionConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        max_wait: dur("admission.max_wait", &raw.max_wait, d.max_wait)?,
        max_queue: max_queue as usize,
        window: dur("admission.window", &raw.window, d.window)?,
        default_rpm,
        default_tpm,
        models,
        max_attempts: count(
            file,
            "admission.max_attempts",
            raw.max_attempts,
            d.max_attempts,
        )?,
        backoff_base: dur("admission.backoff_base", &raw.backoff_base, d.backoff_base)?,
        backoff_max: dur("admission.backoff_max", &raw.backoff_max, d.backoff_max)?,
        budget: BudgetConfig {
            alert_diem_below: money(
                file,
                "admission.budget.alert_diem_below",
                raw.budget.alert_diem_below,
            )?,
            alert_usd_below: money(
                file,
                "admission.budget.alert_usd_below",
                raw.budget.alert_usd_below,
            )?,
            floor_usd: money(file, "admission.budget.floor_usd", raw.budget.floor_usd)?,
        },
        limits_refresh: match &raw.limits_refresh {
            Some(text) => optional_duration(file, "admission.limits_refresh", text)?,
            None => d.limits_refresh,
        },
    })
}
