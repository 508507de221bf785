// Lean proof state per `.lean` file: diagnostics by severity with positions, goals (hypotheses
// and target), suggestions; the `@server` entry is the Lean server's own status.

import { useState } from "preact/hooks";
import { fmtAge } from "../format";
import { LEAN_UNAVAILABLE, RpcError } from "../rpc";
import type { Connection } from "../rpc";
import type { Store } from "../store";
import { SERVER_KEY } from "../types";
import type { Goal, GoalsAt, LeanServer, ProofState, ServerEntry } from "../types";
import { Empty, Panel, freshness } from "../ui";

const SEV_ORDER: Record<string, number> = { error: 0, warning: 1, info: 2, hint: 3 };

export function ProofPanel({ store, conn, now }: { store: Store; conn: Connection; now: number }) {
  const proof = store.state?.proof ?? {};
  const serverEntry = proof[SERVER_KEY] as ServerEntry | undefined;
  const files = Object.entries(proof)
    .filter(([k]) => k !== SERVER_KEY)
    .map(([, v]) => v as ProofState)
    .filter((v) => v && typeof v === "object" && "diagnostics" in v)
    .sort((a, b) => b.updated_at - a.updated_at);
  const server: LeanServer | undefined = files[0]?.server && files[0].updated_at > (serverEntry?.updated_at ?? 0) ? files[0].server : serverEntry?.server;
  const serverDown = server != null && server.status !== "ready" && server.status !== "starting";
  const newest = Math.max(serverEntry?.updated_at ?? 0, files[0]?.updated_at ?? 0) || null;
  const fresh = freshness(store, newest, now, serverDown && files.length > 0 ? `Lean server ${server!.status}` : null);

  return (
    <Panel id="proof" hotkey="7" title="Proof (Lean)" fresh={fresh}>
      <ServerLine server={server} now={now} />
      {files.length === 0 ? (
        <Empty>
          {server == null || server.status === "disabled"
            ? "Lean is not configured ([lean] in the config). Proof state appears here for the .lean file being edited."
            : server.status === "unavailable"
              ? "Lean is not available on this machine, so no proof state yet. Install lean-lsp-mcp or set [lean] command."
              : "No .lean file checked yet. Edit one in OpenCode, or check one below (l)."}
        </Empty>
      ) : (
        files.map((f, i) => <FileState key={f.file} f={f} now={now} open={i === 0} />)
      )}
      <CheckForm conn={conn} />
    </Panel>
  );
}

function ServerLine({ server, now }: { server: LeanServer | undefined; now: number }) {
  if (!server) return <div class="lean-server dim">Lean server: no status reported.</div>;
  const tone = server.status === "ready" ? "ok" : server.status === "starting" ? "warn" : "bad";
  return (
    <div class="lean-server" data-testid="lean-server">
      <span class={`pill ${tone}`}>{server.status}</span>{" "}
      <span class="mono">{server.name ? `${server.name} ${server.version ?? ""}` : server.command}</span>
      {server.pid != null && <span class="dim"> · pid {server.pid}</span>}
      {server.restarts > 0 && <span class="dim"> · {server.restarts} restarts</span>}
      <span class="dim"> · for {fmtAge(now - server.since)}</span>
      {server.error && <div class="fine bad-text">{server.error}</div>}
    </div>
  );
}

