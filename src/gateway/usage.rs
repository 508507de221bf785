//! Token usage and cost carried in Venice response bodies.
//!
//! Owns the [`Usage`]/[`Cost`] types and reading them from a non-streamed JSON body. The
//! streaming counterpart is [`crate::gateway::sse::SseScanner`].
//!
//! Parsing is lenient: only the top-level `usage`, `cost`, `model`, `error` and `code` keys are
//! kept (everything else, e.g. a large embeddings array, is skipped without being built), and a
//! wrong type in one of them only loses that field. Counts and prices may be numbers or numeric
//! strings.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Token counts of one request, as Venice reports them (OpenAI `usage` object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// `prompt_tokens_details.cached_tokens`.
    pub cached_tokens: u64,
    /// `prompt_tokens_details.cache_creation_input_tokens`.
    pub cache_creation_tokens: u64,
    /// `completion_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: u64,
}

/// Cost of one request split by billing currency (Venice's top-level `cost` object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cost {
    pub usd: f64,
    pub diem: f64,
}

/// An error the upstream reported in-band (SSE `error` chunk) or in an error body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamError {
    pub message: String,
    pub code: Option<String>,
}

/// What a response body told us. Every field is optional: bodies without usage are normal.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BodyReport {
    pub usage: Option<Usage>,
    pub cost: Option<Cost>,
    /// The `model` field of the response, if any.
    pub model: Option<String>,
    pub error: Option<UpstreamError>,
}

impl BodyReport {
    /// Merges a later observation into this one (later non-empty fields win).
    pub fn merge(&mut self, other: BodyReport) {
        let BodyReport {
            usage,
            cost,
            model,
            error,
        } = other;
        if usage.is_some() {
            self.usage = usage;
        }
        if cost.is_some() {
            self.cost = cost;
        }
        if model.is_some() {
            self.model = model;
        }
        if error.is_some() {
            self.error = error;
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.usage.is_none() && self.cost.is_none() && self.model.is_none() && self.error.is_none()
    }
}

/// Reads usage, cost, model and error from one JSON document: a whole non-streamed response
/// body or one SSE `data:` payload. Accepts both Venice's `{"error": "msg"}` and OpenAI's
/// `{"error": {"message", "code"}}` shapes. Non-JSON input gives an empty report.
///
/// With Venice's string shape, a top-level string or number `code` (if any) becomes the code;
/// with OpenAI's object shape, `error.code` is used, falling back to `error.type` when `code` is
/// missing or null. A leading UTF-8 BOM is ignored.
pub fn parse_json(body: &[u8]) -> BodyReport {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let Ok(doc) = serde_json::from_slice::<Doc>(body) else {
        return BodyReport::default();
    };
    BodyReport {
        usage: doc.usage.as_ref().and_then(parse_usage),
        cost: doc.cost.as_ref().and_then(parse_cost),
        model: doc
            .model
            .as_ref()
            .and_then(non_empty_str)
            .map(str::to_owned),
        error: doc
            .error
            .as_ref()
            .and_then(|e| parse_error(e, doc.code.as_ref())),
    }
}

/// A JSON number, or a string holding one; only finite values.
pub(crate) fn json_f64(v: &Value) -> Option<f64> {
    let f = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

/// A token count: a non-negative integer, an integral-or-not number (truncated) or a numeric
/// string.
fn json_count(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    if let Value::String(s) = v {
        if let Ok(n) = s.trim().parse::<u64>() {
            return Some(n);
        }
    }
    // `as u64` saturates, so a huge count cannot wrap.
    json_f64(v).filter(|f| *f >= 0.0).map(|f| f as u64)
}

fn non_empty_str(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.trim().is_empty())
}

/// The top-level keys we read, each kept as raw JSON so a wrong type only loses that key.
#[derive(Default)]
struct Doc {
    usage: Option<Value>,
    cost: Option<Value>,
    model: Option<Value>,
    error: Option<Value>,
    code: Option<Value>,
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    /// Keeps the wanted keys (the last one wins on duplicates) and skips the rest unbuilt.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
        let mut doc = Doc::default();
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "usage" => &mut doc.usage,
                "cost" => &mut doc.cost,
                "model" => &mut doc.model,
                "error" => &mut doc.error,
                "code" => &mut doc.code,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value::<Value>()?);
        }
        Ok(doc)
    }
}

fn parse_usage(v: &Value) -> Option<Usage> {
    let u = v.as_object()?;
    let count = |key: &str| u.get(key).and_then(json_count);
    let detail = |obj: &str, key: &str| {
        u.get(obj)
            .and_then(Value::as_object)
            .and_then(|d| d.get(key))
            .and_then(json_count)
            .unwrap_or(0)
    };
    let (prompt, completion, total) = (
        count("prompt_tokens"),
        count("completion_tokens"),
        count("total_tokens"),
    );
    if prompt.is_none() && completion.is_none() && total.is_none() {
        return None;
    }
    let (prompt, completion) = (prompt.unwrap_or(0), completion.unwrap_or(0));
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total.unwrap_or(prompt.saturating_add(completion)),
        cached_tokens: detail("prompt_tokens_details", "cached_tokens"),
        cache_creation_tokens: detail("prompt_tokens_details", "cache_creation_input_tokens"),
        reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens"),
    })
}

fn parse_cost(v: &Value) -> Option<Cost> {
    let c = v.as_object()?;
    let usd = c.get("usd").and_then(json_f64);
    let diem = c.get("diem").and_then(json_f64);
    if usd.is_none() && diem.is_none() {
        return None;
    }
    Some(Cost {
        usd: usd.unwrap_or(0.0),
        diem: diem.unwrap_or(0.0),
    })
}

fn parse_error(v: &Value, top_code: Option<&Value>) -> Option<UpstreamError> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(UpstreamError {
            message: s.clone(),
            code: top_code.and_then(code_string),
        }),
        Value::Object(o) if !o.is_empty() => {
            let code = o
                .get("code")
                .and_then(code_string)
                .or_else(|| o.get("type").and_then(code_string));
            let message = o
                .get("message")
                .and_then(|m| match m {
                    Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
                    Value::Null | Value::String(_) => None,
                    other => Some(other.to_string()),
                })
                .or_else(|| code.clone())
                .unwrap_or_else(|| compact(o));
            Some(UpstreamError { message, code })
        }
        _ => None,
    }
}

/// An error code: a non-empty string, or a number rendered as text.
fn code_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An error object without message or code, as short JSON text.
fn compact(o: &Map<String, Value>) -> String {
    const MAX: usize = 200;
    let mut s = Value::Object(o.clone()).to_string();
    if s.len() > MAX {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests;
