//! What the state knows about one OpenCode session from the plugin's events, next to the
//! proxy-measured totals of the same session (same id: the proxy's `x-session-id`).
//!
//! Owns the per-session bookkeeping: title, status, message and tool counts, OpenCode's own
//! tokens and cost (completed assistant messages, deduplicated by message id because OpenCode
//! sends `message.updated` several times), and the split of the proxied calls into `counted`
//! (matched to an OpenCode step by their usage) and `uncounted` (the session-title call, which
//! OpenCode never counts, failed calls, and calls whose step event has not arrived yet).
//! Pure data, bounded everywhere, tested directly. What it remembers to deduplicate and match
//! ([`Memory`]) is not part of its JSON; see `memory.rs` for how it is persisted.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::event::{Kind, OcTokens, SessionEvent};
pub use super::memory::{Memory, Remembered, MAX_IDS, MAX_MESSAGES, MAX_PENDING};
use crate::gateway::usage::{Cost, Usage};
use crate::hub::state::Totals;

/// Recently edited files shown per session.
pub const MAX_FILES: usize = 20;
/// Distinct tool and agent names counted per session; further names count as `other`.
pub const MAX_NAMES: usize = 64;

/// Messages seen, by role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageCounts {
    pub user: u64,
    pub assistant: u64,
}

/// OpenCode's own running totals from its last `session.updated`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reported {
    pub tokens: OcTokens,
    pub cost: f64,
}

/// The OpenCode side of one session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OpencodeSession {
    /// Any plugin event named this session.
    pub seen: bool,
    pub title: Option<String>,
    pub parent_id: Option<String>,
    pub directory: Option<String>,
    /// `busy`, `idle`, `retry`, `error` or `deleted`.
    pub status: Option<String>,
    /// Plugin timestamp (Unix ms) of the first and the latest event.
    pub first_event_at: Option<u64>,
    pub last_event_at: Option<u64>,
    pub messages: MessageCounts,
    /// Distinct tool calls, and by tool name.
    pub tool_calls: u64,
    pub tool_errors: u64,
    pub tools: BTreeMap<String, u64>,
    /// Most recently edited files, newest last.
    pub files_edited: VecDeque<String>,
    pub errors: u64,
    pub last_error: Option<String>,
    /// LLM calls announced by the plugin's `chat.params` hook, by agent (`build`, `title`, …).
    pub agents: BTreeMap<String, u64>,
    /// Of those, session-title calls (agent `title`): OpenCode does not count them.
    pub title_calls: u64,
    /// OpenCode's own tokens and cost: completed assistant messages, each counted once.
    pub tokens: OcTokens,
    pub cost: f64,
    /// OpenCode's own running totals from its last `session.updated`, when it sent them.
    pub reported: Option<Reported>,
    /// Proxied calls matched to a step OpenCode counted.
    pub counted: Totals,
    /// Proxied calls OpenCode did not count (yet): title call, failures, pending matches.
    pub uncounted: Totals,
    /// Deduplication and matching memory: never in the JSON (browsers, `session` payloads).
    #[serde(skip)]
    memory: Memory,
}

