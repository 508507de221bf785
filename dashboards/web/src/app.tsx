// The page: header, banners, the seven panels, the help overlay and the restore confirmation.
// Owns the keyboard: every action has a key (listed by `?`), and focus is always visible.

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { fmtTime, shortId } from "./format";
import { ConnBanner, Header } from "./header";
import { useNow, useStore, useThrottledMemo } from "./hooks";
import { PANELS, SHORTCUTS, inField } from "./keys";
import { revertText } from "./opencode";
import { AlertBanner, BalancePanel } from "./panels/balance";
import { LimitsPanel } from "./panels/limits";
import { ProofPanel } from "./panels/proof";
import { RequestsPanel } from "./panels/requests";
import { SessionsPanel, sessionRows } from "./panels/sessions";
import { TimelinePanel, timelinePoints, useTimeline } from "./panels/timeline";
import type { Point } from "./panels/timeline";
import { UsagePanel } from "./panels/usage";
import { applyTheme, loadPrefs, savePrefs } from "./prefs";
import type { Prefs, Theme } from "./prefs";
import { NOT_AVAILABLE, RpcError } from "./rpc";
import type { Connection } from "./rpc";
import type { Store } from "./store";
import type { RevertOutcome } from "./types";

const THEMES: Theme[] = ["system", "dark", "light"];

function systemDark(): boolean {
  return typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches;
}

