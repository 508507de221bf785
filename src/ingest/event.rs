//! Parsing and validation of the plugin's `PluginEvent { event, timestamp, data }` (the seed's
//! "Interface Contracts") into the typed, bounded [`SessionEvent`]s the hub applies.
//!
//! Owns the schema: what each known OpenCode event (facts/opencode.md §1.4–1.5) must carry, the
//! bounds on every string, and the mapping of OpenCode's loose payloads to [`Kind`]. Unknown
//! event names are accepted as [`Kind::Other`] (they still prove the plugin is alive), so a newer
//! OpenCode never gets 422s. Nothing here panics on what a peer sends.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::fields::{cut, id_field, number, opt_object, path_field, text, tokens, valid_name};

/// Longest event name accepted.
pub const MAX_EVENT_NAME: usize = 128;
/// Longest session, message, part or call id accepted (the proxy's `x-session-id` rule).
pub const MAX_ID: usize = 128;
/// Longest file path accepted.
pub const MAX_PATH: usize = 4096;
/// Titles, agent, model and tool names and error texts are cut to this many characters.
pub const MAX_TEXT: usize = 256;

/// OpenCode's token counts of one step, message or session (its own mapping of the usage, facts
/// §1.5: `input` excludes cached tokens, `output` excludes reasoning tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OcTokens {
    pub input: u64,
    pub output: u64,
    pub reasoning: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// `total` when OpenCode sent it (per step and message; sessions have none).
    pub total: Option<u64>,
}

impl OcTokens {
    /// Adds `other` (totals are summed when both have one, else dropped). Saturating: counts
    /// come from a peer and may be absurd (up to `u64::MAX`), which must not panic the hub.
    pub fn add(&mut self, other: &OcTokens) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
        let t = other.total.unwrap_or(other.sum());
        self.total = Some(self.total.unwrap_or(0).saturating_add(t));
    }

    /// Subtracts `other` (saturating), the inverse of [`OcTokens::add`].
    pub fn sub(&mut self, other: &OcTokens) {
        self.input = self.input.saturating_sub(other.input);
        self.output = self.output.saturating_sub(other.output);
        self.reasoning = self.reasoning.saturating_sub(other.reasoning);
        self.cache_read = self.cache_read.saturating_sub(other.cache_read);
        self.cache_write = self.cache_write.saturating_sub(other.cache_write);
        let t = other.total.unwrap_or(other.sum());
        self.total = self.total.map(|s| s.saturating_sub(t));
    }

    /// Every token counted once (saturating).
    pub fn sum(&self) -> u64 {
        [
            self.output,
            self.reasoning,
            self.cache_read,
            self.cache_write,
        ]
        .into_iter()
        .fold(self.input, u64::saturating_add)
    }
}

/// What one accepted event means for the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `session.created` / `session.updated`: the session's info, with OpenCode's running
    /// totals when present.
    Info {
        title: Option<String>,
        parent_id: Option<String>,
        directory: Option<String>,
        totals: Option<(OcTokens, f64)>,
    },
    Deleted,
    /// `session.status` (`busy`, `idle`, `retry`, …) and `session.idle` (as `idle`).
    Status(String),
    /// `session.error`.
    Error(String),
    /// `message.updated`.
    Message {
        id: String,
        assistant: bool,
        /// `info.time.completed` is set: the tokens and cost are final.
        completed: bool,
        tokens: OcTokens,
        cost: f64,
    },
    /// A `step-finish` part: one LLM call as OpenCode counted it.
    Step {
        id: String,
        tokens: OcTokens,
    },
    /// A tool call: a finished `tool` part, or the plugin's `tool.execute.after`.
    Tool {
        call_id: String,
        tool: String,
        failed: bool,
        file: Option<String>,
    },
    /// `file.edited` / `file.watcher.updated`: a file changed on disk.
    FileEdited(String),
    /// The plugin's `chat.params` hook: one LLM call is about to be made by `agent`.
    ChatParams {
        agent: String,
        model: Option<String>,
    },
    /// `plugin.started`: the plugin (re)started.
    PluginStarted {
        version: Option<String>,
        /// The OpenCode server the plugin runs in (`serverUrl` of its context), which the
        /// `opencode serve` link may use when none is configured.
        server_url: Option<String>,
    },
    /// Anything else: only proves the plugin is alive.
    Other,
}

