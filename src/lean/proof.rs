//! The proof state of one Lean file, as sent to the hub (`HubEvent::Proof`) and the browser.
//!
//! Owns the serialised shape only: [`ProofState`] (status, diagnostics, goals, suggestions,
//! error, server status), the server's own status ([`ServerStatus`], also published under
//! [`SERVER_KEY`](super::SERVER_KEY)) and the mapping to `lsp-types` where a type fits. All
//! positions are 1-based, columns in Unicode codepoints, as lean-lsp-mcp gives them.

use lsp_types::DiagnosticSeverity;
use serde::{Deserialize, Serialize};

/// Where a file's state stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// A check is running, or Lean reported it had not finished elaborating.
    Elaborating,
    /// The results are current.
    Complete,
    /// The last check failed (`error` says why); the results shown are the last known ones.
    Error,
    /// The server died or is restarting; the results shown are the last known ones.
    Stale,
    /// No server to ask (down, restarting or unavailable) and no results yet.
    Disconnected,
}

/// Where the server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    Starting,
    Ready,
    /// Gone (crash, hang, failed start); a restart is scheduled.
    Disconnected,
    /// The command is not installed; looked for again now and then.
    Unavailable,
    /// `[lean] enabled = false`.
    Disabled,
}

/// The server's status, in every file's state and under [`SERVER_KEY`](super::SERVER_KEY).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub status: ServerState,
    pub command: String,
    pub pid: Option<u32>,
    /// Restarts since the gateway started (crash, hang, failed start or request).
    pub restarts: u64,
    /// `serverInfo` from the handshake, e.g. "Lean LSP" / "0.32.0".
    pub name: Option<String>,
    pub version: Option<String>,
    pub protocol_version: Option<String>,
    /// Why the server is not ready, when it is not.
    pub error: Option<String>,
    /// Epoch ms when this status began.
    pub since: u64,
    /// While the server is down: epoch ms of the next start attempt (the restart backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
}

/// The payload published under [`SERVER_KEY`](super::SERVER_KEY).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEntry {
    pub server: ServerStatus,
    pub updated_at: u64,
}

/// One diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofDiagnostic {
    /// `error`, `warning`, `info` or `hint`.
    pub severity: String,
    /// The LSP severity (1 error .. 4 hint).
    pub severity_code: DiagnosticSeverity,
    /// Start of the diagnostic's range, 1-based.
    pub line: u32,
    pub column: u32,
    pub message: String,
    /// `diagnostic`, `linter`, `sorry` or `suggestion` (from lean-lsp-mcp).
    pub category: Option<String>,
    /// Lean tags: `unsolvedGoals`, `goalsAccomplished`.
    pub tags: Vec<String>,
    pub hint: Option<String>,
}

impl ProofDiagnostic {
    /// True for Lean's "unsolved goals" error.
    pub fn has_unsolved_goals(&self) -> bool {
        self.tags.iter().any(|t| t == "unsolvedGoals")
    }

    /// As an LSP diagnostic (0-based, zero-width range at the start; lean-lsp-mcp gives no end).
    pub fn to_lsp(&self) -> lsp_types::Diagnostic {
        let pos =
            lsp_types::Position::new(self.line.saturating_sub(1), self.column.saturating_sub(1));
        lsp_types::Diagnostic {
            range: lsp_types::Range::new(pos, pos),
            severity: Some(self.severity_code),
            source: Some("Lean 4".to_owned()),
            message: self.message.clone(),
            ..lsp_types::Diagnostic::default()
        }
    }
}

/// The severity of a lean-lsp-mcp label, and the label normalised.
pub fn severity(label: &str) -> (DiagnosticSeverity, &'static str) {
    match label.to_ascii_lowercase().as_str() {
        "error" => (DiagnosticSeverity::ERROR, "error"),
        "warning" => (DiagnosticSeverity::WARNING, "warning"),
        "hint" => (DiagnosticSeverity::HINT, "hint"),
        _ => (DiagnosticSeverity::INFORMATION, "info"),
    }
}

/// How many diagnostics of each severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub errors: u32,
    pub warnings: u32,
    pub infos: u32,
    pub hints: u32,
}

impl Counts {
    pub fn of(diagnostics: &[ProofDiagnostic]) -> Self {
        let mut c = Self::default();
        for d in diagnostics {
            match d.severity_code {
                DiagnosticSeverity::ERROR => c.errors += 1,
                DiagnosticSeverity::WARNING => c.warnings += 1,
                DiagnosticSeverity::HINT => c.hints += 1,
                _ => c.infos += 1,
            }
        }
        c
    }
}

