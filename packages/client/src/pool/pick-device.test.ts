import { Code, OpalError, Reason } from "@opal/core";
import { describe, expect, it } from "vitest";
import { isAvailable, pickDevice, type RoutableDevice, type Routing } from "./pick-device";

const device = (target: string, patch: Partial<RoutableDevice> = {}): RoutableDevice => ({
  target,
  circuit: "closed",
  inFlight: 0,
  reportedLoad: undefined,
  critical: [],
  removed: false,
  ...patch,
});

const routing = (patch: Partial<Routing> = {}): Routing => ({
  policy: "round-robin",
  maxInFlightPerDevice: 8,
  affinity: new Map(),
  turn: 0,
  ...patch,
});

const anyRequest = { avoidTarget: undefined, prefixKeys: [] };

/** The targets of `count` picks in a row, carrying the turn over as the pool does. */
function picks(members: readonly RoutableDevice[], count: number, patch: Partial<Routing> = {}) {
  let turn = patch.turn ?? 0;
  return Array.from({ length: count }, () => {
    const picked = pickDevice(members, anyRequest, routing({ ...patch, turn }));
    turn = picked.turn;
    return picked.member.target;
  });
}

describe("isAvailable", () => {
  it("takes a closed device under its in-flight limit", () => {
    expect(isAvailable(device("a", { inFlight: 7 }), 8)).toBe(true);
    expect(isAvailable(device("a", { inFlight: 8 }), 8)).toBe(false);
  });

  it("skips an open, removed or critical device", () => {
    expect(isAvailable(device("a", { circuit: "open" }), 8)).toBe(false);
    expect(isAvailable(device("a", { removed: true }), 8)).toBe(false);
    expect(isAvailable(device("a", { critical: ["DEVICE_FAULT"] }), 8)).toBe(false);
  });

  it("lets a half-open device run one trial at a time", () => {
    expect(isAvailable(device("a", { circuit: "half-open" }), 8)).toBe(true);
    expect(isAvailable(device("a", { circuit: "half-open", inFlight: 1 }), 8)).toBe(false);
  });
});

describe("pickDevice", () => {
  it("round-robin takes each device in turn and skips those out of service", () => {
    const members = [device("a"), device("b", { circuit: "open" }), device("c")];
    expect(picks(members, 4)).toEqual(["a", "c", "a", "c"]);
  });

  it("least-loaded takes the device with the least work, counting the larger of ours and its report", () => {
    const members = [
      device("a", { inFlight: 2 }),
      device("b", { inFlight: 0, reportedLoad: 3 }),
      device("c", { inFlight: 1, reportedLoad: 0 }),
    ];
    expect(picks(members, 2, { policy: "least-loaded" })).toEqual(["c", "c"]);
  });

  it("least-loaded rotates among devices tied for the least load", () => {
    const members = [device("a"), device("b"), device("c", { inFlight: 1 })];
    expect(picks(members, 4, { policy: "least-loaded" })).toEqual(["a", "b", "a", "b"]);
  });

  it("prefix-affinity takes the device holding the longest prefix, without using a turn", () => {
    const members = [device("a"), device("b"), device("c")];
    const affinity = new Map([
      ["m\nk1", "a"],
      ["m\nk2", "b"],
    ]);
    const picked = pickDevice(
      members,
      { avoidTarget: undefined, prefixKeys: ["m\nk1", "m\nk2", "m\nk3"] },
      routing({ policy: "prefix-affinity", affinity, turn: 5 }),
    );
    expect(picked).toEqual({ member: members[1], turn: 5 });
  });

  it("prefix-affinity passes over a holder that is not available, then falls back to least-loaded", () => {
    const members = [device("a", { inFlight: 1 }), device("b", { critical: ["X"] }), device("c")];
    const affinity = new Map([["m\nk1", "b"]]);
    const picked = pickDevice(
      members,
      { avoidTarget: undefined, prefixKeys: ["m\nk1"] },
      routing({ policy: "prefix-affinity", affinity }),
    );
    expect(picked.member.target).toBe("c");
    expect(picked.turn).toBe(1);
  });

  it("avoids the device that failed the request, unless no other is available", () => {
    const members = [device("a"), device("b")];
    const avoidA = { avoidTarget: "a", prefixKeys: [] };
    expect(pickDevice(members, avoidA, routing()).member.target).toBe("b");
    expect(pickDevice(members, avoidA, routing({ turn: 1 })).member.target).toBe("b");
    const onlyA = [device("a"), device("b", { circuit: "open" })];
    expect(pickDevice(onlyA, avoidA, routing()).member.target).toBe("a");
  });

  it("throws RESOURCE_EXHAUSTED DEVICE_BUSY when every device is at its limit or out", () => {
    const members = [device("a", { inFlight: 1 }), device("b", { circuit: "open" })];
    let caught: unknown;
    try {
      pickDevice(members, anyRequest, routing({ maxInFlightPerDevice: 1 }));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(OpalError);
    expect(caught).toMatchObject({
      code: Code.RESOURCE_EXHAUSTED,
      reason: Reason.DEVICE_BUSY,
      retryDelayMs: 50,
    });
  });

  it("changes neither the members nor the routing it is given", () => {
    const members = [device("a"), device("b")];
    const given = routing({ turn: 3 });
    const picked = pickDevice(members, anyRequest, given);
    expect(picked).toEqual({ member: members[1], turn: 4 });
    expect(given.turn).toBe(3);
    expect(members).toEqual([device("a"), device("b")]);
  });
});
