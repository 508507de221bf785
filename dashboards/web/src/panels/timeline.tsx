// The selected session's timeline with its snapshot points, and restore. The server's
// `timeline {session}` supplies the points when session storage exists; until then it answers
// -32001 "not available yet", which is shown as such, and the requests this tab saw for the
// session are listed instead. Restoring asks first, then calls `restore`; the server then
// publishes a `snapshot` update that every open tab applies.

import { useEffect, useState } from "preact/hooks";
import { fmtDiem, fmtTime, fmtTokens, fmtUsd, shortId } from "../format";
import { NOT_AVAILABLE, RpcError } from "../rpc";
import type { Connection } from "../rpc";
import type { Store } from "../store";
import { Empty, Panel, freshness } from "../ui";

/** Points listed (newest first). */
export const MAX_POINTS = 100;

export interface Point {
  /** Sequence of the update this point is (restore passes it), when known. */
  sequence: number | null;
  /** Stored snapshot id (restore passes it instead of the sequence). */
  snapshotId: number | null;
  at: number;
  label: string;
  detail: string;
  snapshot: boolean;
  bad: boolean;
}

export type TimelineState =
  | { kind: "idle" }
  | { kind: "loading" }
  | { kind: "ok"; points: Point[] }
  | { kind: "unavailable"; message: string }
  | { kind: "error"; message: string };

/**
 * Reads a `timeline` answer: `{sessionId, points: [{sequence, timestamp, kind: "snapshot" |
 * "update", snapshot_id?, type, label}]}` (src/store/read.rs), newest first.
 */
export function serverPoints(result: unknown): Point[] {
  const r = result as any;
  const list: any[] = Array.isArray(r) ? r : (r?.points ?? []);
  return list
    .map((p) => {
      const snapshot = p.kind === "snapshot";
      const sid = p.snapshot_id ?? p.snapshotId;
      return {
        sequence: typeof p.sequence === "number" ? p.sequence : null,
        snapshotId: typeof sid === "number" ? sid : null,
        at: Number(p.timestamp ?? p.at ?? 0),
        label: String(p.label ?? p.type ?? p.kind ?? "event"),
        detail: snapshot ? `snapshot${p.type ? ` · ${p.type}` : ""}` : `#${p.sequence ?? "?"} · ${p.type ?? ""}`,
        snapshot,
        bad: false,
      };
    })
    .sort((a, b) => b.at - a.at || (b.sequence ?? 0) - (a.sequence ?? 0));
}

/** The points this tab knows itself: the session's requests, newest first. */
export function localPoints(store: Store, session: string, max = MAX_POINTS): Point[] {
  const out: Point[] = [];
  for (let i = store.log.length - 1; i >= 0 && out.length < max; i--) {
    const r = store.log[i];
    if (r.session_id !== session) continue;
    const cost = r.cost ? (r.cost.usd ? fmtUsd(r.cost.usd) : `${fmtDiem(r.cost.diem)} Diem`) : "no cost";
    out.push({
      sequence: store.sequenceOf(r),
      snapshotId: null,
      at: r.started_at,
      label: r.model ?? r.path,
      detail: `${r.status ?? "—"} · ${r.usage ? fmtTokens(r.usage.total_tokens) : "—"} tok · ${cost}`,
      snapshot: false,
      bad: r.outcome !== "ok",
    });
  }
  return out;
}

/** Loads the server timeline of `session` whenever it or the connection changes. */
export function useTimeline(conn: Connection, session: string | null, connected: boolean, version: number): TimelineState {
  const [st, setSt] = useState<TimelineState>({ kind: "idle" });
  // Refresh on snapshot/restore-worthy changes only: session switch, reconnect, or every 50 updates.
  const bucket = Math.floor(version / 50);
  useEffect(() => {
    if (!session || !connected) {
      setSt({ kind: "idle" });
      return;
    }
    let live = true;
    setSt((old) => (old.kind === "ok" || old.kind === "unavailable" ? old : { kind: "loading" }));
    conn
      .call("timeline", { sessionId: session })
      .then((r) => live && setSt({ kind: "ok", points: serverPoints(r) }))
      .catch((e: Error) => {
        if (!live) return;
        if (e instanceof RpcError && e.code === NOT_AVAILABLE) setSt({ kind: "unavailable", message: e.message });
        else setSt({ kind: "error", message: e.message });
      });
    return () => {
      live = false;
    };
  }, [conn, session, connected, bucket]);
  return st;
}

export function timelinePoints(store: Store, session: string | null, st: TimelineState): Point[] {
  if (!session) return [];
  if (st.kind === "ok" && st.points.length > 0) return st.points;
  return localPoints(store, session);
}

export function TimelinePanel(props: {
  store: Store;
  now: number;
  session: string | null;
  tl: TimelineState;
  points: Point[];
  cursor: number;
  onCursor: (i: number) => void;
  onRestore: (p: Point) => void;
  restoreMsg: { ok: boolean; text: string } | null;
}) {
  const { store, now, session, tl, points, cursor } = props;
  const fresh = freshness(store, store.updatedAt.usage ?? store.updatedAt.state, now);
  const fromServer = tl.kind === "ok" && tl.points.length > 0;
  return (
    <Panel id="timeline" hotkey="6" title="Timeline" fresh={fresh} extra={session ? <span class="chip small" title={session}>{shortId(session, 22)}</span> : null}>
      {!session ? (
        <Empty>Select a session (5, then j/k and Enter) to see its timeline.</Empty>
      ) : (
        <>
          {tl.kind === "unavailable" && (
            <div class="notice warn" data-testid="timeline-unavailable">
              <strong>Session storage is not available yet</strong> — the gateway answered “{tl.message}”. Restore needs
              it; below are the requests this tab saw for the session.
            </div>
          )}
          {tl.kind === "error" && <div class="notice bad">Timeline failed: {tl.message}</div>}
          {props.restoreMsg && (
            <div class={`notice ${props.restoreMsg.ok ? "ok" : "bad"}`} role="status" data-testid="restore-result">
              {props.restoreMsg.text}
            </div>
          )}
          {points.length === 0 ? (
            <Empty>{tl.kind === "loading" ? "Loading…" : "Nothing recorded for this session yet."}</Empty>
          ) : (
            <ol class="timeline" role="listbox" aria-label="timeline" data-testid="timeline">
              {points.map((p, i) => (
                <li
                  key={`${p.at}|${p.sequence}|${i}`}
                  role="option"
                  aria-selected={i === cursor}
                  class={`${i === cursor ? "sel" : ""}${p.bad ? " row-bad" : ""}`}
                  onClick={() => props.onCursor(i)}
                  onDblClick={() => props.onRestore(p)}
                >
                  <span class={`dot${p.snapshot ? " snap" : ""}`} aria-hidden="true" />
                  <span class="mono dim">{fmtTime(p.at)}</span>
                  <span class="trunc">{p.snapshot ? <strong>{p.label || "snapshot"}</strong> : p.label}</span>
                  <span class="mono dim fine tl-detail">{p.detail}</span>
                </li>
              ))}
            </ol>
          )}
          <p class="fine dim">
            {fromServer ? "Points from session storage." : "Points seen by this tab."} <kbd>r</kbd> restores the selected
            point (asks first).
          </p>
        </>
      )}
    </Panel>
  );
}
