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
mod tests {
    use super::*;

    fn p(s: &str) -> BodyReport {
        parse_json(s.as_bytes())
    }

    fn err(message: &str, code: Option<&str>) -> Option<UpstreamError> {
        Some(UpstreamError {
            message: message.into(),
            code: code.map(Into::into),
        })
    }

    #[test]
    fn chat_completion_with_usage_and_cost() {
        let r = p(r#"{
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1759504980,
            "model": "kimi-k2-5",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi",
                         "reasoning_content": null}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 612, "completion_tokens": 146, "total_tokens": 758,
                      "prompt_tokens_details": {"cached_tokens": 512,
                                                "cache_creation_input_tokens": 64},
                      "completion_tokens_details": {"reasoning_tokens": 40}},
            "cost": {"diem": 0, "usd": 0.00042},
            "venice_parameters": {"enable_web_search": "off"}
        }"#);
        assert_eq!(
            r,
            BodyReport {
                usage: Some(Usage {
                    prompt_tokens: 612,
                    completion_tokens: 146,
                    total_tokens: 758,
                    cached_tokens: 512,
                    cache_creation_tokens: 64,
                    reasoning_tokens: 40,
                }),
                cost: Some(Cost {
                    usd: 0.00042,
                    diem: 0.0
                }),
                model: Some("kimi-k2-5".into()),
                error: None,
            }
        );
    }

    #[test]
    fn nullable_details_are_zero() {
        let r = p(
            r#"{"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
            "prompt_tokens_details": null,
            "completion_tokens_details": {"reasoning_tokens": null}}}"#,
        );
        let u = r.usage.unwrap();
        assert_eq!(
            (u.cached_tokens, u.cache_creation_tokens, u.reasoning_tokens),
            (0, 0, 0)
        );
        assert_eq!(u.total_tokens, 15);
    }

    #[test]
    fn missing_total_is_prompt_plus_completion() {
        let u = p(r#"{"usage": {"prompt_tokens": 10, "completion_tokens": 5}}"#)
            .usage
            .unwrap();
        assert_eq!(u.total_tokens, 15);
        let u = p(r#"{"usage": {"prompt_tokens": 7}}"#).usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (7, 0, 7)
        );
        let u = p(r#"{"usage": {"prompt_tokens": 18446744073709551615, "completion_tokens": 5}}"#)
            .usage
            .unwrap();
        assert_eq!(u.total_tokens, u64::MAX);
    }

    #[test]
    fn embeddings_response() {
        let r = p(r#"{"object": "list", "model": "text-embedding-bge-m3",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}],
            "usage": {"prompt_tokens": 8, "total_tokens": 8}}"#);
        assert_eq!(r.model.as_deref(), Some("text-embedding-bge-m3"));
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (8, 0, 8)
        );
        assert_eq!(r.cost, None);
    }

    #[test]
    fn counts_and_costs_as_strings_or_floats() {
        let r = p(
            r#"{"usage": {"prompt_tokens": "12", "completion_tokens": 3.0,
            "total_tokens": " 15 "}, "cost": {"usd": "0.0015", "diem": "0.5"}}"#,
        );
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (12, 3, 15)
        );
        assert_eq!(
            r.cost,
            Some(Cost {
                usd: 0.0015,
                diem: 0.5
            })
        );
    }

    #[test]
    fn cost_missing_currency_is_zero() {
        assert_eq!(
            p(r#"{"cost": {"usd": 0.25}}"#).cost,
            Some(Cost {
                usd: 0.25,
                diem: 0.0
            })
        );
        assert_eq!(
            p(r#"{"cost": {"diem": 1}}"#).cost,
            Some(Cost {
                usd: 0.0,
                diem: 1.0
            })
        );
        assert_eq!(p(r#"{"cost": {}}"#).cost, None);
        assert_eq!(p(r#"{"cost": {"usd": "NaN", "diem": null}}"#).cost, None);
        assert_eq!(p(r#"{"cost": null}"#).cost, None);
        assert_eq!(p(r#"{"cost": 0.5}"#).cost, None);
    }

    #[test]
    fn wrong_type_loses_only_that_field() {
        let r = p(r#"{"usage": "x", "cost": {"usd": 0.1, "diem": 0}, "model": "m"}"#);
        assert_eq!(r.usage, None);
        assert_eq!(r.cost.unwrap().usd, 0.1);
        assert_eq!(r.model.as_deref(), Some("m"));

        let r = p(r#"{"usage": {"prompt_tokens": -3, "completion_tokens": "x",
            "total_tokens": 9, "prompt_tokens_details": [1]}, "model": 5, "cost": [1]}"#);
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (0, 0, 9)
        );
        assert_eq!(u.cached_tokens, 0);
        assert_eq!(r.model, None);
        assert_eq!(r.cost, None);
    }

    #[test]
    fn usage_null_or_empty_is_none() {
        // OpenAI content chunks carry `"usage": null`.
        assert_eq!(p(r#"{"usage": null, "model": "m"}"#).usage, None);
        assert_eq!(p(r#"{"usage": {}}"#).usage, None);
    }

    #[test]
    fn venice_string_error() {
        let r = p(r#"{"error": "Insufficient USD or Diem balance to complete request."}"#);
        assert_eq!(
            r.error,
            err(
                "Insufficient USD or Diem balance to complete request.",
                None
            )
        );
        let r = p(r#"{"error": "Rate limit exceeded", "code": "RATE_LIMIT_EXCEEDED"}"#);
        assert_eq!(
            r.error,
            err("Rate limit exceeded", Some("RATE_LIMIT_EXCEEDED"))
        );
    }

    #[test]
    fn venice_validation_error_with_details() {
        let r = p(r#"{"error": "Invalid request parameters",
            "details": {"_errors": [], "temperature": {"_errors": ["Number must be <= 2"]}},
            "issues": [{"code": "too_big", "path": ["temperature"]}]}"#);
        assert_eq!(r.error, err("Invalid request parameters", None));
        assert_eq!(r.usage, None);
    }

    #[test]
    fn openai_error_object() {
        let r = p(
            r#"{"error": {"message": "Your request exceeds the model's maximum context",
            "type": "invalid_request_error", "param": "messages",
            "code": "context_length_exceeded"}}"#,
        );
        assert_eq!(
            r.error,
            err(
                "Your request exceeds the model's maximum context",
                Some("context_length_exceeded")
            )
        );
    }

    #[test]
    fn openai_error_code_variants() {
        let r = p(r#"{"error": {"message": "m", "code": 429}}"#);
        assert_eq!(r.error, err("m", Some("429")));
        let r = p(r#"{"error": {"message": "m", "type": "server_error", "code": null}}"#);
        assert_eq!(r.error, err("m", Some("server_error")));
        let r = p(r#"{"error": {"message": "m", "type": "server_error"}}"#);
        assert_eq!(r.error, err("m", Some("server_error")));
        let r = p(r#"{"error": {"message": "m"}}"#);
        assert_eq!(r.error, err("m", None));
        let r = p(r#"{"error": {"code": "model_overloaded"}}"#);
        assert_eq!(r.error, err("model_overloaded", Some("model_overloaded")));
        let r = p(r#"{"error": {"param": null}}"#);
        assert_eq!(r.error, err(r#"{"param":null}"#, None));
    }

    #[test]
    fn in_band_stream_error() {
        let r = p(
            r#"{"error":{"message":"The model is currently overloaded.","type":"server_error","code":"model_overloaded","param":null,"retry_after":30}}"#,
        );
        assert_eq!(
            r.error,
            err(
                "The model is currently overloaded.",
                Some("model_overloaded")
            )
        );
    }

    #[test]
    fn empty_or_null_errors_are_none() {
        for s in [
            r#"{"error": null}"#,
            r#"{"error": ""}"#,
            r#"{"error": {}}"#,
            r#"{"error": false}"#,
            r#"{"error": 3}"#,
        ] {
            assert_eq!(p(s).error, None, "{s}");
        }
    }

    #[test]
    fn non_json_and_non_objects_are_empty() {
        for s in [
            "",
            " ",
            "null",
            "[]",
            "[1,2]",
            "42",
            "\"usage\"",
            "true",
            "<html>502</html>",
            "{",
            "{\"usage\":",
            "{\"usage\": {\"prompt_tokens\": 1}} trailing",
            "[DONE]",
        ] {
            assert!(p(s).is_empty(), "{s:?}");
        }
        assert!(parse_json(b"\xff\xfe{\"usage\":{}}").is_empty());
        assert!(p(r#"{"id": "x", "choices": []}"#).is_empty());
    }

    #[test]
    fn bom_and_whitespace_are_tolerated() {
        let r = parse_json(b"\xEF\xBB\xBF  {\"model\": \"m\"}\r\n");
        assert_eq!(r.model.as_deref(), Some("m"));
    }

    #[test]
    fn deep_nesting_does_not_panic() {
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(p(&deep).is_empty());
        let deep = format!("{{\"usage\":{}1{}}}", "[".repeat(5_000), "]".repeat(5_000));
        assert!(p(&deep).is_empty());
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let r = p(r#"{"model": "a", "model": "b"}"#);
        assert_eq!(r.model.as_deref(), Some("b"));
    }

    #[test]
    fn merge_later_some_wins() {
        let mut a = BodyReport {
            usage: Some(Usage {
                prompt_tokens: 1,
                ..Usage::default()
            }),
            cost: None,
            model: Some("a".into()),
            error: None,
        };
        a.merge(BodyReport {
            usage: None,
            cost: Some(Cost {
                usd: 1.0,
                diem: 0.0,
            }),
            model: Some("b".into()),
            error: err("boom", None),
        });
        assert_eq!(a.usage.unwrap().prompt_tokens, 1);
        assert_eq!(a.cost.unwrap().usd, 1.0);
        assert_eq!(a.model.as_deref(), Some("b"));
        assert_eq!(a.error, err("boom", None));
        a.merge(BodyReport::default());
        assert_eq!(a.model.as_deref(), Some("b"));
        assert_eq!(a.error, err("boom", None));
    }

    #[test]
    fn json_f64_accepts_numbers_and_strings() {
        assert_eq!(json_f64(&serde_json::json!(1.5)), Some(1.5));
        assert_eq!(json_f64(&serde_json::json!("2.5")), Some(2.5));
        assert_eq!(json_f64(&serde_json::json!("inf")), None);
        assert_eq!(json_f64(&serde_json::json!(null)), None);
        assert_eq!(json_f64(&serde_json::json!({})), None);
    }
}