function focusPanel(id: string): void {
  const el = document.getElementById(`panel-${id}`);
  if (!el) return;
  el.focus({ preventScroll: true });
  el.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function focusField(id: string): void {
  const el = document.getElementById(id) as HTMLInputElement | null;
  if (!el) return;
  el.focus();
  el.select?.();
}

export function App({ store, conn }: { store: Store; conn: Connection }) {
  useStore(store);
  const now = useNow(1000);
  const [prefs, setPrefs] = useState<Prefs>(loadPrefs);
  const [help, setHelp] = useState(false);
  const [cursor, setCursor] = useState(0);
  const [confirm, setConfirm] = useState<Point | null>(null);
  const [restoreMsg, setRestoreMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [dark, setDark] = useState(systemDark);
  const confirmBtn = useRef<HTMLButtonElement>(null);
  const helpBox = useRef<HTMLDivElement>(null);

  const update = (patch: Partial<Prefs>) =>
    setPrefs((p) => {
      const next = { ...p, ...patch };
      savePrefs(next);
      return next;
    });

  useEffect(() => applyTheme(prefs.theme), [prefs.theme]);
  useEffect(() => {
    if (typeof matchMedia !== "function") return;
    const mq = matchMedia("(prefers-color-scheme: dark)");
    const on = () => setDark(mq.matches);
    mq.addEventListener("change", on);
    return () => mq.removeEventListener("change", on);
  }, []);
  const themeKey = prefs.theme === "system" ? (dark ? "dark" : "light") : prefs.theme;

  const sessions = sessionRows(store);
  const selected = prefs.selectedSession && sessions.some((s) => s.id === prefs.selectedSession) ? prefs.selectedSession : (sessions[0]?.id ?? null);
  const tl = useTimeline(conn, selected, store.conn.status === "connected", store.version);
  const points = useThrottledMemo(() => timelinePoints(store, selected, tl), store.version, 400, [selected, tl]);
  const cur = Math.min(cursor, Math.max(0, points.length - 1));

  useEffect(() => {
    setCursor(0);
    setRestoreMsg(null);
  }, [selected]);
  // Focused before the dialog is painted: an Enter pressed as soon as it shows confirms.
  useLayoutEffect(() => {
    if (confirm) confirmBtn.current?.focus();
  }, [confirm]);
  useEffect(() => {
    if (help) helpBox.current?.focus();
  }, [help]);

  async function restore(p: Point) {
    setConfirm(null);
    if (!selected) return;
    // `restore` takes exactly one of `snapshotId` and `sequence`; it restores the whole state.
    let params: Record<string, unknown>;
    if (p.snapshotId != null) params = { snapshotId: p.snapshotId };
    else if (p.sequence != null) params = { sequence: p.sequence };
    else {
      setRestoreMsg({ ok: false, text: "This request arrived with the tab's first state, so its sequence is unknown: pick a later point." });
      return;
    }
    try {
      const result = (await conn.call("restore", params)) as { revert?: RevertOutcome | null } | null;
      const restored = `Restored ${shortId(selected, 24)} to ${fmtTime(p.at)}; every open tab follows.`;
      const revert = revertText(result?.revert ?? null);
      setRestoreMsg({ ok: revert?.ok ?? true, text: revert ? `${restored} ${revert.text}` : restored });
    } catch (e) {
      const err = e as Error;
      if (err instanceof RpcError && err.code === NOT_AVAILABLE) {
        setRestoreMsg({ ok: false, text: `Restore is not available yet: the gateway has no session storage (“${err.message}”).` });
      } else {
        setRestoreMsg({ ok: false, text: `Restore failed: ${err.message}` });
      }
    }
    focusPanel("timeline");
  }

  function selectSession(delta: number) {
    if (sessions.length === 0) return;
    const i = Math.max(0, sessions.findIndex((s) => s.id === selected));
    const next = sessions[Math.min(sessions.length - 1, Math.max(0, i + delta))];
    update({ selectedSession: next.id });
    requestAnimationFrame(() => document.querySelector(`[data-session="${CSS.escape(next.id)}"]`)?.scrollIntoView({ block: "nearest" }));
  }

  // The keyboard. Read through a ref so the handler always sees the current render's values.
  const keyState = useRef({ help, confirm, points, cur, prefs, selected, selectSession });
  keyState.current = { help, confirm, points, cur, prefs, selected, selectSession };
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const k = keyState.current;
      if (e.key === "Escape") {
        if (k.help) setHelp(false);
        else if (k.confirm) setConfirm(null);
        else if (inField(e.target)) (e.target as HTMLElement).blur();
        return;
      }
      if (k.confirm) return; // the dialog's buttons take Enter; Esc cancels
      if (k.help) {
        if (e.key === "?") setHelp(false);
        return;
      }
      if (inField(e.target)) return;
      const panel = (document.activeElement as HTMLElement | null)?.closest?.("[data-panel]")?.getAttribute("data-panel") ?? null;
      const panelByKey = PANELS.find((p) => p.key === e.key);
      if (panelByKey) {
        focusPanel(panelByKey.id);
        e.preventDefault();
        return;
      }
      const down = e.key === "j" || (e.key === "ArrowDown" && (panel === "sessions" || panel === "timeline"));
      const up = e.key === "k" || (e.key === "ArrowUp" && (panel === "sessions" || panel === "timeline"));
      if (down || up) {
        e.preventDefault();
        if (panel === "timeline") {
          const n = Math.min(Math.max(0, k.points.length - 1), Math.max(0, k.cur + (down ? 1 : -1)));
          setCursor(n);
          requestAnimationFrame(() => document.querySelector("#panel-timeline li.sel")?.scrollIntoView({ block: "nearest" }));
        } else {
          k.selectSession(down ? 1 : -1);
        }
        return;
      }
      switch (e.key) {
        case "?":
          setHelp(true);
          break;
        case "/":
          focusField("filter");
          break;
        case "a":
          focusField("alert-diem");
          break;
        case "u":
          focusField("alert-usd");
          break;
        case "l":
          focusField("lean-file");
          break;
        case "m":
          update({ grouping: k.prefs.grouping === "model" ? "kind" : "model" });
          break;
        case "t":
          update({ theme: THEMES[(THEMES.indexOf(k.prefs.theme) + 1) % THEMES.length] });
          break;
        case "R":
          conn.reconnectNow();
          break;
        case "r":
          if (k.selected && k.points[k.cur]) setConfirm(k.points[k.cur]);
          else focusPanel("timeline");
          break;
        case "Enter":
          if (panel === "sessions" && k.selected) focusPanel("timeline");
          else if (panel === "timeline" && k.points[k.cur]) setConfirm(k.points[k.cur]);
          else return;
          break;
        default:
          return;
      }
      e.preventDefault();
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, []);

  return (
    <div class="app">
      <Header store={store} now={now} onHelp={() => setHelp(true)} />
      <ConnBanner store={store} now={now} />
      <AlertBanner store={store} />
      {store.gatewayAlert && (
        <div class="banner warn" role="alert" data-testid="gateway-alert">
          {store.gatewayAlert}
        </div>
      )}
      {store.notice && (
        <div class="banner ok" role="status">
          {store.notice}
        </div>
      )}
      <main class="panels">
        <BalancePanel store={store} conn={conn} now={now} />
        <UsagePanel store={store} now={now} grouping={prefs.grouping} themeKey={themeKey} onGrouping={(g) => update({ grouping: g })} />
        <LimitsPanel store={store} now={now} />
        <RequestsPanel store={store} now={now} filter={prefs.filter} onFilter={(f) => update({ filter: f })} />
        <SessionsPanel
          store={store}
          now={now}
          selected={selected}
          onSelect={(id, open) => {
            update({ selectedSession: id });
            if (open) focusPanel("timeline");
          }}
        />
        <TimelinePanel
          store={store}
          now={now}
          session={selected}
          tl={tl}
          points={points}
          cursor={cur}
          onCursor={setCursor}
          onRestore={(p) => setConfirm(p)}
          restoreMsg={restoreMsg}
        />
        <ProofPanel store={store} conn={conn} now={now} />
      </main>
      <footer class="foot dim fine">
        <span>
          <kbd>?</kbd> shortcuts · theme {prefs.theme} (<kbd>t</kbd>)
        </span>
        <a href="/metrics">metrics</a>
        <a href="/api/sidepanel/state">state JSON</a>
      </footer>
      {help && (
        <div class="overlay" onClick={() => setHelp(false)}>
          <div class="dialog" role="dialog" aria-modal="true" aria-labelledby="help-h" tabIndex={-1} ref={helpBox} onClick={(e) => e.stopPropagation()} data-testid="help">
            <h2 id="help-h">Keyboard shortcuts</h2>
            <table class="keys">
              <tbody>
                {SHORTCUTS.map((s) => (
                  <tr key={s.keys}>
                    <th>
                      <kbd>{s.keys}</kbd>
                    </th>
                    <td>{s.does}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <p class="fine dim">Preferences (theme, chart grouping, filter, selected session) stay in this browser's localStorage.</p>
            <button onClick={() => setHelp(false)}>Close (Esc)</button>
          </div>
        </div>
      )}
      {confirm && (
        <div class="overlay">
          <div class="dialog" role="alertdialog" aria-modal="true" aria-labelledby="confirm-h" data-testid="confirm">
            <h2 id="confirm-h">Restore session?</h2>
            <p>
              Restore <span class="mono">{selected ? shortId(selected, 28) : ""}</span> to <strong>{fmtTime(confirm.at)}</strong>
              {confirm.snapshotId != null ? ` (snapshot ${confirm.snapshotId})` : confirm.sequence != null ? ` (sequence ${confirm.sequence})` : ""}? The
              whole gateway state goes back to that point, and every open tab follows.
            </p>
            <div class="buttons">
              <button ref={confirmBtn} class="primary" onClick={() => void restore(confirm)} data-testid="confirm-restore">
                Restore (Enter)
              </button>
              <button onClick={() => setConfirm(null)}>Cancel (Esc)</button>
            </div>
          </div>
        </div>
      )}
    </div>
  );
}
