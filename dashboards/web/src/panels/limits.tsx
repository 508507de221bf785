// Rate limits per model (remaining / limit, reset countdown) and admission activity: queue
// depth, admitted and refused requests, retries and the gateway's own rejections.

import { fmtDuration, fmtMs, fmtTokens } from "../format";
import { remaining } from "../projection";
import type { Store } from "../store";
import type { LimitWindow } from "../types";
import { Bar, Empty, Panel, Stat, freshness } from "../ui";

export function LimitsPanel({ store, now }: { store: Store; now: number }) {
  const s = store.state;
  const limits = s ? Object.entries(s.rate_limits) : [];
  const gates = s?.admission?.models ?? {};
  const newest = limits.reduce((m, [, l]) => Math.max(m, l.observed_at ?? 0), 0) || null;
  const fresh = freshness(store, newest, now, s?.upstream.status === "unavailable" ? "Venice is unavailable" : null);

  // Activity from the requests this tab has seen.
  let retried = 0;
  let retries = 0;
  let rejected = 0;
  let waited = 0;
  let waitMs = 0;
  for (const r of store.log) {
    if (r.retries.length > 0 || r.attempts > 1) retried++;
    retries += r.retries.length;
    if (r.outcome === "rejected" || r.limited) rejected++;
    if (r.queue_wait_ms > 5) {
      waited++;
      waitMs += r.queue_wait_ms;
    }
  }
  const gateList = Object.values(gates);
  const queue = gateList.reduce((n, g) => n + g.waiting, 0);
  const refused = gateList.reduce((n, g) => n + g.refused, 0);
  const models = [...new Set([...limits.map(([m]) => m), ...Object.keys(gates)])].sort();

  return (
    <Panel id="limits" hotkey="3" title="Rate limits & queue" fresh={fresh}>
      {!s ? (
        <Empty>Waiting for the gateway…</Empty>
      ) : (
        <>
          <div class="stats">
            <Stat label="Queued now" value={<span data-testid="queue-depth">{s.admission ? queue : "—"}</span>} sub={s.admission ? "all models" : "no admission data"} tone={queue > 0 ? "warn" : undefined} />
            <Stat label="Retried" value={retried} sub={`${retries} retries`} tone={retried ? "warn" : undefined} />
            <Stat label="Rejected" value={<span data-testid="rejected">{Math.max(rejected, refused)}</span>} sub="by the gateway" tone={rejected || refused ? "bad" : undefined} />
            <Stat label="Waited" value={waited} sub={waited ? `avg ${fmtMs(waitMs / waited)}` : "no queueing"} />
          </div>
          {models.length === 0 ? (
            <Empty>No rate-limit headers seen yet; they come with each Venice response.</Empty>
          ) : (
            <div class="tablewrap">
            <table class="grid limits">
              <thead>
                <tr>
                  <th>Model</th>
                  <th>Requests</th>
                  <th>Tokens</th>
                  <th class="num">Reset</th>
                  <th class="num narrow-hide" title="waiting now · refused, at the gateway">Queue</th>
                </tr>
              </thead>
              <tbody>
                {models.map((m) => {
                  const l = s.rate_limits[m];
                  const g = gates[m];
                  const reset = Math.max(remaining(l?.requests.reset_at, now) ?? 0, remaining(l?.tokens.reset_at, now) ?? 0);
                  const held = g?.held_until != null && g.held_until > now;
                  return (
                    <tr key={m} data-model={m}>
                      <td class="trunc" title={`${m}${l?.limit_type ? ` (${l.limit_type} limit)` : ""}`}>
                        {m}
                      </td>
                      <td>
                        <Window w={l?.requests} fallback={g?.rpm} />
                      </td>
                      <td>
                        <Window w={l?.tokens} fallback={g?.tpm} />
                      </td>
                      <td class="num mono">{l ? fmtDuration(reset) : "—"}</td>
                      <td class="num narrow-hide mono" title={g ? `${g.waiting} waiting, ${g.admitted} admitted, ${g.refused} refused${held ? `; held for the ${g.held_for} limit` : ""}` : undefined}>
                        {g ? `${g.waiting} · ${g.refused}` : "—"}
                        {held && <span class="warn-text"> held</span>}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
            </div>
          )}
        </>
      )}
    </Panel>
  );
}

function Window({ w, fallback }: { w: LimitWindow | undefined; fallback: number | undefined }) {
  if (!w || (w.limit == null && w.remaining == null)) {
    return <span class="dim">{fallback != null ? `limit ${fmtTokens(fallback)}` : "—"}</span>;
  }
  return (
    <span class="window">
      <Bar value={w.remaining} max={w.limit} />
      <span class="mono">
        {fmtTokens(w.remaining)}/{fmtTokens(w.limit)}
      </span>
    </span>
  );
}
