//! The JSON-RPC 2.0 codec of the WebSocket API.
//!
//! Owns turning one text frame into requests (single or batch) and responses back into text,
//! exactly as the JSON-RPC 2.0 specification says: unparsable JSON is -32700 (id `null`); a value
//! that is not a request object, and an empty batch, is -32600; a request without `id` is a
//! notification and never gets a response, so a batch of only notifications gets no reply at all.
//! Ids may be numbers, strings or `null` and are echoed as sent. Method dispatch and parameter
//! validation live in [`super::methods`].

use serde::Serialize;
use serde_json::{Map, Value};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object (or is an empty batch).
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error.
pub const INTERNAL_ERROR: i64 = -32603;
/// Server error: no Lean control is attached to this gateway.
pub const LEAN_UNAVAILABLE: i64 = -32000;
/// Server error: the method needs session storage, which is not enabled yet.
pub const NOT_AVAILABLE: i64 = -32001;
/// Server error: the Lean control refused or failed the command.
pub const LEAN_FAILED: i64 = -32002;

/// Most requests one batch may hold; a larger batch is refused whole with -32600.
pub const MAX_BATCH: usize = 64;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn parse(detail: impl std::fmt::Display) -> Self {
        Self::new(PARSE_ERROR, format!("parse error: {detail}"))
    }

    pub fn invalid_request(detail: impl std::fmt::Display) -> Self {
        Self::new(INVALID_REQUEST, format!("invalid request: {detail}"))
    }

    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            METHOD_NOT_FOUND,
            format!("method not found: `{}`", truncate(method, 64)),
        )
    }

    pub fn invalid_params(method: &str, detail: impl std::fmt::Display) -> Self {
        Self::new(
            INVALID_PARAMS,
            format!("invalid params for `{method}`: {detail}"),
        )
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(INTERNAL_ERROR, format!("internal error: {detail}"))
    }
}

/// A request id: a number, a string or `null`, echoed back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Id {
    Number(serde_json::Number),
    String(String),
    Null,
}

/// One well-formed request or notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `None` for a notification (no `id` member): it is executed but never answered.
    pub id: Option<Id>,
    pub method: String,
    /// An object or an array, when present.
    pub params: Option<Value>,
}

/// One element of what a client sent: a request, or the error response an invalid one gets.
pub type Item = Result<Request, Box<Response>>;

/// What one text frame held.
#[derive(Debug)]
pub enum Incoming {
    Single(Item),
    Batch(Vec<Item>),
}

/// A response object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    jsonrpc: &'static str,
    pub id: Id,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    pub fn result(id: Id, result: Value) -> Self {
        Self {
            jsonrpc: "2.0",
            id,
            result: Some(result),
            error: None,
        }
    }

    pub fn error(id: Id, error: RpcError) -> Self {
        Self {
            jsonrpc: "2.0",
            id,
            result: None,
            error: Some(error),
        }
    }
}

/// A server-to-client notification.
#[derive(Serialize)]
struct Notification<'a, P: Serialize> {
    jsonrpc: &'static str,
    method: &'a str,
    params: &'a P,
}

/// Encodes a notification as a text frame payload.
pub fn notification<P: Serialize>(method: &str, params: &P) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Notification {
        jsonrpc: "2.0",
        method,
        params,
    })
}

/// Encodes a notification whose params are already encoded JSON (an update's shared text,
/// [`crate::hub::StateUpdate::json`]): the same bytes as [`notification`], without walking
/// the params again.
pub fn notification_json(method: &str, params: &str) -> Result<String, serde_json::Error> {
    let method = serde_json::to_string(method)?;
    Ok(format!(
        r#"{{"jsonrpc":"2.0","method":{method},"params":{params}}}"#
    ))
}

/// Encodes one response.
pub fn encode(response: &Response) -> String {
    serde_json::to_string(response).unwrap_or_else(|e| fallback(&response.id, &e))
}

/// Encodes the responses of a batch (never empty: an all-notification batch gets no reply).
pub fn encode_batch(responses: &[Response]) -> String {
    serde_json::to_string(responses).unwrap_or_else(|e| fallback(&Id::Null, &e))
}

fn fallback(id: &Id, e: &serde_json::Error) -> String {
    let r = Response::error(
        id.clone(),
        RpcError::internal(format!("cannot encode: {e}")),
    );
    serde_json::to_string(&r).unwrap_or_default()
}

/// Decodes one text frame. `Err` is the single response a malformed frame gets (parse error,
/// empty or oversized batch, or a value that is neither an object nor an array).
pub fn decode(text: &str) -> Result<Incoming, Box<Response>> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| reject(Id::Null, RpcError::parse(e)))?;
    match value {
        Value::Array(items) if items.is_empty() => {
            Err(reject(Id::Null, RpcError::invalid_request("empty batch")))
        }
        Value::Array(items) if items.len() > MAX_BATCH => Err(reject(
            Id::Null,
            RpcError::invalid_request(format!(
                "batch of {} requests; at most {MAX_BATCH} are allowed",
                items.len()
            )),
        )),
        Value::Array(items) => Ok(Incoming::Batch(items.into_iter().map(request).collect())),
        other => Ok(Incoming::Single(request(other))),
    }
}

