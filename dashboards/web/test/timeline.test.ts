import { describe, expect, it } from "vitest";
import { serverPoints } from "../src/panels/timeline";

describe("timeline answers", () => {
  it("read the store's points, newest first, with what restore needs", () => {
    const pts = serverPoints({
      sessionId: "ses_a",
      points: [
        { sequence: 10, timestamp: 1000, kind: "update", type: "usage", label: "kimi-k2-5 · 52 tokens" },
        { sequence: 12, timestamp: 2000, kind: "snapshot", snapshot_id: 3, type: "checkpoint", label: "checkpoint" },
      ],
    });
    expect(pts.map((p) => [p.sequence, p.snapshotId, p.snapshot, p.at])).toEqual([
      [12, 3, true, 2000],
      [10, null, false, 1000],
    ]);
    expect(pts[1].label).toBe("kimi-k2-5 · 52 tokens");
  });
  it("accept an empty or odd answer", () => {
    expect(serverPoints({})).toEqual([]);
    expect(serverPoints(null)).toEqual([]);
  });
});
