import { Code, Reason } from "@opal/core";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { createKvReceiver } from "../src/kv-receiver/create-kv-receiver";
import type { KvReceiverOptions } from "../src/kv-receiver/kv-receiver-options";
import { createMemorySink } from "../src/sinks/memory-sink";

const createSink = () => createMemorySink();

describe("KvReceiver lifecycle", () => {
  it("close() rejects the received() calls still waiting, and later ones, with CANCELLED", async () => {
    const receiver = await createKvReceiver({ createSink });
    const waiting = receiver.received("never-pushed");
    await receiver.close();
    await expectOpalError(waiting, Code.CANCELLED, Reason.CANCELLED);
    await expectOpalError(receiver.received("later"), Code.CANCELLED, Reason.CANCELLED);
  });

  it("received() rejects at once for an aborted signal, and names a bad timeoutMs", async () => {
    const receiver = await createKvReceiver({ createSink });
    try {
      const controller = new AbortController();
      controller.abort();
      const aborted = receiver.received("t", { signal: controller.signal });
      const outcome = await Promise.race([
        aborted.then(
          () => "resolved",
          (error: unknown) => error,
        ),
        new Promise((resolve) => setTimeout(() => resolve("still waiting"), 500)),
      ]);
      expect(outcome).toMatchObject({ code: Code.CANCELLED });
      for (const timeoutMs of [Number.NaN, -1]) {
        const error = await expectOpalError(
          receiver.received("t", { timeoutMs }),
          Code.INVALID_ARGUMENT,
        );
        expect(error.message).toContain("timeoutMs");
      }
    } finally {
      await receiver.close();
    }
  });

  it.each<[string, Partial<KvReceiverOptions<unknown>>]>([
    ["createSink", { createSink: undefined as never }],
    ["host", { host: "" }],
    ["port", { port: 70_000 }],
    ["tokens[0]", { tokens: [""] }],
    ["maxConcurrentTransfers", { maxConcurrentTransfers: 0 }],
    ["maxConcurrentTransfers", { maxConcurrentTransfers: Number.NaN }],
    ["maxRememberedTransfers", { maxRememberedTransfers: -1 }],
    ["maxMessageBytes", { maxMessageBytes: -1 }],
  ])("refuses a bad %s with INVALID_ARGUMENT naming it", async (field, patch) => {
    const error = await expectOpalError(
      createKvReceiver({ createSink, ...patch }),
      Code.INVALID_ARGUMENT,
      Reason.INVALID_FIELD,
    );
    expect(error.fieldViolations.map((v) => v.field)).toEqual([field]);
  });
});