impl OpencodeSession {
    /// What the session remembers to count each message, step and tool call once.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    pub(crate) fn memory_mut(&mut self) -> &mut Memory {
        &mut self.memory
    }

    /// Replay of a stored `session` update: takes what the browser sees from `shown` (its
    /// `opencode`), keeps this session's memory and applies the update's `remembered`.
    pub fn replay(&mut self, shown: OpencodeSession, remembered: &[Remembered]) {
        let mut memory = std::mem::take(&mut self.memory);
        for change in remembered {
            memory.replay(change);
        }
        *self = shown;
        self.memory = memory;
    }

    /// Applies one event of this session; `proxy` is the session's proxy-measured totals.
    /// Returns what it changed in the session's [`Memory`], for the session update.
    pub fn apply(&mut self, ev: &SessionEvent, proxy: &Totals) -> Option<Remembered> {
        self.seen = true;
        self.first_event_at.get_or_insert(ev.timestamp);
        self.last_event_at = Some(self.last_event_at.unwrap_or(0).max(ev.timestamp));
        match &ev.kind {
            Kind::Info {
                title,
                parent_id,
                directory,
                totals,
            } => {
                set_if_some(&mut self.title, title);
                set_if_some(&mut self.parent_id, parent_id);
                set_if_some(&mut self.directory, directory);
                if let Some((tokens, cost)) = totals {
                    self.reported = Some(Reported {
                        tokens: *tokens,
                        cost: *cost,
                    });
                }
            }
            Kind::Deleted => self.status = Some("deleted".into()),
            Kind::Status(s) => self.status = Some(s.clone()),
            Kind::Error(e) => {
                // Counted once even when both the plugin and the server link report it.
                let first = match &ev.event_id {
                    Some(id) => self.memory.first_seen(format!("evt:{id}")),
                    None => true,
                };
                if first {
                    self.errors += 1;
                    self.last_error = Some(e.clone());
                    if let Some(id) = &ev.event_id {
                        return Some(Remembered::Event { id: id.clone() });
                    }
                }
            }
            Kind::Message {
                id,
                assistant,
                completed,
                tokens,
                cost,
            } => return self.message(id, *assistant, *completed, tokens, *cost),
            Kind::Step { id, tokens } => {
                if self.memory.first_seen(format!("step:{id}")) {
                    self.step(tokens, proxy);
                    return Some(Remembered::Step {
                        id: id.clone(),
                        tokens: *tokens,
                    });
                }
            }
            Kind::Tool {
                call_id,
                tool,
                failed,
                file,
            } => {
                let new = self.memory.first_seen(format!("call:{call_id}"));
                if new {
                    self.tool_calls += 1;
                    self.tool_errors += u64::from(*failed);
                    bump(&mut self.tools, tool);
                }
                if let (Some(f), false) = (file, failed) {
                    self.file_edited(f);
                }
                if new {
                    return Some(Remembered::Call {
                        id: call_id.clone(),
                    });
                }
            }
            Kind::FileEdited(f) => self.file_edited(f),
            Kind::ChatParams { agent, .. } => {
                bump(&mut self.agents, agent);
                if agent == "title" {
                    self.title_calls += 1;
                }
            }
            Kind::PluginStarted { .. } | Kind::Other => {}
        }
        None
    }

    /// A proxied call of this session finished; `proxy` already includes it.
    pub fn on_request(
        &mut self,
        usage: Option<&Usage>,
        cost: Option<&Cost>,
        failed: bool,
        proxy: &Totals,
    ) {
        if self.memory.request(usage, cost, failed) {
            self.counted.add(usage, cost, failed);
        }
        self.recompute(proxy);
    }

    /// Refreshes `uncounted` = proxy-measured − `counted`.
    pub fn recompute(&mut self, proxy: &Totals) {
        self.uncounted = difference(proxy, &self.counted);
    }

    fn message(
        &mut self,
        id: &str,
        assistant: bool,
        completed: bool,
        t: &OcTokens,
        cost: f64,
    ) -> Option<Remembered> {
        let seen = self
            .memory
            .message(id, (assistant && completed).then_some((*t, cost)));
        if seen.new {
            if assistant {
                self.messages.assistant += 1;
            } else {
                self.messages.user += 1;
            }
        }
        // Replace this message's earlier contribution: resends never double count.
        if let Some((old_t, old_c)) = seen.replaced {
            self.tokens.sub(&old_t);
            self.cost = (self.cost - old_c).max(0.0);
            self.tokens.add(t);
            self.cost += cost;
        }
        seen.remembered
    }

    fn step(&mut self, t: &OcTokens, proxy: &Totals) {
        if let Some(p) = self.memory.step(t) {
            self.counted.add(Some(&p.usage), p.cost.as_ref(), p.failed);
        }
        self.recompute(proxy);
    }

    fn file_edited(&mut self, file: &str) {
        self.files_edited.retain(|f| f != file);
        if self.files_edited.len() == MAX_FILES {
            self.files_edited.pop_front();
        }
        self.files_edited.push_back(file.to_owned());
    }
}

/// Whether a proxied call's usage is the one OpenCode recorded for a step (facts §1.5:
/// `input = prompt − cached`, `output = completion − reasoning`).
pub fn same_usage(u: &Usage, t: &OcTokens) -> bool {
    let completion =
        t.output + t.reasoning == u.completion_tokens || t.output == u.completion_tokens;
    let prompt = t.input + t.cache_read == u.prompt_tokens
        || t.input + t.cache_read + t.cache_write == u.prompt_tokens
        || t.input == u.prompt_tokens;
    (completion && prompt) || t.total.is_some_and(|n| n > 0 && n == u.total_tokens)
}

fn difference(a: &Totals, b: &Totals) -> Totals {
    Totals {
        requests: a.requests.saturating_sub(b.requests),
        errors: a.errors.saturating_sub(b.errors),
        prompt_tokens: a.prompt_tokens.saturating_sub(b.prompt_tokens),
        completion_tokens: a.completion_tokens.saturating_sub(b.completion_tokens),
        reasoning_tokens: a.reasoning_tokens.saturating_sub(b.reasoning_tokens),
        cached_tokens: a.cached_tokens.saturating_sub(b.cached_tokens),
        cache_creation_tokens: a
            .cache_creation_tokens
            .saturating_sub(b.cache_creation_tokens),
        total_tokens: a.total_tokens.saturating_sub(b.total_tokens),
        cost_usd: (a.cost_usd - b.cost_usd).max(0.0),
        cost_diem: (a.cost_diem - b.cost_diem).max(0.0),
    }
}

fn set_if_some(into: &mut Option<String>, from: &Option<String>) {
    if from.is_some() {
        into.clone_from(from);
    }
}

fn bump(map: &mut BTreeMap<String, u64>, name: &str) {
    let key = if map.contains_key(name) || map.len() < MAX_NAMES {
        name
    } else {
        "other"
    };
    *map.entry(key.to_owned()).or_default() += 1;
}
