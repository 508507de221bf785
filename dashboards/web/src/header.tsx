// The top bar (connection, upstream health, plugin, OpenCode link and session store pills, Diem
// reset countdown, sequence) and the banner shown while the gateway is unreachable.

import { fmtAge, fmtClock, fmtTime } from "./format";
import { nextUtcMidnight } from "./projection";
import { RETRY_MS } from "./rpc";
import type { Store } from "./store";
import { linkLabel } from "./opencode";
import type { PluginStatus, StoreHealth } from "./types";

export function connLabel(store: Store): { text: string; tone: string } {
  const c = store.conn;
  switch (c.status) {
    case "connected":
      return { text: "Connected", tone: "ok" };
    case "connecting":
      return { text: "Connecting…", tone: "warn" };
    case "reconnecting":
      return { text: `Reconnecting… (attempt ${c.attempts + 1})`, tone: "warn" };
    case "disconnected": {
      const left = c.nextRetryAt ? Math.min(RETRY_MS / 1000, Math.max(0, Math.ceil((c.nextRetryAt - Date.now()) / 1000))) : RETRY_MS / 1000;
      return { text: `Disconnected · retry in ${left}s`, tone: "bad" };
    }
  }
}

/** The OpenCode plugin's pill: absent until it spoke, "silent" while the alert fires. */
export function pluginLabel(plugin: PluginStatus | undefined, now: number): { text: string; tone: string; title: string } {
  if (!plugin || (plugin.events === 0 && plugin.starts === 0)) {
    return { text: "no plugin", tone: "dim", title: "no OpenCode plugin event yet (sidepanel install wires it)" };
  }
  const version = plugin.version ? ` ${plugin.version}` : "";
  const last = plugin.last_event_at != null ? `last event ${fmtAge(Math.max(0, now - plugin.last_event_at))} ago` : "no event yet";
  if (plugin.silent) {
    return { text: `plugin silent`, tone: "bad", title: `OpenCode traffic continues but the plugin${version} sends no events; ${last}` };
  }
  return { text: `plugin${version}`, tone: "ok", title: `${plugin.events} events in ${plugin.batches} posts; ${last}` };
}

/** Why the store fails, short: its error without the `session store <path>: ` prefix. */
export function storeReason(error: string | null): string {
  if (!error) return "unknown error";
  const short = error.startsWith("session store") && error.includes(": ") ? error.slice(error.indexOf(": ") + 2) : error;
  return short.length > 48 ? `${short.slice(0, 47)}…` : short;
}

/** The session store's pill: `null` (hidden) while it is ok or disabled. */
export function storeLabel(store: StoreHealth | undefined): { text: string; tone: string; title: string } | null {
  if (!store || store.status === "ok") return null;
  const lag = `oldest unsaved update ${fmtAge(store.lag_ms)} old when reported`;
  const saved = `saved up to #${store.committed}`;
  switch (store.status) {
    case "behind":
      return { text: "store behind", tone: "warn", title: `session store is slow to write: ${lag}; ${saved}` };
    case "failing": {
      const since = store.failing_since != null ? ` since ${fmtTime(store.failing_since)}` : "";
      const count = `${store.failures} failed ${store.failures === 1 ? "commit" : "commits"}`;
      return {
        text: `store failing: ${storeReason(store.error)}`,
        tone: "bad",
        title: `session store cannot write${since}: ${store.error ?? "unknown error"}; ${count}; ${lag}; ${saved}. Updates wait in memory and are retried; the proxy is not affected.`,
      };
    }
    case "stopped":
      return { text: "store stopped", tone: "bad", title: `session store writer is not running (restarting); ${saved}` };
  }
}

export function Header({ store, now, onHelp }: { store: Store; now: number; onHelp: () => void }) {
  const conn = connLabel(store);
  const up = store.state?.upstream;
  const upTone = up?.status === "ok" ? "ok" : up?.status === "degraded" ? "warn" : up?.status === "unavailable" ? "bad" : "dim";
  return (
    <header class="top">
      <div class="brand">
        <span class="logo" aria-hidden="true" />
        sidepanel
      </div>
      <span class={`pill ${conn.tone}`} data-testid="conn-status" data-status={store.conn.status} role="status" aria-live="polite">
        <span class="led" />
        {conn.text}
      </span>
      {up && (
        <span class={`pill ${upTone}`} title={up.last_error ? `last error: ${up.last_error}` : "Venice upstream health"} data-testid="upstream">
          Venice {up.status}
        </span>
      )}
      {(() => {
        const plugin = pluginLabel(store.state?.plugin, now);
        return (
          <span class={`pill ${plugin.tone}`} title={plugin.title} data-testid="plugin-status">
            {plugin.text}
          </span>
        );
      })()}
      {(() => {
        const link = linkLabel(store.state?.opencode_link);
        return link ? (
          <span class={`pill ${link.tone}`} title={link.title} data-testid="opencode-link">
            {link.text}
          </span>
        ) : null;
      })()}
      {(() => {
        const st = storeLabel(store.state?.store);
        return st ? (
          <span class={`pill ${st.tone}`} title={st.title} data-testid="store-status" data-status={store.state?.store?.status}>
            {st.text}
          </span>
        ) : null;
      })()}
      <span class="spacer" />
      <span class="top-item" title="time until Venice resets the daily Diem allocation (00:00 UTC)">
        <span class="dim">reset</span> <span class="mono">{fmtClock(nextUtcMidnight(now) - now)}</span>
      </span>
      <span class="top-item narrow-hide dim mono" title="sequence of the last update applied" data-testid="sequence">
        #{store.sequence}
      </span>
      <button class="icon" onClick={onHelp} title="keyboard shortcuts (?)" aria-label="keyboard shortcuts">
        ?
      </button>
    </header>
  );
}

export function ConnBanner({ store, now }: { store: Store; now: number }) {
  const c = store.conn;
  if (c.status === "connected" || (c.status === "connecting" && c.attempts === 0)) return null;
  const last = c.lastMessageAt;
  return (
    <div class="banner warn" role="alert" data-testid="conn-banner">
      <strong>{c.status === "reconnecting" ? "Reconnecting to the gateway…" : "Disconnected from the gateway."}</strong>{" "}
      Retrying every {RETRY_MS / 1000} s{c.attempts ? ` (${c.attempts} failed)` : ""}.{" "}
      {last != null ? `Data shown is from ${fmtTime(last)} (${fmtAge(now - last)} old).` : "No data yet."}
      {c.error ? <span class="dim"> {c.error}</span> : null}
    </div>
  );
}
