import type { KvDescriptor } from "@opal/kv";
import { describe, expect, it } from "vitest";
import { createLayerDelivery } from "./layer-delivery";

const descriptor = {} as KvDescriptor;
const signal = new AbortController().signal;
const layer = (index: number, stable?: boolean) => ({
  layer: index,
  parts: { k: Uint8Array.of(index, 1), v: Uint8Array.of(index, 2) },
  ...(stable ? { stable } : {}),
});

describe("createLayerDelivery", () => {
  it("holds no layer for a run nobody iterates yet", async () => {
    const delivery = createLayerDelivery(performance.now());
    await delivery.deliver(layer(0), descriptor, signal);
    expect(delivery.consumer).toBe("none");
    const reader = delivery[Symbol.asyncIterator]();
    const first = reader.next();
    expect(delivery.consumer).toBe("iterating");
    await delivery.deliver(layer(1), descriptor, signal);
    expect((await first).value).toMatchObject({ layer: 1, descriptor });
  });

  it("copies the parts of a layer whose buffers are reused, and hands stable ones over as they are", async () => {
    const delivery = createLayerDelivery(performance.now());
    const reader = delivery[Symbol.asyncIterator]();
    const reused = layer(0);
    const stable = layer(1, true);
    const first = reader.next();
    await delivery.deliver(reused, descriptor, signal);
    const copied = (await first).value;
    expect(copied.parts.k).toEqual(reused.parts.k);
    expect(copied.parts.k).not.toBe(reused.parts.k);
    const second = reader.next();
    await delivery.deliver(stable, descriptor, signal);
    expect((await second).value.parts.k).toBe(stable.parts.k);
  });

  it("stops delivering to a consumer that ended its loop, and ends the loop of one that iterates", async () => {
    const delivery = createLayerDelivery(performance.now());
    const reader = delivery[Symbol.asyncIterator]();
    const pending = reader.next();
    await reader.return?.();
    await pending;
    await delivery.deliver(layer(0), descriptor, signal);
    expect(delivery.consumer).toBe("gone");
    const ended = createLayerDelivery(performance.now());
    const next = ended[Symbol.asyncIterator]().next();
    ended.close();
    expect(await next).toEqual({ value: undefined, done: true });
  });
});
