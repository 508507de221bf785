// The dashboard's model: the gateway's state as of the last sequence applied, plus what this tab
// derives from the updates it saw (request log, token and cost events for the chart and the
// projection, data ages). Updates are applied at once; views are told at most once per frame.

import { utcDayStart } from "./projection";
import type { CostEvent } from "./projection";
import { tokenEvent } from "./series";
import type { TokenEvent } from "./series";
import { emptyTotals } from "./types";
import type { Admission, RequestRecord, SessionUsage, State, StateUpdate, Totals } from "./types";

export type ConnStatus = "connecting" | "connected" | "reconnecting" | "disconnected";

export interface Conn {
  status: ConnStatus;
  /** Failed attempts since the last successful connection. */
  attempts: number;
  /** When the current status began. */
  since: number;
  /** Last message from the gateway. */
  lastMessageAt: number | null;
  nextRetryAt: number | null;
  error: string | null;
}

/** Requests kept in this tab's log (the gateway's state keeps the last 50). */
export const LOG_CAP = 1000;
/** Token and cost events kept for the chart and the projection. */
export const EVENT_SPAN_MS = 60 * 60_000;

export type Listener = () => void;

/** Shortest time between two renders. */
export const RENDER_GAP_MS = 100;

const clock = () => (typeof performance !== "undefined" ? performance.now() : Date.now());

export function recordKey(r: RequestRecord): string {
  return `${r.started_at}|${r.model}|${r.session_id}|${r.latency_ms}|${r.path}|${r.status}`;
}

export class Store {
  state: State | null = null;
  sequence = 0;
  conn: Conn = { status: "connecting", attempts: 0, since: Date.now(), lastMessageAt: null, nextRetryAt: null, error: null };
  /** Newest last. */
  log: RequestRecord[] = [];
  tokenEvents: TokenEvent[] = [];
  costEvents: CostEvent[] = [];
  /** When this tab first had a state: the projection's rate is averaged from here at most. */
  observedSince: number | null = null;
  /** Client time of the last update of each type (and `state` for a full state). */
  updatedAt: Record<string, number> = {};
  /** OpenCode session details from `session` updates, by id. */
  sessionInfo: Record<string, Record<string, unknown>> = {};
  /** A message about the last full-state replacement (restore), shown once. */
  notice: string | null = null;
  /** Bumped on every change; views compare it. */
  version = 0;
  /** Updates applied since the page loaded (for the benchmark). */
  applied = 0;

  private keys = new Set<string>();
  /** Sequence of the `usage` update that brought each request (for restore). */
  private seqs = new Map<string, number>();
  /** A plugin-silent (or other gateway) alert from an `alert` update, while it fires. */
  gatewayAlert: string | null = null;
  private listeners = new Set<Listener>();
  private scheduled = false;
  private lastFlush = -Infinity;

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Tells the views: on the next animation frame, but at most every [`RENDER_GAP_MS`], so a burst
   * of updates (100/s and more) costs ten renders a second and frames keep flowing. A hidden
   * tab, where frames stop, is told by a timer instead.
   */
  changed(): void {
    this.version++;
    if (this.scheduled) return;
    this.scheduled = true;
    const flush = () => {
      if (!this.scheduled) return;
      this.scheduled = false;
      this.lastFlush = clock();
      for (const fn of this.listeners) fn();
    };
    const frame = () => {
      if (typeof requestAnimationFrame === "function") requestAnimationFrame(flush);
      setTimeout(flush, 250);
    };
    const wait = this.lastFlush + RENDER_GAP_MS - clock();
    if (wait > 0) setTimeout(frame, wait);
    else frame();
  }

  setConn(patch: Partial<Conn>, now = Date.now()): void {
    if (patch.status && patch.status !== this.conn.status) patch.since = now;
    this.conn = { ...this.conn, ...patch };
    this.changed();
  }

