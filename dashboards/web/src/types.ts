// Shapes the gateway sends (src/hub/state.rs, src/gateway/record.rs, src/lean/proof.rs,
// src/admission/gate.rs). Times are Unix milliseconds. Fields the dashboard does not read are
// left out; unknown fields are kept as they came.

export interface LimitWindow {
  limit: number | null;
  remaining: number | null;
  reset_at: number | null;
}

export interface ModelLimits {
  requests: LimitWindow;
  tokens: LimitWindow;
  limit_type: string | null;
  observed_at: number | null;
}

export interface Totals {
  requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  cached_tokens: number;
  cache_creation_tokens: number;
  total_tokens: number;
  cost_usd: number;
  cost_diem: number;
}

export interface SessionUsage extends Totals {
  models: Record<string, Totals>;
  last_active: number;
  /** What OpenCode's plugin told about the session (src/ingest/session.rs), once it has. */
  opencode?: OpencodeSession;
}

export interface OpencodeSession {
  seen: boolean;
  title: string | null;
  status: string | null;
  messages: { user: number; assistant: number };
  tool_calls: number;
  tool_errors: number;
  tools: Record<string, number>;
  files_edited: string[];
  errors: number;
  last_error: string | null;
  title_calls: number;
  last_event_at: number | null;
  /** OpenCode's own tokens and cost (completed assistant messages, each counted once). */
  tokens?: OcTokens;
  cost?: number;
  /** Proxied calls OpenCode counted, and those it did not (title call, failures). */
  counted?: Totals;
  uncounted?: Totals;
}

export interface OcTokens {
  input: number;
  output: number;
  reasoning: number;
  cache_read: number;
  cache_write: number;
  total: number | null;
}

/** What a restore's OpenCode session revert did (src/opencode/status.rs `RevertOutcome`). */
export interface RevertOutcome {
  ok: boolean;
  skipped: boolean;
  session_id: string | null;
  message_id: string;
  restored: number;
  status: number | null;
  error: string | null;
  at: number;
}

/** The link to `opencode serve` (src/opencode/status.rs `LinkStatus`). */
export interface OpencodeLink {
  state: "disabled" | "connecting" | "connected" | "reconnecting" | "auth_failed" | "server_gone";
  url: string | null;
  url_source: string | null;
  since: number | null;
  reconnects: number;
  failures: number;
  last_error: string | null;
  events: number;
  last_revert: RevertOutcome | null;
}

/** The session store's status (src/store/health.rs `StoreStatus`); live only, not stored. */
export interface StoreHealth {
  status: "ok" | "behind" | "failing" | "stopped";
  /** The last committed sequence. */
  committed: number;
  /** Age of the oldest uncommitted update, in ms, when reported. */
  lag_ms: number;
  /** Why commits fail, while `failing`. */
  error: string | null;
  failing_since: number | null;
  /** Failed commits since the store started. */
  failures: number;
}

/** The OpenCode plugin's liveness (src/ingest/apply.rs `PluginStatus`). */
export interface PluginStatus {
  events: number;
  batches: number;
  last_event_at: number | null;
  version: string | null;
  starts: number;
  silent: boolean;
  silent_since: number | null;
  silent_after_ms: number;
}

export interface Balance {
  diem: number | null;
  usd: number | null;
  vcu: number | null;
  observed_at: number | null;
  stale: boolean;
}

export type UpstreamStatus = "unknown" | "ok" | "degraded" | "unavailable";

export interface Upstream {
  status: UpstreamStatus;
  consecutive_failures: number;
  last_ok_at: number | null;
  last_failure_at: number | null;
  last_error: string | null;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cached_tokens: number;
  cache_creation_tokens: number;
  reasoning_tokens: number;
}

export interface RequestRecord {
  started_at: number;
  method: string;
  path: string;
  model: string | null;
  session_id: string | null;
  status: number | null;
  outcome: string;
  streamed: boolean;
  usage: Usage | null;
  cost: { usd: number; diem: number } | null;
  cost_source?: string;
  error: { message: string; code: string | null } | null;
  latency_ms: number;
  ttfb_ms: number | null;
  attempts: number;
  retries: string[];
  queue_wait_ms: number;
  limited: string | null;
}

