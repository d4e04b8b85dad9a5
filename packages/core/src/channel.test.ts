import { describe, expect, it } from "vitest";
import { createChannel } from "./channel";
import { Code } from "./code";
import { OpalError } from "./opal-error";

describe("createChannel", () => {
  it("delivers items in order and ends on close", async () => {
    const channel = createChannel<number>({ capacity: 2 });
    const producer = (async () => {
      for (let i = 0; i < 10; i++) await channel.send(i);
      channel.close();
    })();
    const seen: number[] = [];
    for await (const value of channel) seen.push(value);
    await producer;
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("makes the producer wait while the buffer is full", async () => {
    const channel = createChannel<number>({ capacity: 2 });
    await channel.send(1);
    await channel.send(2);
    let third = false;
    const pending = channel.send(3).then(() => {
      third = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(third).toBe(false);
    expect(channel.size).toBe(3);
    const iterator = channel[Symbol.asyncIterator]();
    expect(await iterator.next()).toEqual({ value: 1, done: false });
    await pending;
    expect(third).toBe(true);
  });

  it("throws the failure to the consumer after the buffered items", async () => {
    const channel = createChannel<string>();
    await channel.send("a");
    channel.fail(new OpalError(Code.DATA_LOSS, "stream broke"));
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const value of channel) seen.push(value);
      })(),
    ).rejects.toMatchObject({ code: Code.DATA_LOSS });
    expect(seen).toEqual(["a"]);
  });

  it("tells the producer when the consumer stops early", async () => {
    let cancelled = 0;
    const channel = createChannel<number>({ capacity: 1, onCancel: () => cancelled++ });
    await channel.send(1);
    const blocked = channel.send(2);
    await channel[Symbol.asyncIterator]().return?.();
    expect(cancelled).toBe(1);
    await expect(blocked).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
    await expect(channel.send(3)).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
  });

  it("lets a waiting producer abort", async () => {
    const channel = createChannel<number>({ capacity: 1 });
    await channel.send(1);
    const controller = new AbortController();
    const blocked = channel.send(2, controller.signal);
    controller.abort();
    await expect(blocked).rejects.toMatchObject({ code: Code.CANCELLED });
  });
});
