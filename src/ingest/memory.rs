//! What one OpenCode session remembers so that each message, step and tool call counts once,
//! and proxied calls meet the steps OpenCode counted: [`Memory`].
//!
//! OpenCode sends `message.updated` several times per message and the plugin re-sends a batch
//! whose 2xx was lost, so the memory must survive a restart and a restore exactly. Kept out of
//! the browser-facing JSON (up to [`MAX_MESSAGES`] messages with tokens per session), it is
//! persisted in two ways instead:
//!
//! - each `session` update of a plugin batch carries what the batch added or changed
//!   (`remembered`: [`Remembered`], in order; resent events add nothing), and replay feeds it
//!   to [`Memory::replay`]; the `usage` update's replay re-runs the pending-call matching;
//! - a snapshot stores every session's memory ([`SessionMemories`]) beside the state
//!   (`store/writer.rs`; older snapshots load with none), and a restore's `snapshot` update
//!   takes it from the point restored (`store/read.rs`, `Db::apply`).
//!
//! Every part is bounded and evicts oldest first: same changes, same order, same memory.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::event::OcTokens;
use super::session::same_usage;
use crate::gateway::usage::{Cost, Usage};
use crate::hub::State;

/// Message ids remembered per session for deduplication.
pub const MAX_MESSAGES: usize = 256;
/// Step (part) and tool-call ids remembered per session.
pub const MAX_IDS: usize = 512;
/// Proxied calls or OpenCode steps waiting for their counterpart, per session.
pub const MAX_PENDING: usize = 64;

/// One change a plugin event made to a session's [`Memory`] (the batch's `session` update
/// carries them, so replay rebuilds the memory without the whole of it in every update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Remembered {
    /// A message first seen, or the tokens and cost counted for it changed; these are its
    /// values now (zero until an assistant message completes).
    Message {
        id: String,
        tokens: OcTokens,
        cost: f64,
    },
    /// A step (`step-finish` part) first seen, with its tokens (matched to a proxied call).
    Step { id: String, tokens: OcTokens },
    /// A tool call first seen.
    Call { id: String },
    /// An OpenCode event without an id of its own payload (`session.error`) first seen, by
    /// its bus event id: the plugin and the `opencode serve` link may both report it.
    Event { id: String },
}

/// A proxied call waiting for OpenCode's step.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub usage: Usage,
    pub cost: Option<Cost>,
    pub failed: bool,
}

/// What [`Memory::message`] did.
pub(super) struct MessageSeen {
    /// The message id was not known.
    pub new: bool,
    /// The counted value the new one replaced, when it changed (or the message is new).
    pub replaced: Option<(OcTokens, f64)>,
    /// The change, for the session update.
    pub remembered: Option<Remembered>,
}

/// The deduplication and matching memory of one session. Serialised (for snapshots) as a
/// [`MemoryRecord`], oldest first.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    by_message: HashMap<String, (OcTokens, f64)>,
    message_order: VecDeque<String>,
    ids: Recent,
    pending_calls: VecDeque<Pending>,
    pending_steps: VecDeque<OcTokens>,
}

impl Memory {
    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        let pending = self.pending_calls.len() + self.pending_steps.len();
        self.message_order.is_empty() && self.ids.order.is_empty() && pending == 0
    }

    /// Notes message `id`, and with `value` the tokens and cost counted for it.
    pub(super) fn message(&mut self, id: &str, value: Option<(OcTokens, f64)>) -> MessageSeen {
        let new = !self.by_message.contains_key(id);
        if new && self.message_order.len() >= MAX_MESSAGES {
            if let Some(old) = self.message_order.pop_front() {
                self.by_message.remove(&old);
            }
        }
        if new {
            self.message_order.push_back(id.to_owned());
        }
        let slot = self.by_message.entry(id.to_owned()).or_default();
        let replaced = match value {
            Some(v) if new || *slot != v => Some(std::mem::replace(slot, v)),
            _ => None,
        };
        let remembered = (new || replaced.is_some()).then(|| Remembered::Message {
            id: id.to_owned(),
            tokens: slot.0,
            cost: slot.1,
        });
        MessageSeen {
            new,
            replaced,
            remembered,
        }
    }

    /// Notes an id (`step:…`, `call:…`); false when it was already known.
    pub(super) fn first_seen(&mut self, id: String) -> bool {
        self.ids.insert(id)
    }

    /// OpenCode counted a step with tokens `t`: the proxied call it matches, if one waits;
    /// else the step waits for its call.
    pub(super) fn step(&mut self, t: &OcTokens) -> Option<Pending> {
        match self
            .pending_calls
            .iter()
            .position(|p| same_usage(&p.usage, t))
        {
            Some(i) => self.pending_calls.remove(i),
            None => {
                if self.pending_steps.len() >= MAX_PENDING {
                    self.pending_steps.pop_front();
                }
                self.pending_steps.push_back(*t);
                None
            }
        }
    }

    /// A proxied call finished: true when it matches a waiting step (which it consumes); an
    /// unmatched successful call with usage waits for its step.
    pub(super) fn request(
        &mut self,
        usage: Option<&Usage>,
        cost: Option<&Cost>,
        failed: bool,
    ) -> bool {
        let matched = usage.and_then(|u| {
            let i = self.pending_steps.iter().position(|s| same_usage(u, s))?;
            self.pending_steps.remove(i)
        });
        match (usage, matched) {
            (Some(_), Some(_)) => true,
            (Some(u), None) if !failed => {
                if self.pending_calls.len() >= MAX_PENDING {
                    self.pending_calls.pop_front();
                }
                self.pending_calls.push_back(Pending {
                    usage: *u,
                    cost: cost.copied(),
                    failed,
                });
                false
            }
            _ => false,
        }
    }

    /// Applies a change recorded live (a stored `session` update's `remembered`).
    pub fn replay(&mut self, change: &Remembered) {
        match change {
            Remembered::Message { id, tokens, cost } => {
                self.message(id, Some((*tokens, *cost)));
            }
            Remembered::Step { id, tokens } => {
                if self.first_seen(format!("step:{id}")) {
                    self.step(tokens);
                }
            }
            Remembered::Call { id } => {
                self.first_seen(format!("call:{id}"));
            }
            Remembered::Event { id } => {
                self.first_seen(format!("evt:{id}"));
            }
        }
    }
}

