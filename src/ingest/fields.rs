//! Typed, bounded access to the fields of a peer's JSON object, for [`super::event`]: every
//! helper returns an error message naming the field, or treats a wrong type as absent where
//! the field is optional decoration (titles, names). Never panics.

use serde_json::{Map, Value};

use super::event::{OcTokens, MAX_EVENT_NAME, MAX_ID, MAX_PATH, MAX_TEXT};

pub(super) fn tokens(t: &Map<String, Value>) -> Result<OcTokens, String> {
    let cache = opt_object(t, "cache")?;
    let count = |m: &Map<String, Value>, k: &str| -> Result<u64, String> {
        Ok(number(m, k)?.map_or(0, |n| n as u64))
    };
    Ok(OcTokens {
        input: count(t, "input")?,
        output: count(t, "output")?,
        reasoning: count(t, "reasoning")?,
        cache_read: cache.map(|c| count(c, "read")).transpose()?.unwrap_or(0),
        cache_write: cache.map(|c| count(c, "write")).transpose()?.unwrap_or(0),
        total: number(t, "total")?.map(|n| n as u64),
    })
}

/// A non-negative finite number, if the field is present and not null.
pub(super) fn number(m: &Map<String, Value>, k: &str) -> Result<Option<f64>, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
            _ => Err(format!("`{k}` must be a non-negative number")),
        },
    }
}

pub(super) fn opt_object<'a>(
    m: &'a Map<String, Value>,
    k: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(format!("`{k}` must be an object")),
    }
}

/// An id: printable ASCII without spaces, at most [`MAX_ID`] bytes.
pub(super) fn id_field(m: &Map<String, Value>, k: &str) -> Result<Option<String>, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= MAX_ID && s.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(format!(
            "`{k}` must be 1..={MAX_ID} printable ASCII characters"
        )),
    }
}

pub(super) fn path_field(m: &Map<String, Value>, k: &str) -> Result<Option<String>, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_PATH && !s.contains('\0') => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(format!("`{k}` must be a path of 1..={MAX_PATH} bytes")),
    }
}

/// A string field cut to [`MAX_TEXT`] characters; anything else counts as absent.
pub(super) fn text(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(cut)
}

pub(super) fn cut(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_EVENT_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
