import type { KvDescriptor } from "@opal/kv";
import { opal, toWireDescriptor } from "@opal/protocol";
import { expect, it } from "vitest";
import { readPushHeader } from "./read-push-header";

const descriptor: KvDescriptor = {
  modelFingerprint: "f".repeat(64),
  numLayers: 2,
  attention: { kind: "mha", numKvHeads: 2, headDim: 8 },
  headRange: { start: 0, count: 2 },
  dtype: "bf16",
  scaleScheme: "none",
  layout: "nhd",
  tokenStart: 0,
  tokenCount: 16,
  blockSizeTokens: 16,
  numerics: {
    deviceKind: "reference",
    precisionPath: "synthetic",
    bitExact: true,
    maxAbsError: 0,
    maxRelError: 0,
  },
};

/** The messages of a push whose first message is `header`. */
function pushOf(header: opal.device.v1.PushKvHeader.$Properties) {
  const messages = [opal.device.v1.PushKvRequest.create({ header })];
  return { next: async () => ({ done: false as const, value: messages.shift()! }) };
}

it("returns the header's ids as strings (the request id '' when the device sent none) and its descriptor", async () => {
  const wire = toWireDescriptor(descriptor);
  expect(await readPushHeader(pushOf({ transferId: "t-1", descriptor: wire }))).toEqual({
    transferId: "t-1",
    requestId: "",
    descriptor,
  });
  const both = await readPushHeader(
    pushOf({ transferId: "t-2", requestId: "r-2", descriptor: wire }),
  );
  expect([both.transferId, both.requestId]).toEqual(["t-2", "r-2"]);
});
