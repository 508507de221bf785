//! The last known proof state of each file, and its publication to the hub.
//!
//! Owns the per-file cache (bounded: the least recently checked files are forgotten), the
//! `HubEvent::Proof` sends (one per state change; `send` never blocks), marking every cached
//! file stale or disconnected at once when the server goes, the list of files to re-check
//! after a restart, and the server entry published under [`SERVER_KEY`](super::SERVER_KEY).

use std::collections::HashMap;
use std::time::SystemTime;

use super::proof::{FileStatus, ProofError, ProofState, ServerEntry, ServerStatus};
use super::SERVER_KEY;
use crate::hub::{HubEvent, HubHandle};
use crate::util::epoch_ms;

/// Files whose state is kept.
const MAX_FILES: usize = 256;
/// Files re-checked after a restart (the most recently checked ones).
const RECHECK_FILES: usize = 16;

pub(super) fn now_ms() -> u64 {
    epoch_ms(SystemTime::now())
}

struct Entry {
    state: ProofState,
    /// The line of the last check request, reused for re-checks.
    line: Option<u32>,
    touched: u64,
}

/// File → last state.
pub(super) struct Cache {
    hub: HubHandle,
    files: HashMap<String, Entry>,
    tick: u64,
}

impl Cache {
    pub(super) fn new(hub: HubHandle) -> Self {
        Self {
            hub,
            files: HashMap::new(),
            tick: 0,
        }
    }

    pub(super) fn get(&self, file: &str) -> Option<&ProofState> {
        self.files.get(file).map(|e| &e.state)
    }

    /// Stores `state` (remembering `line` for re-checks) and publishes it.
    pub(super) fn store(&mut self, state: ProofState, line: Option<u32>) {
        self.tick += 1;
        if !self.files.contains_key(&state.file) && self.files.len() >= MAX_FILES {
            self.evict();
        }
        self.publish(&state);
        let line = line.or_else(|| self.files.get(&state.file).and_then(|e| e.line));
        self.files.insert(
            state.file.clone(),
            Entry {
                state,
                line,
                touched: self.tick,
            },
        );
    }

    fn evict(&mut self) {
        let oldest = self
            .files
            .iter()
            .min_by_key(|(_, e)| e.touched)
            .map(|(f, _)| f.clone());
        if let Some(f) = oldest {
            self.files.remove(&f);
        }
    }

    fn publish(&self, state: &ProofState) {
        tracing::debug!(
            file = %state.file,
            version = state.version,
            status = ?state.status,
            errors = state.counts.errors,
            goals = state.goals.len(),
            "proof state published"
        );
        self.hub.send(HubEvent::Proof {
            file: state.file.clone(),
            state: state.to_json(),
        });
    }

    /// The server went away: every cached file becomes `stale` (or `disconnected` when it has
    /// no results), with the new server status, and is published at once. `interrupted` is the
    /// file whose check the server's end cut short, with why.
    pub(super) fn mark_all_down(
        &mut self,
        server: &ServerStatus,
        interrupted: Option<(&str, ProofError)>,
    ) {
        let now = now_ms();
        if let Some((file, error)) = interrupted {
            if let Some(entry) = self.files.get_mut(file) {
                entry.state.error = Some(error);
            }
        }
        for entry in self.files.values_mut() {
            let s = &mut entry.state;
            s.status = if s.checked_at.is_some() {
                FileStatus::Stale
            } else {
                FileStatus::Disconnected
            };
            s.server = server.clone();
            s.updated_at = now;
        }
        for entry in self.files.values() {
            self.publish(&entry.state);
        }
    }

    /// A check was asked for while no server can answer: say so for this file, once per
    /// status (a cached file keeps its last results, marked stale).
    pub(super) fn note_waiting(&mut self, file: &str, version: u64, server: &ServerStatus) {
        let now = now_ms();
        let state = match self.get(file) {
            Some(prev) if prev.server == *server && prev.version == version => return,
            Some(prev) => {
                let mut s = prev.clone();
                s.version = version;
                s.server = server.clone();
                s.updated_at = now;
                if s.checked_at.is_some() {
                    s.status = FileStatus::Stale;
                }
                s
            }
            None => ProofState::empty(file, version, FileStatus::Disconnected, server.clone(), now),
        };
        self.store(state, None);
    }

    /// The files to check again after a restart, with their last line.
    pub(super) fn recheck_list(&self) -> Vec<(String, Option<u32>)> {
        let mut entries: Vec<(&String, &Entry)> = self.files.iter().collect();
        entries.sort_by_key(|(_, e)| std::cmp::Reverse(e.touched));
        entries
            .into_iter()
            .take(RECHECK_FILES)
            .map(|(f, e)| (f.clone(), e.line))
            .collect()
    }

    /// Publishes the server's own status under [`SERVER_KEY`].
    pub(super) fn publish_server(&self, server: &ServerStatus) {
        let entry = ServerEntry {
            server: server.clone(),
            updated_at: now_ms(),
        };
        tracing::debug!(status = ?server.status, pid = server.pid, "lean server status published");
        self.hub.send(HubEvent::Proof {
            file: SERVER_KEY.to_owned(),
            state: serde_json::to_value(entry).unwrap_or(serde_json::Value::Null),
        });
    }
}
