import type { PrefillRequest } from "@opal/driver";
import { describe, expect, it } from "vitest";
import {
  fromWireFetchRequest,
  fromWireLoadModelHeader,
  fromWirePrefillRequest,
  toWirePrefillRequest,
} from "./gen/mappers";
import { opal } from "./gen/pb.js";

const v1 = opal.device.v1;
/** A number no enum of this version has, as a newer peer may send. */
const unknown = (value: number) => value as never;

const request: PrefillRequest = {
  requestId: "r-1",
  modelId: "m",
  promptTokenIds: Uint32Array.of(1, 2, 3),
  kvFormat: {
    dtype: "fp8_e4m3fn",
    scaleScheme: "per_tensor",
    layout: "hnd",
    blockSizeTokens: 16,
    headRange: { start: 1, count: 2 },
  },
  cacheSalt: "salt",
  decoderPrefix: { numTokens: 2 },
  retentionSeconds: 30,
  pushTarget: { address: "127.0.0.1:1", transferId: "t", useTls: false },
  sampling: { mode: "seeded", seed: 7, temperature: 0.5, topK: 4 },
  maxChunkBytes: 4096,
  priority: -3,
};

/** A request through its wire bytes and back. */
function roundTrip(r: PrefillRequest) {
  const bytes = v1.PrefillRequest.encode(toWirePrefillRequest(r)).finish();
  return fromWirePrefillRequest(v1.PrefillRequest.decode(bytes));
}

describe("the prefill request mappers", () => {
  it("carry every field through the wire unchanged", () => {
    expect(roundTrip(request)).toEqual(request);
  });

  it("decode zero values as absent where the domain makes them optional", () => {
    const minimal = roundTrip({ ...request, cacheSalt: "", decoderPrefix: {}, priority: 0 });
    expect(Object.keys(minimal)).not.toContain("cacheSalt");
    expect(Object.keys(minimal)).not.toContain("decoderPrefix"); // present but empty = absent
    expect(Object.keys(minimal)).not.toContain("priority");
  });

  it("decode a zero in every scalar the proto marks OPTIONAL as absent, with no overlay line", () => {
    const decoded = fromWirePrefillRequest({
      requestId: "r",
      retentionSeconds: 0,
      maxChunkBytes: 0,
    });
    expect(Object.keys(decoded)).not.toContain("retentionSeconds");
    expect(Object.keys(decoded)).not.toContain("maxChunkBytes");
    expect(fromWireFetchRequest({ kvHandle: "h", maxChunkBytes: 0 })).toEqual({ kvHandle: "h" });
    expect(fromWireLoadModelHeader({ modelId: "m", configJson: "{}", deviceLocalRef: "" })).toEqual(
      {
        modelId: "m",
        configJson: "{}",
      },
    );
  });

  it("keep UNSPECIFIED and unknown enums visible for the validator, and a missing kv_format absent", () => {
    const received = fromWirePrefillRequest({
      requestId: "r",
      kvFormat: { dtype: unknown(99), layout: 0, scaleScheme: 1, blockSizeTokens: 16 },
      sampling: { mode: 0 },
    });
    expect(received.kvFormat).toMatchObject({
      dtype: "KvDtype(99)",
      layout: "",
      scaleScheme: "none",
    });
    expect(received.sampling).toEqual({ mode: "" });
    expect(fromWirePrefillRequest({ requestId: "r" }).kvFormat).toBeUndefined();
  });
});