/// One validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    /// The OpenCode event (or plugin hook) name.
    pub name: String,
    /// The plugin's timestamp, Unix ms.
    pub timestamp: u64,
    /// The OpenCode session it belongs to, when it names one.
    pub session_id: Option<String>,
    /// OpenCode's bus event id (`evt_…`), when the sender passed it on as `id`.
    pub event_id: Option<String>,
    pub kind: Kind,
}

/// Validates one `PluginEvent`; the error says what is wrong, for the 422 body.
pub fn parse(value: &Value) -> Result<SessionEvent, String> {
    let obj = value
        .as_object()
        .ok_or("an event must be a JSON object { event, timestamp, data }")?;
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "event" | "timestamp" | "data" | "id"))
    {
        return Err(format!(
            "unknown field {:?} (allowed: event, timestamp, data, id)",
            cut(k)
        ));
    }
    let name = match obj.get("event") {
        Some(Value::String(s)) if valid_name(s) => s.clone(),
        Some(Value::String(s)) => {
            return Err(format!(
                "`event` must be 1..={MAX_EVENT_NAME} characters of a-z A-Z 0-9 . _ - (got {:?})",
                cut(s)
            ))
        }
        _ => return Err("`event` must be a string".into()),
    };
    let timestamp = match obj.get("timestamp").and_then(Value::as_f64) {
        Some(t) if t.is_finite() && t >= 0.0 => t as u64,
        _ => return Err("`timestamp` must be a non-negative number (Unix ms)".into()),
    };
    let data = obj
        .get("data")
        .and_then(Value::as_object)
        .ok_or("`data` must be a JSON object")?;
    let event_id = id_field(obj, "id")?;
    let (session_id, kind) = kind_of(&name, data).map_err(|e| format!("{name}: {e}"))?;
    Ok(SessionEvent {
        name,
        timestamp,
        session_id,
        event_id,
        kind,
    })
}

type Parsed = (Option<String>, Kind);