/// A [`Memory`] as stored, oldest first in every list. Compact (arrays, not objects): a
/// snapshot holds it for every session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryRecord {
    /// `[id, tokens, cost]`.
    messages: Vec<(String, TokensRecord, f64)>,
    ids: Vec<String>,
    /// `[[prompt, completion, total, cached, cache_creation, reasoning], [usd, diem]?, failed]`.
    pending_calls: Vec<([u64; 6], Option<[f64; 2]>, bool)>,
    pending_steps: Vec<TokensRecord>,
}

/// [`OcTokens`] as `[input, output, reasoning, cache_read, cache_write, total?]`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct TokensRecord(u64, u64, u64, u64, u64, Option<u64>);

impl From<OcTokens> for TokensRecord {
    fn from(t: OcTokens) -> Self {
        Self(
            t.input,
            t.output,
            t.reasoning,
            t.cache_read,
            t.cache_write,
            t.total,
        )
    }
}

impl From<TokensRecord> for OcTokens {
    fn from(t: TokensRecord) -> Self {
        let TokensRecord(input, output, reasoning, cache_read, cache_write, total) = t;
        OcTokens {
            input,
            output,
            reasoning,
            cache_read,
            cache_write,
            total,
        }
    }
}

impl Serialize for Memory {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let message = |id: &String| {
            let (tokens, cost) = self.by_message.get(id).copied().unwrap_or_default();
            (id.clone(), tokens.into(), cost)
        };
        let call = |p: &Pending| {
            let u = &p.usage;
            let usage = [
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                u.cached_tokens,
                u.cache_creation_tokens,
                u.reasoning_tokens,
            ];
            (usage, p.cost.map(|c| [c.usd, c.diem]), p.failed)
        };
        MemoryRecord {
            messages: self.message_order.iter().map(message).collect(),
            ids: self.ids.order.iter().cloned().collect(),
            pending_calls: self.pending_calls.iter().map(call).collect(),
            pending_steps: self.pending_steps.iter().map(|t| (*t).into()).collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Memory {
    /// Rebuilt through the same bounded inserts (a damaged record cannot grow the memory).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = MemoryRecord::deserialize(d)?;
        let mut m = Memory::default();
        for (id, tokens, cost) in r.messages {
            m.message(&id, Some((tokens.into(), cost)));
        }
        for id in r.ids {
            m.first_seen(id);
        }
        let skip = r.pending_calls.len().saturating_sub(MAX_PENDING);
        m.pending_calls.extend(r.pending_calls.into_iter().skip(skip).map(|(u, c, failed)| {
            let [prompt_tokens, completion_tokens, total_tokens, cached_tokens, cache_creation_tokens, reasoning_tokens] = u;
            Pending {
                usage: Usage {
                    prompt_tokens,
                    completion_tokens,
                    total_tokens,
                    cached_tokens,
                    cache_creation_tokens,
                    reasoning_tokens,
                },
                cost: c.map(|[usd, diem]| Cost { usd, diem }),
                failed,
            }
        }));
        let skip = r.pending_steps.len().saturating_sub(MAX_PENDING);
        m.pending_steps
            .extend(r.pending_steps.into_iter().skip(skip).map(OcTokens::from));
        Ok(m)
    }
}

/// The memory of every session that has one, by session id: what a snapshot stores beside
/// the state.
pub type SessionMemories = BTreeMap<String, Memory>;

impl State {
    /// The sessions' ingest memory, which the state's JSON leaves out (a copy).
    pub fn ingest_memory(&self) -> SessionMemories {
        self.sessions
            .iter()
            .filter(|(_, s)| !s.opencode.memory().is_empty())
            .map(|(id, s)| (id.clone(), s.opencode.memory().clone()))
            .collect()
    }

    /// Puts back the memory [`State::ingest_memory`] took; sessions it does not name forget
    /// theirs, ids of sessions the state does not hold are ignored.
    pub fn set_ingest_memory(&mut self, mut memories: SessionMemories) {
        for (id, s) in &mut self.sessions {
            *s.opencode.memory_mut() = memories.remove(id).unwrap_or_default();
        }
    }
}

/// A bounded set of recently seen ids.
#[derive(Debug, Clone, Default)]
struct Recent {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Recent {
    /// Inserts `id`; false when it was already there.
    fn insert(&mut self, id: String) -> bool {
        if self.set.contains(&id) {
            return false;
        }
        if self.order.len() >= MAX_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(id.clone());
        self.set.insert(id);
        true
    }
}

#[cfg(test)]
mod tests;