function FileState({ f, now, open }: { f: ProofState; now: number; open: boolean }) {
  const stale = f.status === "stale" || f.status === "disconnected";
  const diags = [...f.diagnostics].sort((a, b) => (SEV_ORDER[a.severity] ?? 9) - (SEV_ORDER[b.severity] ?? 9) || a.line - b.line || a.column - b.column);
  const c = f.counts;
  return (
    <details class="lean-file" open={open} data-file={f.file}>
      <summary>
        <span class="trunc mono strong" title={f.file}>
          {f.file.split("/").pop()}
        </span>
        <span class={`pill ${f.status === "complete" ? (f.success ? "ok" : "bad") : stale || f.status === "error" ? "bad" : "warn"}`}>
          {f.status === "complete" ? (f.success ? "proved" : "errors") : f.status}
        </span>
        <span class="fine mono">
          <span class="sev-error">{c.errors}E</span> <span class="sev-warning">{c.warnings}W</span>{" "}
          <span class="sev-info">{c.infos + c.hints}I</span>
        </span>
        {stale && <span class="badge stale">stale · {fmtAge(now - (f.checked_at ?? f.updated_at))}</span>}
        <span class="dim fine">v{f.version}</span>
      </summary>
      {f.error && (
        <div class="notice bad fine">
          {f.error.kind} error: {f.error.message}
        </div>
      )}
      {diags.length > 0 && (
        <ul class="diags">
          {diags.map((d, i) => (
            <li key={i} class={`sev-${d.severity}`}>
              <span class="mono pos">
                {d.line}:{d.column}
              </span>
              <span class="sev">{d.severity}</span>
              <pre class="msg">{d.message}</pre>
            </li>
          ))}
        </ul>
      )}
      {f.goals.map((g, i) => (
        <GoalBlock key={i} at={g} />
      ))}
      {f.suggestions.length > 0 && (
        <div class="suggestions">
          <div class="sub-h">Suggestions</div>
          {f.suggestions.map((s, i) => (
            <div key={i} class="suggestion">
              <span class="mono pos">
                {s.line}
                {s.column != null ? `:${s.column}` : ""}
              </span>{" "}
              {s.preferred && <span class="pill ok">preferred</span>} <span>{s.title}</span>
              {s.text && s.text !== s.title && <pre class="code">{s.text}</pre>}
            </div>
          ))}
        </div>
      )}
      {f.still_elaborating_lines.length > 0 && (
        <div class="fine dim">Still elaborating lines {f.still_elaborating_lines.map(([a, b]) => `${a}–${b}`).join(", ")}.</div>
      )}
    </details>
  );
}

function GoalBlock({ at }: { at: GoalsAt }) {
  const after = at.goals_after;
  return (
    <div class="goals">
      <div class="sub-h">
        {at.reason === "unsolved_goals" ? "Unsolved goals" : "Goals at cursor"} · <span class="mono">
          {at.line}
          {at.column != null ? `:${at.column}` : ""}
        </span>
        {at.status && at.status !== "goals" && <span class="dim"> · {at.status.replace(/_/g, " ")}</span>}
      </div>
      {at.line_context && <pre class="code dim">{at.line_context}</pre>}
      {at.goals.length === 0 && !after ? <div class="fine dim">no goals{at.error ? ` (${at.error})` : ""}</div> : null}
      {at.goals.map((g, i) => (
        <GoalView key={i} g={g} />
      ))}
      {after && after.length > 0 && (
        <>
          <div class="fine dim">after this line:</div>
          {after.map((g, i) => (
            <GoalView key={`a${i}`} g={g} />
          ))}
        </>
      )}
    </div>
  );
}

function GoalView({ g }: { g: Goal }) {
  return (
    <div class="goal mono">
      {g.case && <div class="case">case {g.case}</div>}
      {g.hypotheses.map((h, i) => (
        <div key={i} class="hyp">
          <span class="names">{h.names.join(" ")}</span> : {h.type}
        </div>
      ))}
      <div class="target">⊢ {g.target}</div>
    </div>
  );
}

function CheckForm({ conn }: { conn: Connection }) {
  const [msg, setMsg] = useState<string | null>(null);
  return (
    <form
      class="lean-check"
      onSubmit={async (e) => {
        e.preventDefault();
        const f = e.currentTarget as HTMLFormElement;
        const file = (f.elements.namedItem("file") as HTMLInputElement).value.trim();
        const lineText = (f.elements.namedItem("line") as HTMLInputElement).value.trim();
        if (!file) return setMsg("Enter the path of a .lean file.");
        const params: Record<string, unknown> = { file };
        if (lineText) params.line = Number(lineText);
        try {
          await conn.call("lean.check", params);
          setMsg(`Check of ${file} requested.`);
        } catch (err) {
          const e2 = err as Error;
          setMsg(e2 instanceof RpcError && e2.code === LEAN_UNAVAILABLE ? "Lean is not available in this gateway." : `lean.check failed: ${e2.message}`);
        }
      }}
    >
      <input id="lean-file" name="file" placeholder="check a .lean file (l)" aria-label=".lean file to check" />
      <input name="line" class="line" inputMode="numeric" placeholder="line" aria-label="line" />
      <button type="submit">Check</button>
      {msg && <span class="fine dim">{msg}</span>}
    </form>
  );
}
