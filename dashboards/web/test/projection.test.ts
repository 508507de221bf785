import { describe, expect, it } from "vitest";
import { HOUR, MINUTE, alertCrossed, nextUtcMidnight, project, remaining, spendRate, utcDayStart } from "../src/projection";

const T = Date.UTC(2026, 10, 24, 21, 30, 0); // 21:30 UTC

describe("Diem reset countdown", () => {
  it("is the next 00:00 UTC", () => {
    expect(nextUtcMidnight(T)).toBe(Date.UTC(2026, 10, 25));
    expect(nextUtcMidnight(T) - T).toBe(2.5 * HOUR);
  });
  it("rolls over months and years", () => {
    expect(nextUtcMidnight(Date.UTC(2026, 11, 31, 23, 59, 59))).toBe(Date.UTC(2027, 0, 1));
    expect(nextUtcMidnight(Date.UTC(2028, 1, 28, 12))).toBe(Date.UTC(2028, 1, 29));
  });
  it("at exactly midnight, counts to the following one", () => {
    const m = Date.UTC(2026, 10, 25);
    expect(nextUtcMidnight(m)).toBe(m + 24 * HOUR);
    expect(utcDayStart(m)).toBe(m);
    expect(utcDayStart(T)).toBe(Date.UTC(2026, 10, 24));
  });
  it("counts down to rate-limit resets, never below zero", () => {
    expect(remaining(T + 5000, T)).toBe(5000);
    expect(remaining(T - 5000, T)).toBe(0);
    expect(remaining(null, T)).toBeNull();
  });
});

describe("spend rate", () => {
  const ev = (minAgo: number, usd: number, diem: number) => ({ t: T - minAgo * MINUTE, usd, diem });

  it("averages the window's charges per hour", () => {
    const r = spendRate([ev(10, 0.1, 0.5), ev(5, 0.1, 0.5), ev(20, 9, 9)], T, T - 2 * HOUR, 15 * MINUTE);
    expect(r.samples).toBe(2);
    expect(r.spanMs).toBe(15 * MINUTE);
    expect(r.usdPerHour).toBeCloseTo(0.8);
    expect(r.diemPerHour).toBeCloseTo(4);
  });
  it("averages only over the time the tab has watched", () => {
    const r = spendRate([ev(2, 0.2, 0)], T, T - 4 * MINUTE, 15 * MINUTE);
    expect(r.spanMs).toBe(4 * MINUTE);
    expect(r.usdPerHour).toBeCloseTo(3);
  });
  it("never divides by less than a minute", () => {
    const r = spendRate([ev(0.005, 0.01, 0)], T, T - 1000);
    expect(r.spanMs).toBe(MINUTE);
    expect(r.usdPerHour).toBeCloseTo(0.6);
  });
  it("is zero without charges", () => {
    const r = spendRate([], T, T - HOUR);
    expect(r.usdPerHour).toBe(0);
    expect(r.diemPerHour).toBe(0);
    expect(r.samples).toBe(0);
  });
  it("ignores events from the future", () => {
    expect(spendRate([{ t: T + 1000, usd: 1, diem: 1 }], T, T - HOUR).samples).toBe(0);
  });
});

describe("projection", () => {
  const reset = nextUtcMidnight(T); // 2.5 h away

  it("gives the balance left at the reset and when it runs out", () => {
    const p = project(10, 2, T, reset);
    expect(p.atReset).toBeCloseTo(5);
    expect(p.runsOutAt).toBe(T + 5 * HOUR);
    expect(p.runsOutBeforeReset).toBe(false);
  });
  it("flags running out before the reset and floors at zero", () => {
    const p = project(1, 2, T, reset);
    expect(p.atReset).toBe(0);
    expect(p.runsOutAt).toBe(T + 0.5 * HOUR);
    expect(p.runsOutBeforeReset).toBe(true);
  });
  it("never runs out when nothing is spent", () => {
    const p = project(10, 0, T, reset);
    expect(p).toEqual({ atReset: 10, runsOutAt: null, runsOutBeforeReset: false });
  });
  it("an empty balance has already run out", () => {
    const p = project(0, 1, T, reset);
    expect(p.runsOutAt).toBe(T);
    expect(p.runsOutBeforeReset).toBe(true);
  });
});

describe("alerts", () => {
  it("fire strictly below the threshold, only when both are known", () => {
    expect(alertCrossed(9.99, 10)).toBe(true);
    expect(alertCrossed(10, 10)).toBe(false);
    expect(alertCrossed(null, 10)).toBe(false);
    expect(alertCrossed(5, null)).toBe(false);
    expect(alertCrossed(0, 0)).toBe(false);
  });
});
