import { sleep } from "@opal/core";
import type { PrefillEvent, PrefillRequest } from "@opal/driver";
import { describe, expect, it } from "vitest";
import { createMockDevice } from "../src/create-mock-device";

let counter = 0;
const request = (priority?: number): PrefillRequest => ({
  requestId: `priority-${++counter}`,
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.from({ length: 16 }, (_, i) => (i * 5 + counter) % 200),
  kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  ...(priority !== undefined ? { priority } : {}),
});

describe("the mock's own admission queue (PF-50)", () => {
  it("admits a queued prefill with a lower priority before one that waited longer", async () => {
    const device = createMockDevice({
      models: ["opal-tiny"],
      limits: { maxConcurrentPrefills: 1, maxQueuedPrefills: 2 },
    });
    const order: string[] = [];
    const start = (name: string, priority?: number) => {
      const events = device.prefill(request(priority))[Symbol.asyncIterator]();
      const accepted = events.next().then((r) => {
        order.push(name);
        return r.value as PrefillEvent;
      });
      return { accepted, stop: () => events.return?.() };
    };
    try {
      // The running prefill holds the one slot while its stream is not read past `accepted`.
      const running = start("running");
      expect((await running.accepted).type).toBe("accepted");
      const batch = start("batch", 10);
      await sleep(50);
      const interactive = start("interactive", -1);
      await sleep(50);
      expect(order).toEqual(["running"]);
      await running.stop();
      expect((await interactive.accepted).type).toBe("accepted");
      await sleep(50);
      expect(order).toEqual(["running", "interactive"]);
      await interactive.stop();
      expect((await batch.accepted).type).toBe("accepted");
      await batch.stop();
    } finally {
      await device.close();
    }
  });
});
