//! An update's payload: a JSON tree, or JSON text its producer encoded once.
//!
//! Most updates are rare and built as trees (`json!`). The one on the hot path, the `usage`
//! update of every proxied request, is serialized by the hub straight from its typed parts
//! into text: building a tree for it, walking that tree to encode it for the WebSocket
//! clients and the store, and dropping it again was most of the hub thread's time under load.
//! Readers that want a tree get one from [`Payload::value`] (parsed for text, borrowed for a
//! tree); the store reads what it needs from the text with typed parsers (`store/points.rs`,
//! `store/replay.rs`). Both forms serialize to the same JSON, and a payload read back from
//! JSON is always a tree.
//!
//! `StateUpdate::json` encodes the envelope around the text without walking it again.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::day::DayTotals;
use super::state::Totals;
use crate::gateway::record::RequestRecord;

/// The `payload` of a [`super::StateUpdate`].
#[derive(Clone)]
pub enum Payload {
    Tree(Value),
    Text(Box<RawValue>),
}

impl Payload {
    /// Encodes `v` once, as text.
    pub fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(v).map(Self::Text)
    }

    /// The payload as a tree: borrowed, or parsed from the text (which the producer encoded
    /// from a value, so it parses; should it not, this is `null`).
    pub fn value(&self) -> Cow<'_, Value> {
        match self {
            Self::Tree(v) => Cow::Borrowed(v),
            Self::Text(t) => Cow::Owned(serde_json::from_str(t.get()).unwrap_or(Value::Null)),
        }
    }

    /// The encoded text, when the producer encoded it.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Tree(_) => None,
            Self::Text(t) => Some(t.get()),
        }
    }
}

impl From<Value> for Payload {
    fn from(v: Value) -> Self {
        Self::Tree(v)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Tree(a), Self::Tree(b)) => a == b,
            (Self::Text(a), Self::Text(b)) => a.get() == b.get(),
            _ => *self.value() == *other.value(),
        }
    }
}

impl Default for Payload {
    fn default() -> Self {
        Self::Tree(Value::Null)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tree(v) => fmt::Debug::fmt(v, f),
            Self::Text(t) => f.write_str(t.get()),
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Tree(v) => v.serialize(s),
            Self::Text(t) => t.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Self::Tree)
    }
}

/// The `usage` update's payload, encoded by the hub straight from its state: the same JSON as
/// the tree it replaced (top-level keys in the order a tree sorts them; inside the record they
/// follow its declaration).
#[derive(Serialize)]
pub(crate) struct UsagePayload<'a> {
    pub model: &'a str,
    pub model_totals: Option<&'a Totals>,
    pub request: &'a RequestRecord,
    pub session_totals: Option<&'a Totals>,
    pub today: &'a DayTotals,
    pub totals: &'a Totals,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_and_tree_encode_the_same_json_and_read_back_as_the_same_value() {
        let v =
            json!({"request": {"model": "m", "usage": {"total_tokens": 3}}, "totals": [1, 2.5]});
        let tree = Payload::from(v.clone());
        let text = Payload::encode(&v).expect("encode");
        assert_eq!(
            serde_json::to_string(&tree).expect("tree"),
            serde_json::to_string(&text).expect("text")
        );
        assert_eq!(*tree.value(), v);
        assert_eq!(*text.value(), v);
        assert_eq!(text.text(), Some(v.to_string().as_str()));
        assert_eq!(tree.text(), None);
        let back: Payload =
            serde_json::from_str(&serde_json::to_string(&text).expect("json")).expect("read");
        assert_eq!(back, tree);
    }
}
