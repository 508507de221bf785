// Countdowns and spend projections. Pure functions of their inputs (the clock is a parameter);
// unit-tested in test/projection.test.ts.

export const HOUR = 3_600_000;
export const MINUTE = 60_000;
export const DAY = 86_400_000;

/** The next 00:00 UTC strictly after `now` (when Venice resets the Diem allocation). */
export function nextUtcMidnight(now: number): number {
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
}

/** The 00:00 UTC that began the current UTC day. */
export function utcDayStart(now: number): number {
  return nextUtcMidnight(now) - DAY;
}

/** Milliseconds left until `target`, never negative; `null` for an unknown target. */
export function remaining(target: number | null | undefined, now: number): number | null {
  if (target == null || !Number.isFinite(target)) return null;
  return Math.max(0, target - now);
}

/** One charge, as a request's `cost` gave it. */
export interface CostEvent {
  t: number;
  usd: number;
  diem: number;
}

export interface SpendRate {
  usdPerHour: number;
  diemPerHour: number;
  /** The span the rate is averaged over. */
  spanMs: number;
  /** Charges inside the span. */
  samples: number;
}

/**
 * Spend per hour over the last `windowMs`: the charges in the window divided by the time the
 * dashboard has been able to see them (from `observedSince`, or the window start if later),
 * but at least `minSpanMs` so a single request right after connecting is not a huge rate.
 */
export function spendRate(
  events: readonly CostEvent[],
  now: number,
  observedSince: number,
  windowMs = 15 * MINUTE,
  minSpanMs = MINUTE,
): SpendRate {
  const from = Math.max(now - windowMs, observedSince);
  let usd = 0;
  let diem = 0;
  let samples = 0;
  for (const e of events) {
    if (e.t <= from || e.t > now) continue;
    usd += e.usd;
    diem += e.diem;
    samples++;
  }
  const spanMs = Math.max(minSpanMs, now - from);
  return {
    usdPerHour: (usd / spanMs) * HOUR,
    diemPerHour: (diem / spanMs) * HOUR,
    spanMs,
    samples,
  };
}

export interface Projection {
  /** Balance left at `resetAt` at the current rate (never below 0). */
  atReset: number;
  /** When the balance reaches 0 at the current rate; `null` when nothing is being spent. */
  runsOutAt: number | null;
  /** Whether that happens before `resetAt`. */
  runsOutBeforeReset: boolean;
}

/** Projects `balance` forward at `perHour` until `resetAt`. */
export function project(balance: number, perHour: number, now: number, resetAt: number): Projection {
  const rate = Math.max(0, perHour);
  const toReset = Math.max(0, resetAt - now);
  const atReset = Math.max(0, balance - (rate * toReset) / HOUR);
  if (rate <= 0 || !Number.isFinite(rate)) {
    return { atReset: Math.max(0, balance), runsOutAt: null, runsOutBeforeReset: false };
  }
  const runsOutAt = balance <= 0 ? now : now + (balance / rate) * HOUR;
  return { atReset, runsOutAt, runsOutBeforeReset: runsOutAt <= resetAt };
}

/** Whether an alert threshold is crossed: the balance is known and strictly below it. */
export function alertCrossed(balance: number | null | undefined, below: number | null | undefined): boolean {
  return balance != null && below != null && Number.isFinite(balance) && balance < below;
}