export interface Alerts {
  diem_below: number | null;
  usd_below: number | null;
  /** Set by the hub while the balance is below the threshold (newer gateways). */
  diem_firing?: boolean;
  usd_firing?: boolean;
}

export interface GateView {
  rpm: number;
  tpm: number;
  waiting: number;
  admitted: number;
  refused: number;
  held_until: number | null;
  held_for: string | null;
}

export interface Admission {
  models: Record<string, GateView>;
}

export interface State {
  sequence: number;
  balance: Balance;
  rate_limits: Record<string, ModelLimits>;
  models: Record<string, Totals>;
  sessions: Record<string, SessionUsage>;
  totals: Totals;
  upstream: Upstream;
  recent: RequestRecord[];
  proof: Record<string, ProofEntry>;
  alerts: Alerts;
  /** Present in `/api/sidepanel/state`, and in `state.get` if the hub ever adds it. */
  admission?: Admission;
  /** Totals of the current UTC day (`day_start_ms` = its 00:00 UTC). */
  today?: { day_start_ms: number; totals: Totals };
  /** The OpenCode plugin's status (ingest). */
  plugin?: PluginStatus;
  /** The link to an `opencode serve`, when one is configured or learned. */
  opencode_link?: OpencodeLink;
  /** The session store's status; absent when the store is disabled. */
  store?: StoreHealth;
  /** A run id or start time, if the hub adds one; used to tell a restarted gateway apart. */
  run_id?: string | number;
  started_at?: number;
}

export type UpdateType =
  | "session"
  | "usage"
  | "balance"
  | "rate_limit"
  | "health"
  | "proof"
  | "snapshot"
  | "alert";

export interface StateUpdate {
  type: UpdateType;
  timestamp: number;
  sequence: number;
  payload: any;
  source: string;
}

// ---- Lean proof state (src/lean/proof.rs) ----

export type ServerState = "starting" | "ready" | "disconnected" | "unavailable" | "disabled";

export interface LeanServer {
  status: ServerState;
  command: string;
  pid: number | null;
  restarts: number;
  name: string | null;
  version: string | null;
  protocol_version?: string | null;
  error: string | null;
  since: number;
}

export interface ProofDiagnostic {
  severity: string;
  severity_code: number;
  line: number;
  column: number;
  message: string;
  category: string | null;
  tags: string[];
  hint?: string | null;
}

export interface Hypothesis {
  names: string[];
  type: string;
}

export interface Goal {
  case: string | null;
  hypotheses: Hypothesis[];
  target: string;
  pretty: string;
}

export interface GoalsAt {
  reason: "unsolved_goals" | "cursor";
  line: number;
  column: number | null;
  line_context?: string | null;
  status: string | null;
  goals: Goal[];
  goals_after: Goal[] | null;
  error?: string | null;
}

export interface Suggestion {
  source: "code_action" | "diagnostic";
  line: number;
  column: number | null;
  title: string;
  text: string | null;
  preferred: boolean;
  edits: unknown[];
}

export interface ProofState {
  file: string;
  version: number;
  status: "elaborating" | "complete" | "error" | "stale" | "disconnected";
  updated_at: number;
  checked_at: number | null;
  success: boolean | null;
  counts: { errors: number; warnings: number; infos: number; hints: number };
  diagnostics: ProofDiagnostic[];
  goals: GoalsAt[];
  suggestions: Suggestion[];
  still_elaborating_lines: [number, number][];
  error: { kind: string; message: string } | null;
  server: LeanServer;
}

export interface ServerEntry {
  server: LeanServer;
  updated_at: number;
}

export type ProofEntry = ProofState | ServerEntry;

export const SERVER_KEY = "@server";

export function emptyTotals(): Totals {
  return {
    requests: 0,
    errors: 0,
    prompt_tokens: 0,
    completion_tokens: 0,
    reasoning_tokens: 0,
    cached_tokens: 0,
    cache_creation_tokens: 0,
    total_tokens: 0,
    cost_usd: 0,
    cost_diem: 0,
  };
}
