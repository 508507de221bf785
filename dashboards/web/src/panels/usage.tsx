// Tokens and cost: totals, the tokens/min chart by model or kind, and the per-model table.

import { useMemo } from "preact/hooks";
import { TokenChart } from "../chart";
import { fmtDiem, fmtTokens, fmtUsd } from "../format";
import type { Grouping } from "../series";
import { tokensPerMinute } from "../series";
import type { Store } from "../store";
import { Empty, Panel, Stat, freshness } from "../ui";

export function UsagePanel(props: { store: Store; now: number; grouping: Grouping; themeKey: string; onGrouping: (g: Grouping) => void }) {
  const { store, now, grouping } = props;
  const s = store.state;
  const second = Math.floor(now / 1000);
  // Recomputed once a second (the window slides, new points move in), not on every update: under
  // a burst of updates the chart costs one redraw a second.
  // The window grows with the data this tab has, from 3 to 15 minutes.
  const oldest = store.tokenEvents[0]?.t ?? now;
  const spanMin = Math.min(15, Math.max(3, Math.ceil((now - oldest) / 60_000) + 1));
  const series = useMemo(
    () => tokensPerMinute(store.tokenEvents, second * 1000, grouping, spanMin * 60_000),
    [second, grouping, spanMin, store.tokenEvents.length > 0],
  );
  const fresh = freshness(store, store.updatedAt.usage ?? store.updatedAt.state, now);
  const today = store.today(now);
  const t = s?.totals;
  const models = s ? Object.entries(s.models).sort((a, b) => b[1].total_tokens - a[1].total_tokens) : [];
  const anyTokens = series.lines.some((l) => l.ys.some((y) => y > 0));

  return (
    <Panel
      id="usage"
      hotkey="2"
      title="Tokens & cost"
      fresh={fresh}
      wide
      extra={
        <button
          class="chip"
          title="chart by model or by token kind (m)"
          onClick={() => props.onGrouping(grouping === "model" ? "kind" : "model")}
        >
          by {grouping} <kbd>m</kbd>
        </button>
      }
    >
      {!s || !t ? (
        <Empty>Waiting for the gateway…</Empty>
      ) : (
        <>
          <div class="stats">
            <Stat
              label="Tokens"
              value={<span data-testid="total-tokens" data-value={t.total_tokens}>{fmtTokens(t.total_tokens)}</span>}
              sub={`${fmtTokens(t.prompt_tokens)} in · ${fmtTokens(t.completion_tokens)} out`}
            />
            <Stat
              label="Requests"
              value={<span data-testid="total-requests" data-value={t.requests}>{fmtTokens(t.requests)}</span>}
              sub={t.errors ? `${t.errors} failed` : "none failed"}
              tone={t.errors ? "warn" : undefined}
            />
            <Stat
              label="Cost today (UTC)"
              value={
                <span data-testid="cost-usd" data-value={today.cost_usd}>
                  {fmtUsd(today.cost_usd)}
                </span>
              }
              sub={
                <span data-testid="cost-diem" data-value={today.cost_diem}>
                  {fmtDiem(today.cost_diem)} Diem
                </span>
              }
            />
            <Stat
              label="Reasoning · cached"
              value={`${fmtTokens(t.reasoning_tokens)} · ${fmtTokens(t.cached_tokens)}`}
              sub={`${fmtTokens(t.cache_creation_tokens)} cache writes`}
            />
          </div>
          <div class="chart-wrap">
            <div class="chart-title dim">
              tokens / min (rolling 60 s), last {spanMin} min, by {grouping}
            </div>
            <TokenChart series={series} themeKey={props.themeKey} />
            {!anyTokens && <div class="chart-empty">No tokens in the last {spanMin} minutes.</div>}
          </div>
          {models.length === 0 ? (
            <Empty>No requests yet. Point OpenCode's Venice provider at this gateway's /api/v1.</Empty>
          ) : (
            <div class="tablewrap">
            <table class="grid">
              <thead>
                <tr>
                  <th>Model</th>
                  <th class="num">Req</th>
                  <th class="num">Tokens</th>
                  <th class="num narrow-hide">In / out</th>
                  <th class="num">USD</th>
                  <th class="num">Diem</th>
                </tr>
              </thead>
              <tbody>
                {models.map(([m, v]) => (
                  <tr key={m}>
                    <td class="trunc" title={m}>
                      {m}
                    </td>
                    <td class="num">
                      {v.requests}
                      {v.errors ? <span class="bad-text"> ({v.errors}✕)</span> : null}
                    </td>
                    <td class="num">{fmtTokens(v.total_tokens)}</td>
                    <td class="num narrow-hide">
                      {fmtTokens(v.prompt_tokens)} / {fmtTokens(v.completion_tokens)}
                    </td>
                    <td class="num">{fmtUsd(v.cost_usd)}</td>
                    <td class="num">{fmtDiem(v.cost_diem)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            </div>
          )}
        </>
      )}
    </Panel>
  );
}