  /** Replaces the whole state (`state.get`, a `resync: true` answer, `state.resync`, a restore). */
  applyFull(state: State, sequence: number, now = Date.now()): void {
    const prev = this.state;
    if (!state.admission && prev?.admission) state.admission = prev.admission;
    state.recent = state.recent ?? [];
    this.state = state;
    this.sequence = sequence;
    // `recent` holds every request since the oldest one in it, so the spend rate may start there.
    this.observedSince ??= Math.min(now, ...state.recent.map((r) => r.started_at));
    for (const r of state.recent) this.addRecord(r, now);
    this.updatedAt.state = now;
    this.markMessage(now);
    this.changed();
  }

  /** Applies one `state.update`; returns false when its sequence is not newer (last write wins). */
  applyUpdate(u: StateUpdate, now = Date.now()): boolean {
    this.markMessage(now);
    if (!this.state || u.sequence <= this.sequence) return false;
    const s = this.state;
    const p = u.payload ?? {};
    switch (u.type) {
      case "balance":
        if (p.balance) s.balance = p.balance;
        break;
      case "rate_limit":
        if (p.model && p.limits) s.rate_limits = { ...s.rate_limits, [p.model]: p.limits };
        break;
      case "usage":
        this.applyUsage(s, p, now, u.sequence);
        break;
      case "health":
        if (p.upstream) s.upstream = p.upstream;
        if (p.opencode_link) s.opencode_link = p.opencode_link;
        if (p.store) s.store = p.store;
        break;
      case "proof":
        if (typeof p.file === "string") s.proof = { ...s.proof, [p.file]: p.state };
        break;
      case "alert":
        if (p.alerts) s.alerts = p.alerts;
        else if (p.currency === "diem" || p.currency === "usd") s.alerts = { ...s.alerts, [`${p.currency}_below`]: p.below ?? null };
        if (p.balance) s.balance = p.balance;
        if (typeof p.alert === "string") this.gatewayAlert = p.firing ? String(p.message ?? p.alert) : null;
        if (p.plugin) s.plugin = p.plugin;
        if (p.revert && s.opencode_link) s.opencode_link = { ...s.opencode_link, last_revert: p.revert };
        break;
      case "session":
        this.applySession(s, p);
        break;
      case "snapshot": {
        const full = (p.state ?? p) as State;
        if (full && full.totals) {
          this.applyFull(full, u.sequence, now);
          const from = p.restored_from;
          const what = from?.snapshot_id != null ? `snapshot ${from.snapshot_id}` : from?.sequence != null ? `sequence ${from.sequence}` : `sequence ${u.sequence}`;
          this.notice = `State restored to ${what}.`;
        }
        break;
      }
      default:
        break;
    }
    this.sequence = u.sequence;
    s.sequence = u.sequence;
    this.updatedAt[u.type] = now;
    this.applied++;
    this.changed();
    return true;
  }

  setAdmission(a: Admission | undefined): void {
    if (!this.state || !a) return;
    this.state.admission = a;
    this.updatedAt.admission = Date.now();
    this.changed();
  }

  /** Cost and tokens of the current UTC day, when known; else since the gateway started. */
  /** Totals of the current UTC day, from the gateway's `today` (zero once a new day began). */
  today(now = Date.now()): Totals {
    const t = this.state?.today;
    return t && t.day_start_ms === utcDayStart(now) ? t.totals : emptyTotals();
  }

  private markMessage(now: number): void {
    this.conn.lastMessageAt = now;
  }

  /** The sequence of the update that brought `r`, when this tab saw it live. */
  sequenceOf(r: RequestRecord): number | null {
    return this.seqs.get(recordKey(r)) ?? null;
  }

