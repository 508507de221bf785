//! Value-level parsing shared by the loader: precedence picking, durations, numbers, paths
//! and the merge of the file's prices over the built-in table. Every error names its key.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::error::{quote_key, ConfigError, Origin};
use crate::config::raw::{RawPrice, RawPricing};
use crate::pricing::{ModelPrice, PriceTable};

/// The override if given, else the file's value, else the default; with the origin of the
/// value for error messages.
pub(super) fn pick<'a>(
    over: Option<&'a str>,
    file_value: Option<&'a str>,
    default: &'a str,
    file: &Origin,
) -> (&'a str, Origin) {
    match (over, file_value) {
        (Some(v), _) => (v, Origin::CommandLine),
        (None, Some(v)) => (v, file.clone()),
        (None, None) => (default, file.clone()),
    }
}

/// The built-in prices with the file's `[pricing.models]` merged over them, model by model;
/// a field the file leaves out keeps the built-in value of that model.
pub(super) fn pricing(raw: &RawPricing, file: &Origin) -> Result<PriceTable, ConfigError> {
    let mut table = PriceTable::venice_defaults();
    for (id, price) in &raw.models {
        let base = table.get(id).copied();
        let price = model_price(file, id, price, base)?;
        table.insert(id.clone(), price);
    }
    Ok(table)
}

fn model_price(
    file: &Origin,
    id: &str,
    raw: &RawPrice,
    base: Option<ModelPrice>,
) -> Result<ModelPrice, ConfigError> {
    let key = |field: &str| format!("pricing.models.{}.{field}", quote_key(id));
    let check = |field: &str, value: Option<f64>| match value {
        Some(v) => non_negative(file, &key(field), v).map(Some),
        None => Ok(None),
    };
    let required = |field: &str, value: Option<f64>, fallback: Option<f64>| {
        check(field, value)?.or(fallback).ok_or_else(|| {
            ConfigError::invalid(
                file,
                &key(field),
                "missing (required for a model without a built-in price)",
            )
        })
    };
    Ok(ModelPrice {
        input: required("input", raw.input, base.map(|b| b.input))?,
        output: required("output", raw.output, base.map(|b| b.output))?,
        cache_input: check("cache_input", raw.cache_input)?.or(base.and_then(|b| b.cache_input)),
        cache_write: check("cache_write", raw.cache_write)?.or(base.and_then(|b| b.cache_write)),
    })
}

pub(super) fn non_negative(origin: &Origin, key: &str, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            origin,
            key,
            format!("{value} must be a finite number >= 0"),
        ))
    }
}

pub(super) fn duration(origin: &Origin, key: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        ConfigError::invalid(
            origin,
            key,
            format!("invalid duration {text:?}: {e} (expected e.g. \"500ms\", \"5s\", \"2m\")"),
        )
    })
}

pub(super) fn positive_duration(
    origin: &Origin,
    key: &str,
    value: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let d = duration(origin, key, value.unwrap_or(default))?;
    if d.is_zero() {
        return Err(ConfigError::invalid(origin, key, "must be greater than 0"));
    }
    Ok(d)
}

/// A duration where `"off"` or zero means disabled.
pub(super) fn optional_duration(
    origin: &Origin,
    key: &str,
    text: &str,
) -> Result<Option<Duration>, ConfigError> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    Ok(Some(duration(origin, key, text)?).filter(|d| !d.is_zero()))
}

/// Expands a leading `~` from `$HOME`; other paths are taken as given (relative to the
/// working directory).
pub(super) fn expand_path(origin: &Origin, key: &str, text: &str) -> Result<PathBuf, ConfigError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ConfigError::invalid(origin, key, "must not be empty"));
    }
    let rest = match text.strip_prefix('~') {
        None => return Ok(PathBuf::from(text)),
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        Some(_) => {
            return Err(ConfigError::invalid(
                origin,
                key,
                format!("{text:?}: only a leading \"~/\" is expanded"),
            ))
        }
    };
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(rest)),
        None => Err(ConfigError::invalid(
            origin,
            key,
            format!("cannot expand {text:?}: HOME is not set"),
        )),
    }
}