/// Validates one request object.
fn request(value: Value) -> Item {
    let Value::Object(mut m) = value else {
        return Err(reject(
            Id::Null,
            RpcError::invalid_request("a request must be a JSON object"),
        ));
    };
    let id = match m.remove("id") {
        None => None,
        Some(Value::Number(n)) => Some(Id::Number(n)),
        Some(Value::String(s)) => Some(Id::String(s)),
        Some(Value::Null) => Some(Id::Null),
        Some(_) => {
            return Err(reject(
                Id::Null,
                RpcError::invalid_request("`id` must be a number, a string or null"),
            ))
        }
    };
    let fail = |detail: String| {
        reject(
            id.clone().unwrap_or(Id::Null),
            RpcError::invalid_request(detail),
        )
    };
    match m.remove("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        Some(_) => return Err(fail("`jsonrpc` must be exactly \"2.0\"".into())),
        None => return Err(fail("missing `jsonrpc`: \"2.0\"".into())),
    }
    let method = match m.remove("method") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(fail("`method` must be a string".into())),
        None => return Err(fail("missing `method`".into())),
    };
    let params = match m.remove("params") {
        None => None,
        Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
        Some(_) => return Err(fail("`params` must be an object or an array".into())),
    };
    if let Some(extra) = first_key(&m) {
        return Err(fail(format!("unknown member `{}`", truncate(extra, 64))));
    }
    Ok(Request { id, method, params })
}

fn reject(id: Id, error: RpcError) -> Box<Response> {
    Box::new(Response::error(id, error))
}

fn first_key(m: &Map<String, Value>) -> Option<&str> {
    m.keys().next().map(String::as_str)
}

/// At most `max` characters of `s` (for echoing peer input in messages).
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn single(text: &str) -> Item {
        match decode(text) {
            Ok(Incoming::Single(item)) => item,
            other => panic!("expected one item, got {other:?}"),
        }
    }

    fn code(r: &Response) -> i64 {
        r.error.as_ref().map_or(0, |e| e.code)
    }

    #[test]
    fn ids_may_be_numbers_strings_or_null_and_notifications_have_none() {
        let r = single(r#"{"jsonrpc":"2.0","id":7,"method":"a"}"#).unwrap();
        assert_eq!(r.id, Some(Id::Number(7.into())));
        let r = single(r#"{"jsonrpc":"2.0","id":"x","method":"a","params":[1]}"#).unwrap();
        assert_eq!(r.id, Some(Id::String("x".into())));
        assert_eq!(r.params, Some(json!([1])));
        let r = single(r#"{"jsonrpc":"2.0","id":null,"method":"a"}"#).unwrap();
        assert_eq!(r.id, Some(Id::Null));
        let r = single(r#"{"jsonrpc":"2.0","method":"a"}"#).unwrap();
        assert_eq!(r.id, None);
    }

    #[test]
    fn malformed_frames_get_the_spec_codes() {
        assert_eq!(code(&decode("{").unwrap_err()), PARSE_ERROR);
        assert_eq!(code(&decode("[]").unwrap_err()), INVALID_REQUEST);
        let big = format!("[{}]", vec!["1"; MAX_BATCH + 1].join(","));
        assert_eq!(code(&decode(&big).unwrap_err()), INVALID_REQUEST);
        for bad in [
            "1",
            r#"{"jsonrpc":"2.0","method":1,"params":"bar"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"a"}"#,
            r#"{"id":1,"method":"a"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"a"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a","params":3}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a","extra":true}"#,
        ] {
            assert_eq!(code(&single(bad).unwrap_err()), INVALID_REQUEST, "{bad}");
        }
        // A detectable id is echoed on an invalid request.
        let e = single(r#"{"jsonrpc":"2.0","id":5,"method":2}"#).unwrap_err();
        assert_eq!(e.id, Id::Number(5.into()));
    }

    #[test]
    fn batches_keep_order_and_mark_invalid_elements() {
        let Ok(Incoming::Batch(items)) = decode(r#"[{"jsonrpc":"2.0","id":1,"method":"a"},1]"#)
        else {
            panic!("batch")
        };
        assert!(items[0].is_ok());
        assert_eq!(code(items[1].as_ref().unwrap_err()), INVALID_REQUEST);
    }

    #[test]
    fn responses_carry_exactly_one_of_result_and_error() {
        let ok = encode(&Response::result(Id::Number(1.into()), Value::Null));
        assert_eq!(ok, r#"{"jsonrpc":"2.0","id":1,"result":null}"#);
        let err = encode(&Response::error(Id::Null, RpcError::method_not_found("x")));
        let v: Value = serde_json::from_str(&err).unwrap();
        assert_eq!(v["error"]["code"], METHOD_NOT_FOUND);
        assert!(v.get("result").is_none());
        assert_eq!(v["id"], Value::Null);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("ab", 2), "ab");
    }
}