  private applyUsage(s: State, p: any, now: number, sequence: number): void {
    const r = p.request as RequestRecord | undefined;
    if (p.totals) s.totals = p.totals;
    if (p.today) s.today = p.today;
    if (p.model && p.model_totals) s.models = { ...s.models, [p.model]: p.model_totals };
    if (r) {
      const sid = r.session_id;
      if (sid && p.session_totals) {
        const old = s.sessions[sid];
        const models = { ...(old?.models ?? {}) };
        const key = p.model ?? r.model ?? "unknown";
        models[key] = addRecord(models[key] ?? emptyTotals(), r);
        s.sessions = {
          ...s.sessions,
          [sid]: { ...p.session_totals, models, last_active: Math.max(old?.last_active ?? 0, r.started_at) },
        };
      }
      s.recent = [...s.recent.slice(-49), r];
      this.addRecord(r, now);
      this.seqs.set(recordKey(r), sequence);
    }
  }

  /** `{session, events, opencode, totals}` for a session; `{plugin}` when the plugin starts. */
  private applySession(s: State, p: any): void {
    if (p.plugin) s.plugin = p.plugin;
    const id = typeof p.session === "string" ? p.session : (p.session?.id ?? p.id);
    if (typeof id !== "string") return;
    const old = s.sessions[id];
    if (p.totals || p.opencode) {
      s.sessions = {
        ...s.sessions,
        [id]: {
          ...(old ?? { models: {}, last_active: Date.now() }),
          ...(p.totals ?? {}),
          ...(p.opencode ? { opencode: p.opencode } : {}),
          last_active: Math.max(old?.last_active ?? 0, Number(p.opencode?.last_event_at ?? 0) || Date.now()),
        } as SessionUsage,
      };
    }
    if (p.session && typeof p.session === "object") {
      this.sessionInfo = { ...this.sessionInfo, [id]: { ...(this.sessionInfo[id] ?? {}), ...p.session } };
    }
  }

  private addRecord(r: RequestRecord, now: number): void {
    const key = recordKey(r);
    if (this.keys.has(key)) return;
    this.keys.add(key);
    this.log.push(r);
    if (this.log.length > LOG_CAP) {
      const gone = this.log.splice(0, this.log.length - LOG_CAP);
      for (const g of gone) {
        this.keys.delete(recordKey(g));
        this.seqs.delete(recordKey(g));
      }
    }
    const te = tokenEvent(r);
    if (te) this.tokenEvents.push(te);
    if (r.cost && (r.cost.usd || r.cost.diem)) {
      this.costEvents.push({ t: r.started_at + (r.latency_ms || 0), usd: r.cost.usd, diem: r.cost.diem });
    }
    const cutoff = now - EVENT_SPAN_MS;
    if (this.tokenEvents.length > 4096 || (this.tokenEvents[0] && this.tokenEvents[0].t < cutoff)) {
      this.tokenEvents = this.tokenEvents.filter((e) => e.t >= cutoff).slice(-4096);
    }
    if (this.costEvents.length > 4096 || (this.costEvents[0] && this.costEvents[0].t < cutoff)) {
      this.costEvents = this.costEvents.filter((e) => e.t >= cutoff).slice(-4096);
    }
  }
}

function addRecord(t: Totals, r: RequestRecord): Totals {
  const u = r.usage;
  return {
    requests: t.requests + 1,
    errors: t.errors + (r.outcome === "ok" ? 0 : 1),
    prompt_tokens: t.prompt_tokens + (u?.prompt_tokens ?? 0),
    completion_tokens: t.completion_tokens + (u?.completion_tokens ?? 0),
    reasoning_tokens: t.reasoning_tokens + (u?.reasoning_tokens ?? 0),
    cached_tokens: t.cached_tokens + (u?.cached_tokens ?? 0),
    cache_creation_tokens: t.cache_creation_tokens + (u?.cache_creation_tokens ?? 0),
    total_tokens: t.total_tokens + (u?.total_tokens ?? 0),
    cost_usd: t.cost_usd + (r.cost?.usd ?? 0),
    cost_diem: t.cost_diem + (r.cost?.diem ?? 0),
  };
}
