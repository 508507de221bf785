// OpenCode sessions: totals per session (requests carry `x-session-id`) and, when the plugin's
// events arrive, their messages and tool calls. j/k select; Enter opens the timeline.

import { fmtAge, fmtDiem, fmtTokens, fmtUsd, shortId } from "../format";
import type { Store } from "../store";
import type { OcTokens, SessionUsage } from "../types";
import { Empty, Panel, freshness } from "../ui";

export interface SessionRow {
  id: string;
  usage: SessionUsage | null;
  info: Record<string, unknown> | null;
  lastActive: number;
}

/** Sessions, most recently active first: those with usage and those only known from events. */
export function sessionRows(store: Store): SessionRow[] {
  const s = store.state;
  if (!s) return [];
  const ids = new Set([...Object.keys(s.sessions), ...Object.keys(store.sessionInfo)]);
  const rows = [...ids].map((id) => {
    const usage = s.sessions[id] ?? null;
    const info = store.sessionInfo[id] ?? null;
    const infoTime = Number(usage?.opencode?.last_event_at ?? info?.updated_at ?? info?.time ?? 0) || 0;
    return { id, usage, info, lastActive: Math.max(usage?.last_active ?? 0, infoTime) };
  });
  return rows.sort((a, b) => b.lastActive - a.lastActive || a.id.localeCompare(b.id));
}

/** OpenCode's total for its tokens: its own `total` when sent, else the sum of the kinds. */
export function ocTotal(t: OcTokens): number {
  return t.total ?? t.input + t.output + t.reasoning + t.cache_read + t.cache_write;
}

function count(info: Record<string, unknown> | null, ...keys: string[]): number | null {
  if (!info) return null;
  for (const k of keys) {
    const v = info[k];
    if (typeof v === "number") return v;
    if (Array.isArray(v)) return v.length;
  }
  return null;
}

export function SessionsPanel(props: { store: Store; now: number; selected: string | null; onSelect: (id: string, open: boolean) => void }) {
  const { store, now, selected } = props;
  const rows = sessionRows(store);
  const fresh = freshness(store, store.updatedAt.usage ?? store.updatedAt.session ?? store.updatedAt.state, now);
  return (
    <Panel id="sessions" hotkey="5" title="Sessions" fresh={fresh}>
      {rows.length === 0 ? (
        <Empty>
          No OpenCode sessions yet. Sessions appear when OpenCode sends requests with its <code>x-session-id</code>{" "}
          header or its plugin posts events (<code>sidepanel install</code> wires both).
        </Empty>
      ) : (
        <ul class="list" role="listbox" aria-label="sessions" data-testid="sessions">
          {rows.map((r) => {
            const u = r.usage;
            const oc = u?.opencode?.seen ? u.opencode : null;
            const msgs = oc ? oc.messages.user + oc.messages.assistant : count(r.info, "messages", "message_count");
            const tools = oc ? oc.tool_calls : count(r.info, "tool_calls", "tools", "tool_count");
            const title = oc?.title ?? (typeof r.info?.title === "string" ? r.info.title : null);
            const models = u ? Object.keys(u.models ?? {}) : [];
            return (
              <li
                key={r.id}
                role="option"
                aria-selected={r.id === selected}
                class={r.id === selected ? "sel" : ""}
                data-session={r.id}
                onClick={() => props.onSelect(r.id, false)}
                onDblClick={() => props.onSelect(r.id, true)}
              >
                <div class="li-main">
                  <span class="trunc strong" title={r.id}>
                    {title ?? shortId(r.id, 28)}
                  </span>
                  <span class="dim fine">{r.lastActive ? (now - r.lastActive < 1000 ? "just now" : `${fmtAge(now - r.lastActive)} ago`) : ""}</span>
                </div>
                <div class="li-sub mono">
                  {u ? (
                    <>
                      <span data-testid="session-tokens">{fmtTokens(u.total_tokens)} tok</span> · {u.requests} req
                      {u.errors ? <span class="bad-text"> · {u.errors} failed</span> : null} · {fmtUsd(u.cost_usd)} ·{" "}
                      {fmtDiem(u.cost_diem)} D
                    </>
                  ) : (
                    <span class="dim">no proxied requests</span>
                  )}
                  {msgs != null && <> · {msgs} msg</>}
                  {tools != null && (
                    <>
                      {" "}
                      · {tools} tool calls{oc?.tool_errors ? <span class="bad-text"> ({oc.tool_errors} failed)</span> : null}
                    </>
                  )}
                </div>
                {oc && (oc.status || oc.files_edited.length > 0 || oc.title_calls > 0 || oc.last_error) && (
                  <div class="li-sub">
                    {oc.status && <span class={`pill small ${oc.status === "error" ? "bad" : oc.status === "busy" ? "warn" : "dim"}`}>{oc.status}</span>}
                    {oc.files_edited.length > 0 && (
                      <span title={oc.files_edited.join("\n")}> · {oc.files_edited.length} files edited (last {oc.files_edited[oc.files_edited.length - 1].split("/").pop()})</span>
                    )}
                    {oc.title_calls > 0 && <span title="session-title calls, which OpenCode does not count"> · {oc.title_calls} title calls</span>}
                    {oc.last_error && <span class="bad-text" title={oc.last_error}> · error</span>}
                  </div>
                )}
                {oc?.tokens && (oc.cost != null || oc.uncounted) && (
                  <div class="li-sub mono dim" data-testid="session-opencode" title="what OpenCode itself counted, and the proxied calls it does not count">
                    OpenCode: {fmtTokens(ocTotal(oc.tokens))} tok · {fmtUsd(oc.cost ?? 0)}
                    {oc.uncounted && oc.uncounted.requests > 0 ? (
                      <>
                        {" "}
                        · not counted by OpenCode: {oc.uncounted.requests} req, {fmtTokens(oc.uncounted.total_tokens)} tok,{" "}
                        {fmtUsd(oc.uncounted.cost_usd)}
                      </>
                    ) : null}
                  </div>
                )}
                {models.length > 0 && (
                  <div class="chips">
                    {models.map((m) => (
                      <span class="chip small" key={m}>
                        {m}
                      </span>
                    ))}
                  </div>
                )}
              </li>
            );
          })}
        </ul>
      )}
    </Panel>
  );
}
