//! Validation of `POST /chat/completions` bodies, as strict as Venice's schema:
//! invalid JSON, a non-object body, unknown top-level fields, a missing or
//! mistyped `model` / `messages` (an array; each item needs a string `role`),
//! or mistyped `stream` / token limits / `prompt_cache_key` give 400
//! `Invalid request parameters`. Also the deterministic prompt-token estimate.

use serde_json::{json, Map, Value};

use super::respond::{self, type_name, Invalid};

/// Top-level fields the simulated chat schema accepts.
pub const ACCEPTED_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "temperature",
    "top_p",
    "top_k",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
    "top_logprobs",
    "user",
    "store",
    "metadata",
    "include",
    "reasoning_effort",
    "reasoning",
    "prompt_cache_key",
    "prompt_cache_retention",
    "venice_parameters",
    "min_p",
    "min_temperature",
    "max_temperature",
    "logit_bias",
];

/// What the simulator needs from a valid chat request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    pub stream: bool,
    /// `max_completion_tokens`, else `max_tokens` / `max_output_tokens`.
    pub max_tokens: Option<u64>,
    pub cache_key: Option<String>,
    pub disable_thinking: bool,
    pub prompt_tokens: u64,
}

/// Parses a JSON object body; 400 for invalid JSON or a non-object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Invalid> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        respond::invalid(
            None,
            &format!("Invalid JSON body: {e}"),
            json!({ "code": "invalid_json" }),
        )
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(respond::invalid(
            None,
            &format!("Expected object, received {}", type_name(Some(&other))),
            json!({ "code": "invalid_type", "expected": "object", "received": type_name(Some(&other)) }),
        )),
    }
}

fn optional_count(map: &Map<String, Value>, field: &str) -> Result<Option<u64>, Invalid> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            respond::invalid_type(field, "non-negative integer", type_name(Some(v)))
        }),
    }
}

/// Validates a chat request body.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, Invalid> {
    let map = parse_object(body)?;
    let unknown: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !ACCEPTED_FIELDS.contains(k))
        .collect();
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.iter().map(|k| format!("'{k}'")).collect();
        return Err(respond::invalid(
            None,
            &format!("Unrecognized key(s) in object: {}", names.join(", ")),
            json!({ "code": "unrecognized_keys", "keys": unknown }),
        ));
    }
    let model = match map.get("model") {
        Some(Value::String(s)) => s.clone(),
        other => return Err(respond::invalid_type("model", "string", type_name(other))),
    };
    let messages = match map.get("messages") {
        Some(Value::Array(a)) => a,
        other => return Err(respond::invalid_type("messages", "array", type_name(other))),
    };
    for m in messages {
        if !matches!(m.get("role"), Some(Value::String(_))) {
            return Err(respond::invalid(
                Some("messages"),
                "Each message must be an object with a string `role`",
                json!({ "code": "invalid_union" }),
            ));
        }
    }
    let stream = match map.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        other => return Err(respond::invalid_type("stream", "boolean", type_name(other))),
    };
    let max_tokens = match optional_count(&map, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => match optional_count(&map, "max_tokens")? {
            Some(n) => Some(n),
            None => optional_count(&map, "max_output_tokens")?,
        },
    };
    let cache_key = match map.get("prompt_cache_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        other => {
            return Err(respond::invalid_type(
                "prompt_cache_key",
                "string",
                type_name(other),
            ))
        }
    };
    let venice = map.get("venice_parameters");
    if let Some(v) = venice {
        if !matches!(v, Value::Object(_) | Value::Null) {
            return Err(respond::invalid_type(
                "venice_parameters",
                "object",
                type_name(Some(v)),
            ));
        }
    }
    let disable_thinking = venice
        .and_then(|v| v.get("disable_thinking"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(ChatRequest {
        model,
        stream,
        max_tokens,
        cache_key,
        disable_thinking,
        prompt_tokens: messages.iter().map(message_tokens).sum(),
    })
}

/// Characters of text in a message: string content, text parts and tool calls.
fn message_chars(m: &Value) -> u64 {
    let mut chars = 0u64;
    let count = |s: &str| s.chars().count() as u64;
    match m.get("content") {
        Some(Value::String(s)) => chars += count(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                if let Some(Value::String(t)) = p.get("text") {
                    chars += count(t);
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Array(calls)) = m.get("tool_calls") {
        for c in calls {
            for key in ["name", "arguments"] {
                if let Some(Value::String(s)) = c.get("function").and_then(|f| f.get(key)) {
                    chars += count(s);
                }
            }
        }
    }
    chars
}

/// Estimated prompt tokens of one message: `ceil(chars / 4) + 4`.
pub fn message_tokens(m: &Value) -> u64 {
    message_chars(m).div_ceil(4) + 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn accepts_a_typical_opencode_body() {
        let body = json!({
            "model": "kimi-k2-5",
            "messages": [{"role": "system", "content": "abcdefgh"}, {"role": "user", "content": [{"type": "text", "text": "abc"}]}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 32000,
            "tools": [],
        });
        let r = parse_chat(body.to_string().as_bytes()).expect("valid");
        assert!(r.stream);
        assert_eq!(r.max_tokens, Some(32000));
        assert_eq!(r.prompt_tokens, (2 + 4) + (1 + 4));
    }

    #[test]
    fn rejects_bad_bodies() {
        for body in [
            "not json",
            "[]",
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"foo":1}"#,
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"m","messages":{}}"#,
            r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":-1}"#,
            r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#,
        ] {
            let r = parse_chat(body.as_bytes()).expect_err(body);
            assert_eq!(r.into_response().status(), 400, "{body}");
        }
    }
}