fn kind_of(name: &str, data: &Map<String, Value>) -> Result<Parsed, String> {
    let sid = || id_field(data, "sessionID");
    match name {
        "session.created" | "session.updated" => {
            let info = opt_object(data, "info")?;
            let from_info = info.map(|i| id_field(i, "id")).transpose()?.flatten();
            let sid = sid()?
                .or(from_info)
                .ok_or("needs `sessionID` or `info.id`")?;
            let info = info.cloned().unwrap_or_default();
            let totals = match opt_object(&info, "tokens")? {
                Some(t) => Some((tokens(t)?, number(&info, "cost")?.unwrap_or(0.0))),
                None => None,
            };
            let kind = Kind::Info {
                title: text(&info, "title"),
                parent_id: id_field(&info, "parentID")?,
                directory: path_field(&info, "directory")?,
                totals,
            };
            Ok((Some(sid), kind))
        }
        "session.deleted" => {
            let from_info = opt_object(data, "info")?
                .map(|i| id_field(i, "id"))
                .transpose()?
                .flatten();
            let sid = sid()?
                .or(from_info)
                .ok_or("needs `sessionID` or `info.id`")?;
            Ok((Some(sid), Kind::Deleted))
        }
        "session.status" => {
            let sid = sid()?.ok_or("needs `sessionID`")?;
            let status = opt_object(data, "status")?
                .and_then(|s| text(s, "type"))
                .ok_or("needs `status.type`")?;
            Ok((Some(sid), Kind::Status(status)))
        }
        "session.idle" => Ok((
            Some(sid()?.ok_or("needs `sessionID`")?),
            Kind::Status("idle".into()),
        )),
        "session.error" => {
            let err = data.get("error").and_then(Value::as_object);
            let message = err
                .and_then(|e| {
                    e.get("data")
                        .and_then(Value::as_object)
                        .and_then(|d| text(d, "message"))
                        .or_else(|| text(e, "name"))
                })
                .unwrap_or_else(|| "unknown error".into());
            Ok((sid()?, Kind::Error(message)))
        }
        "message.updated" => {
            let info = opt_object(data, "info")?.ok_or("needs `info`")?;
            let id = id_field(info, "id")?.ok_or("needs `info.id`")?;
            let sid = sid()?.or(id_field(info, "sessionID")?);
            let role = text(info, "role").ok_or("needs `info.role`")?;
            let completed = opt_object(info, "time")?
                .and_then(|t| t.get("completed"))
                .is_some_and(|c| c.as_f64().is_some());
            let toks = opt_object(info, "tokens")?.map(tokens).transpose()?;
            let kind = Kind::Message {
                id,
                assistant: role == "assistant",
                completed,
                tokens: toks.unwrap_or_default(),
                cost: number(info, "cost")?.unwrap_or(0.0),
            };
            Ok((sid, kind))
        }
        "message.part.updated" => {
            let part = opt_object(data, "part")?.ok_or("needs `part`")?;
            let id = id_field(part, "id")?.ok_or("needs `part.id`")?;
            let sid = sid()?.or(id_field(part, "sessionID")?);
            let kind = match text(part, "type").as_deref() {
                Some("step-finish") => {
                    let t = opt_object(part, "tokens")?.ok_or("step-finish needs `tokens`")?;
                    Kind::Step {
                        id,
                        tokens: tokens(t)?,
                    }
                }
                Some("tool") => tool_part(part)?,
                Some(_) => Kind::Other,
                None => return Err("needs `part.type`".into()),
            };
            Ok((sid, kind))
        }
        "tool.execute.after" => {
            let call_id = id_field(data, "callID")?.ok_or("needs `callID`")?;
            let tool = text(data, "tool").ok_or("needs `tool`")?;
            let file = match opt_object(data, "args")? {
                Some(args) => file_arg(args)?,
                None => None,
            };
            let kind = Kind::Tool {
                call_id,
                tool,
                failed: false,
                file,
            };
            Ok((sid()?, kind))
        }
        "file.edited" | "file.watcher.updated" => {
            let file = path_field(data, "file")?.ok_or("needs `file`")?;
            let removed = data.get("event").and_then(Value::as_str) == Some("unlink");
            let kind = if removed {
                Kind::Other
            } else {
                Kind::FileEdited(file)
            };
            Ok((sid()?, kind))
        }
        "chat.params" => {
            let agent = text(data, "agent").ok_or("needs `agent`")?;
            let model = opt_object(data, "model")?.and_then(|m| {
                let id = text(m, "modelID").or_else(|| text(m, "id"))?;
                Some(match text(m, "providerID") {
                    Some(p) => format!("{p}/{id}"),
                    None => id,
                })
            });
            Ok((
                Some(sid()?.ok_or("needs `sessionID`")?),
                Kind::ChatParams { agent, model },
            ))
        }
        "plugin.started" => Ok((
            None,
            Kind::PluginStarted {
                version: text(data, "version"),
                server_url: text(data, "serverUrl"),
            },
        )),
        _ => Ok((sid().ok().flatten(), Kind::Other)),
    }
}

/// A `tool` part: counted once it completed or failed; edits name their file.
fn tool_part(part: &Map<String, Value>) -> Result<Kind, String> {
    let call_id = id_field(part, "callID")?.ok_or("tool part needs `callID`")?;
    let tool = text(part, "tool").ok_or("tool part needs `tool`")?;
    let state = opt_object(part, "state")?;
    let status = state.and_then(|s| text(s, "status"));
    if !matches!(status.as_deref(), Some("completed" | "error")) {
        return Ok(Kind::Other);
    }
    let file = match state
        .and_then(|s| s.get("input"))
        .and_then(Value::as_object)
    {
        Some(input) => file_arg(input)?,
        None => None,
    };
    Ok(Kind::Tool {
        call_id,
        tool,
        failed: status.as_deref() == Some("error"),
        file,
    })
}

fn file_arg(args: &Map<String, Value>) -> Result<Option<String>, String> {
    match path_field(args, "filePath")? {
        Some(p) => Ok(Some(p)),
        None => path_field(args, "path"),
    }
}
