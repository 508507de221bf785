// Balance: Diem and USD, the countdown to the 00:00 UTC Diem reset, the projection at the
// current spend rate, and the alert thresholds (setAlert).

import { useState } from "preact/hooks";
import { fmtClock, fmtDiem, fmtDuration, fmtRate, fmtTime, fmtUsd, fmtUtc } from "../format";
import { alertCrossed, nextUtcMidnight, project, spendRate } from "../projection";
import type { Connection } from "../rpc";
import type { Store } from "../store";
import { Empty, Panel, Stat, freshness } from "../ui";

export function BalancePanel({ store, conn, now }: { store: Store; conn: Connection; now: number }) {
  const s = store.state;
  const b = s?.balance;
  const reset = nextUtcMidnight(now);
  const upstreamDown = s?.upstream.status === "unavailable";
  const fresh = freshness(
    store,
    b?.observed_at,
    now,
    b?.stale ? (upstreamDown ? "Venice is unavailable; last known balance" : "balance older than 15 minutes") : null,
  );
  const rate = spendRate(store.costEvents, now, store.observedSince ?? now);
  const diemProj = b?.diem != null ? project(b.diem, rate.diemPerHour, now, reset) : null;
  const usdProj = b?.usd != null ? project(b.usd, rate.usdPerHour, now, reset) : null;
  const diemAlert = alertCrossed(b?.diem, s?.alerts.diem_below);
  const usdAlert = alertCrossed(b?.usd, s?.alerts.usd_below);

  return (
    <Panel id="balance" hotkey="1" title="Balance" fresh={fresh}>
      {!s ? (
        <Empty>Waiting for the gateway…</Empty>
      ) : b?.observed_at == null ? (
        <Empty>
          No balance seen yet. It arrives with the headers of the first request proxied to Venice. If requests fail with
          401, the gateway has no Venice key: run <code>sidepanel key set</code>, or set <code>VENICE_API_KEY</code> or{" "}
          <code>upstream.api_key_file</code>.
        </Empty>
      ) : (
        <div class="stats">
          <Stat
            label="Diem"
            tone={diemAlert ? "bad" : undefined}
            value={
              <span data-testid="balance-diem" data-value={b.diem ?? ""}>
                {fmtDiem(b.diem)}
              </span>
            }
            sub={`seen ${fmtTime(b.observed_at)}`}
          />
          <Stat
            label="USD"
            tone={usdAlert ? "bad" : undefined}
            value={
              <span data-testid="balance-usd" data-value={b.usd ?? ""}>
                {fmtUsd(b.usd)}
              </span>
            }
            sub={b.vcu != null ? `VCU ${b.vcu}` : "\u00a0"}
          />
        </div>
      )}
      <div class="reset" title={`Diem allocation resets at ${fmtUtc(reset)}`}>
        <span class="dim">Diem reset in</span>{" "}
        <strong class="mono" data-testid="reset-countdown">
          {fmtClock(reset - now)}
        </strong>{" "}
        <span class="dim">(00:00 UTC)</span>
      </div>
      {s && b?.observed_at != null && (
        <table class="kv" data-testid="projection">
          <tbody>
            <tr>
              <th>Spend rate</th>
              <td class="mono" data-testid="spend-rate">
                {fmtRate(rate.diemPerHour, "diem")} · {fmtRate(rate.usdPerHour, "usd")}
              </td>
            </tr>
            <tr>
              <th>Left at reset</th>
              <td class="mono">
                {diemProj ? `${fmtDiem(diemProj.atReset)} Diem` : "—"} · {usdProj ? fmtUsd(usdProj.atReset) : "—"}
              </td>
            </tr>
            <tr>
              <th>Runs out</th>
              <td class="mono" data-testid="runs-out">
                {runsOut("Diem", diemProj, now)} · {runsOut("USD", usdProj, now)}
              </td>
            </tr>
          </tbody>
        </table>
      )}
      {s && <p class="fine dim">Rate over the last {fmtDuration(rate.spanMs)} ({rate.samples} charged requests).</p>}
      {s && <AlertForm store={store} conn={conn} />}
    </Panel>
  );
}

