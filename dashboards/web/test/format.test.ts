import { describe, expect, it } from "vitest";
import { fmtAge, fmtClock, fmtDiem, fmtDuration, fmtMs, fmtPct, fmtRate, fmtTokens, fmtUsd, fmtUtc, shortId } from "../src/format";

describe("fmtTokens", () => {
  it("is exact below ten thousand and compact above", () => {
    expect(fmtTokens(0)).toBe("0");
    expect(fmtTokens(9999)).toBe("9,999");
    expect(fmtTokens(12_345)).toBe("12.3k");
    expect(fmtTokens(200_000)).toBe("200k");
    expect(fmtTokens(1_234_567)).toBe("1.23M");
    expect(fmtTokens(2_000_000)).toBe("2M");
    expect(fmtTokens(3_210_000_000)).toBe("3.21G");
  });
  it("shows a dash for unknown values", () => {
    expect(fmtTokens(null)).toBe("—");
    expect(fmtTokens(undefined)).toBe("—");
    expect(fmtTokens(NaN)).toBe("—");
  });
});

describe("money", () => {
  it("formats USD with cents, or four decimals below a dollar", () => {
    expect(fmtUsd(0)).toBe("$0.00");
    expect(fmtUsd(25)).toBe("$25.00");
    expect(fmtUsd(1234.5)).toBe("$1,234.50");
    expect(fmtUsd(0.0123)).toBe("$0.0123");
    expect(fmtUsd(0.00001)).toBe("<$0.0001");
    expect(fmtUsd(-0.5)).toBe("-$0.5000");
    expect(fmtUsd(null)).toBe("—");
  });
  it("formats Diem with four decimals", () => {
    expect(fmtDiem(9.99946212)).toBe("9.9995");
    expect(fmtDiem(10)).toBe("10.0000");
    expect(fmtDiem(0)).toBe("0.0000");
    expect(fmtDiem(0.00001)).toBe("<0.0001");
    expect(fmtDiem(1.23456, 2)).toBe("1.23");
    expect(fmtDiem(undefined)).toBe("—");
  });
  it("formats rates per hour", () => {
    expect(fmtRate(0.5, "usd")).toBe("$0.5000/h");
    expect(fmtRate(0.0123, "diem")).toBe("0.0123 Diem/h");
    expect(fmtRate(Infinity, "usd")).toBe("—");
  });
});

describe("durations and clocks", () => {
  it("keeps the two largest units", () => {
    expect(fmtDuration(850)).toBe("850 ms");
    expect(fmtDuration(42_000)).toBe("42s");
    expect(fmtDuration(185_000)).toBe("3m 05s");
    expect(fmtDuration(5 * 3600_000 + 7 * 60_000 + 59_000)).toBe("5h 07m");
    expect(fmtDuration(2 * 86_400_000 + 3 * 3600_000)).toBe("2d 3h");
    expect(fmtDuration(-5)).toBe("0 ms");
    expect(fmtDuration(null)).toBe("—");
  });
  it("shows countdowns as HH:MM:SS, never negative", () => {
    expect(fmtClock(0)).toBe("00:00:00");
    expect(fmtClock(3_723_000)).toBe("01:02:03");
    expect(fmtClock(23 * 3600_000 + 59 * 60_000 + 59_999)).toBe("23:59:59");
    expect(fmtClock(-1000)).toBe("00:00:00");
    expect(fmtClock(30 * 3600_000)).toBe("30:00:00");
  });
  it("shows ages", () => {
    expect(fmtAge(200)).toBe("now");
    expect(fmtAge(12_400)).toBe("12s");
    expect(fmtAge(null)).toBe("—");
  });
  it("shows latencies in ms or seconds", () => {
    expect(fmtMs(153.88)).toBe("154 ms");
    expect(fmtMs(1217.6)).toBe("1.22 s");
    expect(fmtMs(12_345)).toBe("12.3 s");
    expect(fmtMs(null)).toBe("—");
  });
  it("writes UTC instants", () => {
    expect(fmtUtc(Date.UTC(2026, 10, 24, 0, 0))).toBe("2026-11-24 00:00 UTC");
  });
});

describe("misc", () => {
  it("clamps percentages", () => {
    expect(fmtPct(50, 200)).toBe("25%");
    expect(fmtPct(300, 200)).toBe("100%");
    expect(fmtPct(1, 0)).toBe("—");
  });
  it("shortens long ids in the middle", () => {
    expect(shortId("ses_demo_refactor")).toBe("ses_demo_refactor");
    const s = shortId("ses_01HZY8K2M3N4P5Q6R7S8T9V0WX", 15);
    expect(s.length).toBe(15);
    expect(s).toBe("ses_01H…8T9V0WX");
    expect(s.startsWith("ses_01H")).toBe(true);
    expect(s.includes("…")).toBe(true);
  });
});
