//! Reading and, where needed, amending a chat request body before it goes upstream.
//!
//! Owns the one change the gateway makes to a request body: a streamed chat request that does
//! not ask for usage gets `stream_options.include_usage: true` (a field Venice accepts), so the
//! final usage+cost chunk is never missing. No other field is ever added; a body that needs no
//! change, or is not JSON, is forwarded byte for byte.

use bytes::Bytes;
use serde_json::{Map, Value};

/// What the gateway learned from a chat request body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequestInfo {
    pub model: Option<String>,
    pub stream: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// Whether `stream_options.include_usage` was added by the gateway.
    pub usage_requested: bool,
    /// Tokens the request may use: a prompt estimate (4 bytes a token) plus the max tokens
    /// (1024 when unset), for the tokens-per-minute limiter.
    pub estimate: u32,
}

/// Completion tokens assumed when a request sets no maximum.
const DEFAULT_MAX_TOKENS: u64 = 1024;

/// Tokens a request may use: its body length at 4 bytes a token plus its max tokens.
pub fn estimate_tokens(body_len: usize, max_tokens: Option<u64>) -> u32 {
    let prompt = (body_len as u64).div_ceil(4);
    let total = prompt + max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// Inspects `body` and returns the bytes to send upstream with what was learned.
pub fn prepare_chat_body(body: Bytes) -> (Bytes, ChatRequestInfo) {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&body) else {
        let info = ChatRequestInfo {
            estimate: estimate_tokens(body.len(), None),
            ..ChatRequestInfo::default()
        };
        return (body, info);
    };
    let mut info = ChatRequestInfo {
        model: obj.get("model").and_then(Value::as_str).map(str::to_owned),
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        max_tokens: obj
            .get("max_completion_tokens")
            .or_else(|| obj.get("max_tokens"))
            .and_then(Value::as_u64),
        usage_requested: false,
        estimate: 0,
    };
    info.estimate = estimate_tokens(body.len(), info.max_tokens);
    if !info.stream || asks_for_usage(&obj) {
        return (body, info);
    }
    let options = obj
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    match options {
        Value::Object(o) => {
            o.insert("include_usage".into(), Value::Bool(true));
        }
        // `stream_options` of the wrong type: leave the request alone, Venice will say why.
        _ => return (body, info),
    }
    match serde_json::to_vec(&obj) {
        Ok(v) => {
            info.usage_requested = true;
            (Bytes::from(v), info)
        }
        Err(_) => (body, info),
    }
}

fn asks_for_usage(obj: &Map<String, Value>) -> bool {
    obj.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(s: &str) -> (Value, ChatRequestInfo, Bytes) {
        let (out, info) = prepare_chat_body(Bytes::from(s.to_owned()));
        let v = serde_json::from_slice(&out).unwrap_or(Value::Null);
        (v, info, out)
    }

    #[test]
    fn streamed_request_without_usage_gets_include_usage() {
        let (v, info, _) = prep(r#"{"model":"kimi-k2-5","stream":true,"messages":[]}"#);
        assert_eq!(v["stream_options"]["include_usage"], Value::Bool(true));
        assert!(info.usage_requested);
        assert_eq!(info.model.as_deref(), Some("kimi-k2-5"));
        assert_eq!(v.as_object().map(|o| o.len()), Some(4));
    }

    #[test]
    fn existing_stream_options_are_kept_and_completed() {
        let (v, info, _) =
            prep(r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}"#);
        assert_eq!(v["stream_options"]["include_usage"], Value::Bool(true));
        assert_eq!(v["stream_options"]["x"], Value::from(1));
        assert!(info.usage_requested);
    }

    #[test]
    fn bodies_needing_no_change_pass_byte_for_byte() {
        for s in [
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m",  "messages":[],"max_tokens":7}"#,
            "not json at all",
            r#"["an","array"]"#,
            r#"{"model":"m","stream":true,"stream_options":"weird"}"#,
        ] {
            let (_, info, out) = prep(s);
            assert_eq!(out, Bytes::from(s.to_owned()), "{s}");
            assert!(!info.usage_requested);
        }
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let (_, info, _) = prep(r#"{"model":"m","max_tokens":5,"max_completion_tokens":9}"#);
        assert_eq!(info.max_tokens, Some(9));
        let (_, info, _) = prep(r#"{"model":"m","max_tokens":5}"#);
        assert_eq!(info.max_tokens, Some(5));
    }
}