function runsOut(label: string, p: ReturnType<typeof project> | null, now: number): string {
  if (!p) return `${label} —`;
  if (p.runsOutAt == null) return `${label}: not at this rate`;
  const warn = p.runsOutBeforeReset ? " (before reset)" : "";
  return `${label} in ${fmtDuration(p.runsOutAt - now)}${warn}`;
}

function AlertForm({ store, conn }: { store: Store; conn: Connection }) {
  const alerts = store.state!.alerts;
  const [msg, setMsg] = useState<string | null>(null);

  async function submit(currency: "diem" | "usd", raw: string) {
    const text = raw.trim();
    const below = text === "" ? null : Number(text);
    if (below != null && (!Number.isFinite(below) || below < 0)) {
      setMsg("Enter a number ≥ 0, or leave it empty to clear the alert.");
      return;
    }
    try {
      const r = await conn.call<{ currency: string; below: number | null }>("setAlert", { currency, below });
      setMsg(r.below == null ? `${currency.toUpperCase()} alert cleared.` : `Alert when ${currency === "diem" ? "Diem" : "USD"} < ${r.below}.`);
    } catch (e) {
      setMsg(`setAlert failed: ${(e as Error).message}`);
    }
  }

  return (
    <form
      class="alerts"
      onSubmit={(e) => {
        e.preventDefault();
        const f = e.currentTarget as HTMLFormElement;
        const which = (e as SubmitEvent).submitter?.getAttribute("data-currency") as "diem" | "usd" | null;
        const currency = which ?? "diem";
        void submit(currency, (f.elements.namedItem(currency) as HTMLInputElement).value);
      }}
    >
      <label>
        <span>
          Alert <kbd>a</kbd> Diem below
        </span>
        <input
          id="alert-diem"
          name="diem"
          inputMode="decimal"
          placeholder={alerts.diem_below == null ? "off" : String(alerts.diem_below)}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              void submit("diem", (e.currentTarget as HTMLInputElement).value);
            }
          }}
        />
        <button type="submit" data-currency="diem">
          Set
        </button>
      </label>
      <label>
        <span>
          <kbd>u</kbd> USD below
        </span>
        <input
          id="alert-usd"
          name="usd"
          inputMode="decimal"
          placeholder={alerts.usd_below == null ? "off" : String(alerts.usd_below)}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              void submit("usd", (e.currentTarget as HTMLInputElement).value);
            }
          }}
        />
        <button type="submit" data-currency="usd">
          Set
        </button>
      </label>
      <div class="fine dim" data-testid="alert-state">
        Diem alert: {alerts.diem_below ?? "off"} · USD alert: {alerts.usd_below ?? "off"}
        {msg && <span class="msg"> — {msg}</span>}
      </div>
    </form>
  );
}

/** The page-wide banner shown while a balance is below its alert threshold. */
export function AlertBanner({ store }: { store: Store }) {
  const s = store.state;
  if (!s) return null;
  const out: string[] = [];
  if (alertCrossed(s.balance.diem, s.alerts.diem_below)) {
    out.push(`Diem balance ${fmtDiem(s.balance.diem)} is below your alert at ${s.alerts.diem_below}`);
  }
  if (alertCrossed(s.balance.usd, s.alerts.usd_below)) {
    out.push(`USD balance ${fmtUsd(s.balance.usd)} is below your alert at ${fmtUsd(s.alerts.usd_below)}`);
  }
  if (out.length === 0) return null;
  return (
    <div class="banner bad" role="alert" data-testid="alert-banner">
      <strong>Balance alert.</strong> {out.join("; ")}.
    </div>
  );
}
