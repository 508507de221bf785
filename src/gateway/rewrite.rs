//! Reading and, where needed, amending a chat request body before it goes upstream.
//!
//! Owns the one change the gateway makes to a request body: a streamed chat request that does
//! not ask for usage gets `stream_options.include_usage: true` (a field Venice accepts), so the
//! final usage+cost chunk is never missing. No other field is ever added; a body that needs no
//! change, or is not JSON, is forwarded byte for byte.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::value::RawValue;
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

/// The field the gateway adds to a streamed request that does not ask for usage.
const INCLUDE_USAGE: &str = r#","stream_options":{"include_usage":true}"#;

/// Inspects `body` and returns the bytes to send upstream with what was learned.
///
/// Only the top level is read, its values left as raw JSON text, so no tree of the (often
/// hundreds of KB of) conversation is built; the amendment is spliced in before the closing
/// brace, so every other byte goes upstream as the client sent it.
pub fn prepare_chat_body(body: Bytes) -> (Bytes, ChatRequestInfo) {
    let Ok(top) = serde_json::from_slice::<BTreeMap<String, &RawValue>>(&body) else {
        let info = ChatRequestInfo {
            estimate: estimate_tokens(body.len(), None),
            ..ChatRequestInfo::default()
        };
        return (body, info);
    };
    let field = |name: &str| top.get(name).map(|raw| raw.get());
    let mut info = ChatRequestInfo {
        model: field("model").and_then(|raw| serde_json::from_str(raw).ok()),
        stream: field("stream")
            .and_then(|raw| serde_json::from_str(raw).ok())
            .unwrap_or(false),
        max_tokens: field("max_completion_tokens")
            .or_else(|| field("max_tokens"))
            .and_then(|raw| serde_json::from_str(raw).ok()),
        usage_requested: false,
        estimate: 0,
    };
    info.estimate = estimate_tokens(body.len(), info.max_tokens);
    if !info.stream {
        return (body, info);
    }
    let out = match field("stream_options") {
        None => splice_include_usage(&body),
        Some(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(o)) if asks_for_usage(&o) => return (body, info),
            Ok(Value::Object(_)) => rewrite_include_usage(&body),
            // `stream_options` of the wrong type: leave the request alone, Venice will say why.
            _ => return (body, info),
        },
    };
    match out {
        Some(out) => {
            info.usage_requested = true;
            (out, info)
        }
        None => (body, info),
    }
}

/// `body` (a JSON object with at least one member) with [`INCLUDE_USAGE`] added as its last
/// member.
fn splice_include_usage(body: &[u8]) -> Option<Bytes> {
    let close = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if body[close] != b'}' {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + INCLUDE_USAGE.len());
    out.extend_from_slice(&body[..close]);
    out.extend_from_slice(INCLUDE_USAGE.as_bytes());
    out.extend_from_slice(&body[close..]);
    Some(Bytes::from(out))
}

/// `body` re-encoded with `stream_options.include_usage` set, keeping its other options (the
/// rare request that has `stream_options` without usage).
fn rewrite_include_usage(body: &[u8]) -> Option<Bytes> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    match obj.get_mut("stream_options") {
        Some(Value::Object(o)) => {
            o.insert("include_usage".into(), Value::Bool(true));
        }
        _ => return None,
    }
    serde_json::to_vec(&obj).ok().map(Bytes::from)
}

fn asks_for_usage(options: &Map<String, Value>) -> bool {
    options
        .get("include_usage")
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
    fn the_amendment_is_spliced_in_and_every_other_byte_kept() {
        let s =
            "{ \"model\" : \"m\",\"stream\":true, \"messages\":[{\"content\":\"}\\u00e9\"}] }\n";
        let (v, info, out) = prep(s);
        assert!(info.usage_requested);
        assert_eq!(v["stream_options"]["include_usage"], Value::Bool(true));
        assert_eq!(v["messages"][0]["content"], "}\u{e9}");
        let out = String::from_utf8(out.to_vec()).unwrap_or_default();
        let close = s.rfind('}').unwrap_or(0);
        assert_eq!(
            out,
            format!("{}{INCLUDE_USAGE}{}", &s[..close], &s[close..])
        );
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let (_, info, _) = prep(r#"{"model":"m","max_tokens":5,"max_completion_tokens":9}"#);
        assert_eq!(info.max_tokens, Some(9));
        let (_, info, _) = prep(r#"{"model":"m","max_tokens":5}"#);
        assert_eq!(info.max_tokens, Some(5));
    }
}
