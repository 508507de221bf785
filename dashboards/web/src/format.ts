// Number, money, duration and time formatting. Pure; unit-tested in test/format.test.ts.

const DASH = "—";
// One formatter each: `toLocaleString` builds a new one per call, which is slow in a hot render.
const INT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const CENTS = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

/** Token counts: exact below 10 000, then 12.3k / 1.23M. */
export function fmtTokens(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return DASH;
  const a = Math.abs(n);
  if (a < 10_000) return INT.format(Math.round(n));
  if (a < 1_000_000) return `${trim(n / 1000, 1)}k`;
  if (a < 1_000_000_000) return `${trim(n / 1_000_000, 2)}M`;
  return `${trim(n / 1_000_000_000, 2)}G`;
}

function trim(x: number, digits: number): string {
  return x.toFixed(digits).replace(/\.?0+$/, "");
}

/** USD amounts: cents for a dollar or more, four decimals below (LLM calls cost fractions of a cent). */
export function fmtUsd(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return DASH;
  const sign = x < 0 ? "-" : "";
  const a = Math.abs(x);
  if (a === 0) return "$0.00";
  if (a >= 1) return `${sign}$${CENTS.format(a)}`;
  if (a >= 0.0001) return `${sign}$${a.toFixed(4)}`;
  return `${sign}<$0.0001`;
}

/** Diem amounts (balances are around 1–100; a request costs ~1e-4). */
export function fmtDiem(x: number | null | undefined, digits = 4): string {
  if (x == null || !Number.isFinite(x)) return DASH;
  if (x !== 0 && Math.abs(x) < 10 ** -digits) return x < 0 ? `>-${(10 ** -digits).toFixed(digits)}` : `<${(10 ** -digits).toFixed(digits)}`;
  return x.toFixed(digits);
}

/** A duration as its two largest units: `2d 3h`, `5h 07m`, `3m 05s`, `42s`, `850 ms`. */
export function fmtDuration(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return DASH;
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${pad(m)}m`;
  if (m > 0) return `${m}m ${pad(sec)}s`;
  return `${sec}s`;
}

/** A countdown clock: `HH:MM:SS` (hours may exceed 24). */
export function fmtClock(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

/** How old a piece of data is: `now`, `12s`, `3m 05s`. */
export function fmtAge(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return DASH;
  if (ms < 1000) return "now";
  return fmtDuration(ms);
}

/** Request latencies: `153 ms`, `1.22 s`. */
export function fmtMs(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return DASH;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** Local wall-clock time of an epoch-ms instant: `14:03:07`. */
export function fmtTime(epochMs: number | null | undefined): string {
  if (epochMs == null || !Number.isFinite(epochMs)) return DASH;
  const d = new Date(epochMs);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** UTC date and time: `2026-11-24 00:00 UTC`. */
export function fmtUtc(epochMs: number): string {
  const d = new Date(epochMs);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
}

/** A rate per hour with its unit: `0.0123 Diem/h`, `$0.45/h`. */
export function fmtRate(perHour: number, currency: "usd" | "diem"): string {
  if (!Number.isFinite(perHour)) return DASH;
  return currency === "usd" ? `${fmtUsd(perHour)}/h` : `${fmtDiem(perHour)} Diem/h`;
}

/** Percent with no decimals, clamped to 0–100. */
export function fmtPct(part: number | null, whole: number | null): string {
  if (part == null || whole == null || whole <= 0) return DASH;
  return `${Math.round(Math.min(100, Math.max(0, (part / whole) * 100)))}%`;
}

/** Shortens an id in the middle: `ses_demo_refactor` stays, long ids become `ses_01H…9XQ`. */
export function shortId(id: string, max = 18): string {
  if (id.length <= max) return id;
  const keep = Math.floor((max - 1) / 2);
  return `${id.slice(0, keep)}…${id.slice(-keep)}`;
}

function pad(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}