/// One hypothesis: `a b : Nat` has names `["a", "b"]` and type `Nat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub names: Vec<String>,
    #[serde(rename = "type")]
    pub ty: String,
}

/// One goal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    /// The case tag (`case left`), if any.
    pub case: Option<String>,
    pub hypotheses: Vec<Hypothesis>,
    /// What is left to prove (after the `⊢`).
    pub target: String,
    /// Lean's own rendering.
    pub pretty: String,
}

/// Why goals were asked for at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalReason {
    /// An "unsolved goals" error starts here.
    UnsolvedGoals,
    /// The line the user is at.
    Cursor,
}

/// The goals at one position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalsAt {
    pub reason: GoalReason,
    pub line: u32,
    /// `None`: the whole line (`goals` before it, `goals_after` after it).
    pub column: Option<u32>,
    /// The source line.
    pub line_context: Option<String>,
    /// `goals`, `complete`, `no_goal_at_position`, `still_elaborating` (with a column).
    pub status: Option<String>,
    pub goals: Vec<Goal>,
    pub goals_after: Option<Vec<Goal>>,
    /// The tool's error, when the goal query failed (goals may then come from the diagnostic).
    pub error: Option<String>,
}

/// Where a suggestion came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionSource {
    /// `lean_code_actions`.
    CodeAction,
    /// A "Try this:" diagnostic.
    Diagnostic,
}

/// One text edit of a suggestion (1-based, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    pub new_text: String,
    pub start_line: u32,
    pub start_column: u32,
    pub end_line: u32,
    pub end_column: u32,
}

/// A tactic suggestion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    pub source: SuggestionSource,
    pub line: u32,
    pub column: Option<u32>,
    pub title: String,
    /// The suggested text ("Try this: X" gives X).
    pub text: Option<String>,
    pub preferred: bool,
    pub edits: Vec<Edit>,
}

/// Which side failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The tool ran and reported an error (`isError: true`).
    Tool,
    /// The exchange was wrong (JSON-RPC error, malformed answer).
    Protocol,
    /// The server hung or died during the check.
    Server,
}

/// Why the last check failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofError {
    pub kind: ErrorKind,
    pub message: String,
}

/// The proof state of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofState {
    /// The path as the trigger gave it.
    pub file: String,
    /// Bumped by every check request; answers for older versions are dropped.
    pub version: u64,
    pub status: FileStatus,
    /// Epoch ms of this state.
    pub updated_at: u64,
    /// Epoch ms when the results shown were obtained (`None`: never).
    pub checked_at: Option<u64>,
    /// Lean's verdict: no errors.
    pub success: Option<bool>,
    pub counts: Counts,
    /// Sorted by position.
    pub diagnostics: Vec<ProofDiagnostic>,
    pub goals: Vec<GoalsAt>,
    pub suggestions: Vec<Suggestion>,
    /// Line ranges Lean was still elaborating when it answered.
    pub still_elaborating_lines: Vec<[u32; 2]>,
    pub error: Option<ProofError>,
    pub server: ServerStatus,
}

impl ProofState {
    /// A state with no results yet.
    pub fn empty(
        file: &str,
        version: u64,
        status: FileStatus,
        server: ServerStatus,
        now: u64,
    ) -> Self {
        Self {
            file: file.to_owned(),
            version,
            status,
            updated_at: now,
            checked_at: None,
            success: None,
            counts: Counts::default(),
            diagnostics: Vec::new(),
            goals: Vec::new(),
            suggestions: Vec::new(),
            still_elaborating_lines: Vec::new(),
            error: None,
            server,
        }
    }

    /// The state as the hub stores it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_map_to_lsp() {
        assert_eq!(severity("error"), (DiagnosticSeverity::ERROR, "error"));
        assert_eq!(severity("WARNING").1, "warning");
        assert_eq!(severity("info").0, DiagnosticSeverity::INFORMATION);
        assert_eq!(severity("odd").1, "info");
        assert_eq!(severity("hint").0, DiagnosticSeverity::HINT);
    }

    #[test]
    fn lsp_diagnostic_is_zero_based() {
        let (code, label) = severity("error");
        let d = ProofDiagnostic {
            severity: label.into(),
            severity_code: code,
            line: 12,
            column: 37,
            message: "m".into(),
            category: None,
            tags: vec![],
            hint: None,
        };
        let lsp = d.to_lsp();
        assert_eq!(lsp.range.start, lsp_types::Position::new(11, 36));
        assert_eq!(lsp.severity, Some(DiagnosticSeverity::ERROR));
        let json = serde_json::to_value(&d).expect("serialises");
        assert_eq!(json["severity_code"], 1);
        assert_eq!(json["severity"], "error");
    }
}
