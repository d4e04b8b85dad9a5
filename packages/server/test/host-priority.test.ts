import { createDeviceClient } from "@opal/client";
import { sleep } from "@opal/core";
import type { PrefillDriver, PrefillEvent, PrefillRequest } from "@opal/driver";
import { createMockDevice } from "@opal/mock";
import { describe, expect, it } from "vitest";
import { createDeviceServer } from "../src/index";
import { tinyRequest } from "./fixtures";

/** A driver that leaves admission to the host: one slot, two queue places, prefills held open. */
function holdingDriver(): PrefillDriver {
  const mock = createMockDevice({
    models: ["opal-tiny"],
    limits: { maxConcurrentPrefills: 1, maxQueuedPrefills: 2 },
  });
  return {
    ...mock,
    queuesPrefills: false,
    async *prefill(request, options): AsyncGenerator<PrefillEvent> {
      for await (const event of mock.prefill(request, options)) {
        yield event;
        if (event.type === "accepted") await sleep(60_000, options?.signal);
      }
    },
  };
}

/** Starts a prefill; `accepted` resolves with its first event, `order` records when it came. */
function start(
  client: ReturnType<typeof createDeviceClient>,
  request: PrefillRequest,
  order: string[],
  name: string,
) {
  const controller = new AbortController();
  const events = client.prefill(request, { signal: controller.signal })[Symbol.asyncIterator]();
  const accepted = events.next().then((r) => {
    order.push(name);
    return r.value as PrefillEvent;
  });
  accepted.catch(() => {});
  return { accepted, cancel: () => controller.abort() };
}

describe("the host's admission queue (PF-50)", () => {
  it("admits a queued prefill with a lower priority before one that waited longer", async () => {
    const server = await createDeviceServer(holdingDriver(), { shutdownGraceMs: 0 });
    const client = createDeviceClient(server.address);
    const order: string[] = [];
    try {
      const running = start(client, tinyRequest(), order, "running");
      expect((await running.accepted).type).toBe("accepted");
      const batch = start(client, tinyRequest({ priority: 10 }), order, "batch");
      await sleep(100);
      const interactive = start(client, tinyRequest({ priority: -1 }), order, "interactive");
      await sleep(100);
      expect(order).toEqual(["running"]);
      running.cancel();
      expect((await interactive.accepted).type).toBe("accepted");
      await sleep(100);
      expect(order).toEqual(["running", "interactive"]);
      interactive.cancel();
      expect((await batch.accepted).type).toBe("accepted");
      batch.cancel();
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});
