// The one connection to the gateway: JSON-RPC 2.0 over `/ws`. Fresh tab: `state.get`; after a
// drop: `state.since {sequence}` (missed updates, or a full state), so nothing is lost across a
// gateway restart. Retries every 2 s while the gateway is away. Also polls the admission view
// (queue depth, refusals) from `/api/sidepanel/state` while the WebSocket state lacks it.

import type { Store } from "./store";
import type { State, StateUpdate } from "./types";

export const RETRY_MS = 2000;
const CALL_TIMEOUT_MS = 10_000;
const OPEN_TIMEOUT_MS = 5000;
const ADMISSION_POLL_MS = 2000;

/** A JSON-RPC error answer. */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }
}

/** -32001: the server has no session storage yet (restore, timeline, exportSession). */
export const NOT_AVAILABLE = -32001;
/** -32000: Lean is not available. */
export const LEAN_UNAVAILABLE = -32000;

interface Pending {
  resolve: (v: any) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

function token(): string | null {
  const fromHash = new URLSearchParams(location.hash.replace(/^#/, "")).get("token");
  if (fromHash) return fromHash;
  const meta = document.querySelector<HTMLMetaElement>('meta[name="sidepanel-token"]');
  return meta?.content?.trim() || null;
}

export class Connection {
  private ws: WebSocket | null = null;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pollTimer: ReturnType<typeof setInterval> | null = null;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`,
  ) {}

  start(): void {
    this.stopped = false;
    this.open();
    this.pollTimer ??= setInterval(() => void this.pollAdmission(), ADMISSION_POLL_MS);
  }

  /** Drops the socket and connects again now (the `R` shortcut). */
  reconnectNow(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) {
      this.ws.close(4000, "reconnect requested");
    } else {
      this.open();
    }
  }

  /** Calls a method; rejects with an [`RpcError`] on an error answer, or on timeout/disconnect. */
  call<T = any>(method: string, params?: Record<string, unknown>): Promise<T> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("not connected to the gateway"));
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer within ${CALL_TIMEOUT_MS / 1000} s`));
      }, CALL_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      const msg: Record<string, unknown> = { jsonrpc: "2.0", id, method };
      if (params) msg.params = params;
      ws.send(JSON.stringify(msg));
    });
  }

  private open(): void {
    if (this.stopped) return;
    const first = this.store.state == null;
    this.store.setConn({ status: first && this.store.conn.attempts === 0 ? "connecting" : "reconnecting", nextRetryAt: null });
    const t = token();
    let ws: WebSocket;
    try {
      ws = t ? new WebSocket(this.url, [`sidepanel.${t}`]) : new WebSocket(this.url);
    } catch (e) {
      this.scheduleRetry(String(e));
      return;
    }
    this.ws = ws;
    const openTimer = setTimeout(() => ws.readyState === WebSocket.CONNECTING && ws.close(), OPEN_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(openTimer);
      void this.sync();
    };
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onclose = (ev) => {
      clearTimeout(openTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      for (const [, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(new Error("connection to the gateway closed"));
      }
      this.pending.clear();
      const why = ev.code === 1000 || ev.code === 4000 ? null : `closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ""})`;
      if (ev.code === 4000) {
        this.open();
      } else {
        this.scheduleRetry(why);
      }
    };
  }

  private scheduleRetry(error: string | null): void {
    if (this.stopped) return;
    const now = Date.now();
    this.store.setConn({ status: "disconnected", attempts: this.store.conn.attempts + 1, nextRetryAt: now + RETRY_MS, error }, now);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.open();
    }, RETRY_MS);
  }

  /** After (re)connecting: a full state for a fresh tab, the missed updates otherwise. */
  private async sync(): Promise<void> {
    try {
      if (this.store.state == null) {
        const r = await this.call<{ sequence: number; state: State }>("state.get");
        this.store.applyFull(r.state, r.sequence);
      } else {
        const before = this.store.state.totals.requests;
        const r = await this.call<any>("state.since", { sequence: this.store.sequence });
        if (r.resync) {
          this.store.applyFull(r.state, r.sequence);
        } else {
          const updates = (r.updates ?? []) as StateUpdate[];
          // A different gateway run whose sequence already passed ours would hand us the wrong
          // updates; totals going backwards give it away, and a full state repairs it.
          const wentBack = updates.some((u) => u.type === "usage" && u.payload?.totals && u.payload.totals.requests < before);
          if (wentBack) {
            const full = await this.call<{ sequence: number; state: State }>("state.get");
            this.store.applyFull(full.state, full.sequence);
          } else {
            for (const u of updates) this.store.applyUpdate(u);
          }
        }
      }
      this.store.setConn({ status: "connected", attempts: 0, error: null, nextRetryAt: null });
      void this.pollAdmission();
    } catch (e) {
      this.store.setConn({ error: `sync failed: ${(e as Error).message}` });
      this.ws?.close();
    }
  }

  private onMessage(data: unknown): void {
    if (typeof data !== "string") return;
    let msgs: any;
    try {
      msgs = JSON.parse(data);
    } catch {
      return;
    }
    for (const m of Array.isArray(msgs) ? msgs : [msgs]) this.dispatch(m);
  }

  private dispatch(m: any): void {
    if (m == null || typeof m !== "object") return;
    if (m.method === "state.update" && m.params) {
      this.store.applyUpdate(m.params as StateUpdate);
      return;
    }
    if (m.method === "state.resync" && m.params) {
      this.store.applyFull(m.params.state, m.params.sequence);
      return;
    }
    if (typeof m.id === "number" && this.pending.has(m.id)) {
      const p = this.pending.get(m.id)!;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.error) p.reject(new RpcError(m.error.code, m.error.message, m.error.data));
      else p.resolve(m.result);
    }
  }

  /** Queue depth and refusals live in the admission view, served with the HTTP state. */
  private async pollAdmission(): Promise<void> {
    const s = this.store.state;
    if (!s || this.store.conn.status !== "connected" || document.visibilityState === "hidden") return;
    if (s.admission && this.store.updatedAt.admission == null) return; // the hub sends it itself
    try {
      const r = await fetch("/api/sidepanel/state", { cache: "no-store" });
      if (!r.ok) return;
      const body = await r.json();
      this.store.setAdmission(body.admission);
    } catch {
      // The WebSocket's own close handling reports the outage.
    }
  }
}
