//! `POST /chat/completions`: strict request validation, deterministic token
//! accounting, billing through the account, and the two response forms — a
//! `chat.completion` JSON body, or an SSE stream that always ends with a
//! `choices: []` chunk carrying `usage` and `cost`, then `data: [DONE]`.
//!
//! Token rules (deterministic so tests can predict them):
//! - prompt: `ceil(chars / 4) + 4` per message (text content, text parts, tool calls);
//! - completion: `x-sim-completion-tokens` request header (up to 10M), else
//!   `max_completion_tokens` / `max_tokens` (capped at 1024), else 24;
//! - reasoning: a quarter of completion on reasoning models unless thinking is
//!   disabled (`venice_parameters.disable_thinking` or `:disable_thinking=true`);
//! - cached: half the prompt from the 2nd request with the same `prompt_cache_key`
//!   on models with a cache price.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};

use super::account::Admitted;
use super::faults::{self, Fault};
use super::inference;
use super::models::{self, Model, ModelKind};
use super::request::{self, ChatRequest};
use super::respond;
use super::SharedState;

const DEFAULT_COMPLETION_TOKENS: u64 = 24;
const MAX_BODY_COMPLETION_TOKENS: u64 = 1_024;
const MAX_HEADER_COMPLETION_TOKENS: u64 = 10_000_000;
/// Words actually rendered into the content (usage still counts every token).
const MAX_RENDERED_WORDS: u64 = 4_096;
const MAX_CONTENT_CHUNKS: u64 = 64;
const MAX_REASONING_CHUNKS: u64 = 4;
const VOCAB: &[&str] = &[
    "The",
    "simulated",
    "model",
    "answers",
    "with",
    "a",
    "steady",
    "stream",
    "of",
    "words",
    "so",
    "the",
    "gateway",
    "can",
    "count",
    "tokens",
];

/// Token counts of one request.
#[derive(Debug, Clone, Copy)]
struct Plan {
    prompt: u64,
    cached: u64,
    completion: u64,
    reasoning: u64,
}

impl Plan {
    fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": { "cached_tokens": self.cached, "cache_creation_input_tokens": 0 },
            "completion_tokens_details": { "reasoning_tokens": self.reasoning },
        })
    }
}

/// One piece of a streamed body.
enum Piece {
    /// Sent at once.
    Now(Bytes),
    /// Sent after `token_interval`.
    Paced(Bytes),
    /// Aborts the connection.
    Abort,
}

fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// `n` words starting at vocabulary position `start`, each followed by a space.
fn words(start: u64, n: u64) -> String {
    let mut s = String::new();
    for i in start..start + n {
        s.push_str(VOCAB[(i % VOCAB.len() as u64) as usize]);
        s.push(' ');
    }
    s
}

/// Splits `total` rendered words into at most `max` chunks of whole words.
fn chunked(total: u64, max: u64) -> Vec<String> {
    let total = total.min(MAX_RENDERED_WORDS);
    if total == 0 {
        return Vec::new();
    }
    let per = total.div_ceil(max.max(1));
    (0..total)
        .step_by(per as usize)
        .map(|start| words(start, per.min(total - start)))
        .collect()
}

fn plan(state: &SharedState, req: &ChatRequest, model: &Model, think: bool, h: &HeaderMap) -> Plan {
    let completion = match faults::header_u64(h, "x-sim-completion-tokens") {
        Some(n) => n.min(MAX_HEADER_COMPLETION_TOKENS),
        None => req
            .max_tokens
            .map(|n| n.min(MAX_BODY_COMPLETION_TOKENS))
            .unwrap_or(DEFAULT_COMPLETION_TOKENS),
    };
    let reasoning = if model.reasoning && think {
        completion / 4
    } else {
        0
    };
    let cached = match (&req.cache_key, model.cache_read) {
        (Some(key), Some(_)) if state.prompt_cache.lock().contains_key(key) => {
            req.prompt_tokens / 2
        }
        _ => 0,
    };
    Plan {
        prompt: req.prompt_tokens,
        cached,
        completion,
        reasoning,
    }
}

