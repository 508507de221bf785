// The live request log, newest first, filterable (`/`).

import { Component } from "preact";
import { useThrottledMemo } from "../hooks";
import { fmtDiem, fmtMs, fmtTime, fmtTokens, fmtUsd, shortId } from "../format";
import { matches, parseFilter } from "../filter";
import type { Store } from "../store";
import type { RequestRecord } from "../types";
import { Empty, Panel, freshness } from "../ui";

/** Rows rendered; the filter searches the whole log (1000). */
const SHOWN = 100;
/** Under a burst of updates the log is redrawn at most this often. */
const LOG_REDRAW_MS = 400;

export function RequestsPanel(props: { store: Store; now: number; filter: string; onFilter: (f: string) => void }) {
  const { store, now, filter } = props;
  const { rows, total } = useThrottledMemo(
    () => {
      const terms = parseFilter(filter);
      const out: RequestRecord[] = [];
      for (let i = store.log.length - 1; i >= 0 && out.length < SHOWN; i--) {
        if (matches(store.log[i], terms)) out.push(store.log[i]);
      }
      return { rows: out, total: store.log.length };
    },
    store.version,
    LOG_REDRAW_MS,
    [filter],
  );
  const fresh = freshness(store, store.updatedAt.usage ?? store.updatedAt.state, now);

  return (
    <Panel id="requests" hotkey="4" title="Requests" fresh={fresh} wide>
      <div class="filter-row">
        <input
          id="filter"
          type="search"
          placeholder="filter: model, session, status:429, outcome:, !ok, err   ( / )"
          value={filter}
          aria-label="filter the request log"
          onInput={(e) => props.onFilter((e.currentTarget as HTMLInputElement).value)}
        />
        <span class="dim fine" data-testid="request-count">
          {rows.length}
          {rows.length === SHOWN ? "+" : ""} of {total}
        </span>
      </div>
      {store.log.length === 0 ? (
        <Empty>No requests yet. Requests OpenCode sends through this gateway appear here as they finish.</Empty>
      ) : rows.length === 0 ? (
        <Empty>No request matches “{filter}”.</Empty>
      ) : (
        <div class="scroll">
          <table class="grid log" data-testid="request-log">
            <thead>
              <tr>
                <th class="c-time">Time</th>
                <th>Model</th>
                <th class="c-session narrow-hide">Session</th>
                <th class="c-status">Status</th>
                <th class="c-tok num">Tokens</th>
                <th class="c-cost num">Cost</th>
                <th class="c-lat num">Latency</th>
                <th class="c-lat num narrow-hide" title="time to first token (to the upstream's response header)">TTFT</th>
                <th class="c-att num" title="upstream attempts">Att</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <Row key={`${r.started_at}|${r.latency_ms}|${r.model}`} r={r} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Panel>
  );
}

/** A log row; records never change, so a row renders once. */
class Row extends Component<{ r: RequestRecord }> {
  shouldComponentUpdate(next: { r: RequestRecord }): boolean {
    return next.r !== this.props.r;
  }
  render() {
    return <RowView r={this.props.r} />;
  }
}

function RowView({ r }: { r: RequestRecord }) {
  const ok = r.outcome === "ok";
  const cost = r.cost ? (r.cost.usd ? fmtUsd(r.cost.usd) : r.cost.diem ? `${fmtDiem(r.cost.diem)} D` : "0") : "—";
  const title = [
    `${r.method} ${r.path}`,
    r.error ? `error: ${r.error.message}` : null,
    r.retries.length ? `retries: ${r.retries.join(", ")}` : null,
    r.queue_wait_ms > 5 ? `queued ${fmtMs(r.queue_wait_ms)}` : null,
    r.limited ? `refused: ${r.limited} limit` : null,
    r.cost_source ? `cost: ${r.cost_source}` : null,
  ]
    .filter(Boolean)
    .join("\n");
  return (
    <tr class={ok ? "" : "row-bad"} title={title}>
      <td class="mono dim">{fmtTime(r.started_at)}</td>
      <td class="trunc" title={r.model ?? "unknown"}>
        {r.model ?? <span class="dim">{r.path}</span>}
      </td>
      <td class="trunc narrow-hide dim" title={r.session_id ?? ""}>
        {r.session_id ? shortId(r.session_id, 26) : "—"}
      </td>
      <td>
        <span class={`status ${ok ? "ok" : "bad"}`}>{r.status ?? "—"}</span>
        {!ok && <span class="outcome"> {r.outcome.replace(/_/g, " ")}</span>}
        {r.streamed && <span class="dim" title="streamed"> ⇣</span>}
      </td>
      <td class="num mono" title={r.usage ? `${r.usage.prompt_tokens} in · ${r.usage.completion_tokens} out` : ""}>
        {r.usage ? fmtTokens(r.usage.total_tokens) : "—"}
      </td>
      <td class="num mono">{cost}</td>
      <td class="num mono">{fmtMs(r.latency_ms)}</td>
      <td class="num mono narrow-hide">{fmtMs(r.ttfb_ms)}</td>
      <td class={`num mono${r.attempts > 1 ? " warn-text" : ""}`}>{r.attempts}</td>
    </tr>
  );
}
