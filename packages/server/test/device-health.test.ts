import { getEventListeners } from "node:events";
import { Code, OpalError } from "@opal/core";
import type { ServiceContext } from "@opal/protocol";
import { afterEach, expect, it, vi } from "vitest";
import { createDeviceHealth } from "../src/device-health";

afterEach(() => {
  vi.restoreAllMocks();
});

/** A Watch call's context, cancelled through `cancel`. */
function watchCall(cancel: AbortController): ServiceContext {
  return {
    method: "Watch",
    metadata: { get: () => [] },
    peer: "test",
    peerCommonName: undefined,
    signal: cancel.signal,
    abort: (reason) => cancel.abort(reason),
    onDispose: () => {},
  };
}

it("a Watch stream's polls leave no abort listener on the shutdown signal, nor on the call's", async () => {
  // The shutdown signal is the health service's own: found as the one signal besides the call's
  // that a listener is added to.
  const targets = new Set<EventTarget>();
  const add = EventTarget.prototype.addEventListener;
  vi.spyOn(EventTarget.prototype, "addEventListener").mockImplementation(function (
    this: EventTarget,
    ...args: Parameters<EventTarget["addEventListener"]>
  ) {
    if (this instanceof AbortSignal) targets.add(this);
    return add.apply(this, args);
  });
  let probes = 0;
  const health = createDeviceHealth(
    async () => {
      probes++;
      return true;
    },
    { serviceNames: [""], pollIntervalMs: 1 },
  );
  const cancel = new AbortController();
  const stream = health.handlers.watch({ service: "" }, watchCall(cancel))[Symbol.asyncIterator]();
  const first = stream.next();
  expect((await first).value).toEqual({ status: 1 });
  const pending = stream.next(); // polls on: the status does not change
  while (probes < 50) await new Promise((resolve) => setTimeout(resolve, 1));
  const shutdown = [...targets].find((t) => t !== cancel.signal) as AbortSignal;
  expect(shutdown).toBeInstanceOf(AbortSignal);
  expect(getEventListeners(shutdown, "abort").length).toBeLessThanOrEqual(1);
  expect(getEventListeners(cancel.signal, "abort").length).toBeLessThanOrEqual(1);
  cancel.abort(new OpalError(Code.CANCELLED, "cancelled"));
  await expect(pending).rejects.toMatchObject({ code: Code.CANCELLED });
  expect(getEventListeners(shutdown, "abort")).toHaveLength(0);
});