/// The `POST /chat/completions` handler.
pub async fn completions(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match request::parse_chat(&body) {
        Ok(r) => r,
        Err(invalid) => return invalid.into_response(),
    };
    let Some(resolved) = models::resolve(&req.model, ModelKind::Text) else {
        return respond::error(StatusCode::NOT_FOUND, "Model not found");
    };
    let model = resolved.model;
    let fault = state.faults.take(&headers);
    let think = !req.disable_thinking && resolved.feature("disable_thinking") != Some("true");
    let plan = plan(&state, &req, model, think, &headers);
    let cost = if plan.completion == 0 {
        0.0
    } else {
        model.cost_usd(plan.prompt, plan.cached, plan.completion)
    };
    let tokens = plan.prompt.saturating_add(plan.completion);
    let admitted = match inference::admit(&state, model, fault, tokens, cost) {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    if let Some(key) = &req.cache_key {
        *state.prompt_cache.lock().entry(key.clone()).or_insert(0) += 1;
    }
    let id = format!("chatcmpl-{}", state.next_id());
    let resp = if req.stream {
        streamed(&state, &id, model, &plan, &admitted, fault)
    } else {
        let full = Bytes::from(whole(&id, model, &plan, &admitted).to_string());
        faults::json_with_fault(full, fault)
    };
    inference::finish(resp, model, &admitted)
}

fn cost_json(a: &Admitted) -> Value {
    json!({ "usd": a.charge.usd, "diem": a.charge.diem })
}

/// The non-streamed `chat.completion` body.
fn whole(id: &str, model: &Model, plan: &Plan, a: &Admitted) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": chunked(plan.completion - plan.reasoning, 1).concat(),
    });
    if plan.reasoning > 0 {
        message["reasoning_content"] = json!(chunked(plan.reasoning, 1).concat());
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": respond::unix_now(),
        "model": model.id,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": "stop",
            "stop_reason": null,
        }],
        "usage": plan.usage(),
        "cost": cost_json(a),
        "venice_parameters": { "enable_web_search": "off", "include_venice_system_prompt": true },
    })
}

/// The SSE response, with `fault` (a body fault, if any) applied.
fn streamed(
    state: &SharedState,
    id: &str,
    model: &Model,
    plan: &Plan,
    a: &Admitted,
    fault: Option<Fault>,
) -> Response {
    let created = respond::unix_now();
    let chunk = |delta: Value, finish: Value| {
        event(&json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model.id,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        }))
    };
    let mut pieces = vec![Piece::Now(chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    ))];
    let content = chunked(plan.completion - plan.reasoning, MAX_CONTENT_CHUNKS);
    match fault {
        Some(f) if f.is_body_fault() => {
            let mut first: Vec<String> = content.into_iter().take(2).collect();
            while first.len() < 2 {
                first.push("partial ".to_string());
            }
            for text in first {
                pieces.push(Piece::Paced(chunk(json!({ "content": text }), Value::Null)));
            }
            match f {
                Fault::MidstreamError => {
                    pieces.push(Piece::Now(faults::in_band_error_event()));
                    pieces.push(Piece::Now(Bytes::from_static(b"data: [DONE]\n\n")));
                }
                Fault::Reset => pieces.push(Piece::Abort),
                _ => {}
            }
        }
        _ => {
            for text in chunked(plan.reasoning, MAX_REASONING_CHUNKS) {
                pieces.push(Piece::Paced(chunk(
                    json!({ "reasoning_content": text }),
                    Value::Null,
                )));
            }
            for text in content {
                pieces.push(Piece::Paced(chunk(json!({ "content": text }), Value::Null)));
            }
            pieces.push(Piece::Now(chunk(json!({}), json!("stop"))));
            pieces.push(Piece::Now(event(&json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model.id,
                "choices": [],
                "usage": plan.usage(),
                "cost": cost_json(a),
            }))));
            pieces.push(Piece::Now(Bytes::from_static(b"data: [DONE]\n\n")));
        }
    }
    let interval = state.config.token_interval;
    let body = stream::iter(pieces).then(move |piece| async move {
        match piece {
            Piece::Now(b) => Ok(b),
            Piece::Paced(b) => {
                if !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                Ok(b)
            }
            Piece::Abort => {
                faults::flush_point().await;
                Err(faults::reset_error())
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(body));
    respond::insert(resp.headers_mut(), "content-type", "text/event-stream");
    respond::insert(resp.headers_mut(), "cache-control", "no-cache");
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_all_words_within_the_limit() {
        let c = chunked(1_000, MAX_CONTENT_CHUNKS);
        assert!(c.len() as u64 <= MAX_CONTENT_CHUNKS);
        let total: usize = c.iter().map(|s| s.split_whitespace().count()).sum();
        assert_eq!(total, 1_000);
        assert_eq!(chunked(3, MAX_CONTENT_CHUNKS).len(), 3);
        assert!(chunked(0, 4).is_empty());
        assert!(chunked(1_000_000, 64).len() <= 64);
    }
}
