import { compareKvWithReference, createConformanceModel } from "@opal/conformance";
import type { KvDescriptor, KvNumerics } from "@opal/kv";
import { toKvCache } from "@opal/reference";
import { describe, expect, it } from "vitest";

const model = createConformanceModel();
const tokens = [256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100];
const { cache } = model.reference.prefill(tokens);

function received(dtype: "f32" | "bf16", layout: "nhd" | "hnd") {
  const kv = toKvCache(cache, { modelFingerprint: model.reference.fingerprint, dtype, layout });
  const parts = Array.from({ length: kv.descriptor.numLayers }, (_, l) => ({
    k: Uint8Array.from(kv.part(l, "k")),
    v: Uint8Array.from(kv.part(l, "v")),
  }));
  return { descriptor: kv.descriptor as KvDescriptor, parts };
}

const exact: KvNumerics = {
  deviceKind: "reference",
  precisionPath: "f32",
  bitExact: true,
  maxAbsError: 0,
  maxRelError: 0,
};
const optical: KvNumerics = {
  deviceKind: "optical",
  precisionPath: "optical",
  bitExact: false,
  maxAbsError: 1e-2,
  maxRelError: 1e-2,
};

describe("compareKvWithReference (PF-36, PF-37, PF-38)", () => {
  it("accepts the reference itself in every layout and rounding to bf16", () => {
    for (const layout of ["nhd", "hnd"] as const) {
      for (const dtype of ["f32", "bf16"] as const) {
        const r = received(dtype, layout);
        expect(compareKvWithReference(r.descriptor, r.parts, cache, exact).violations).toEqual([]);
      }
    }
  });

  it("fails a bit-exact claim off by one f32 ulp, and any device beyond its declared bound", () => {
    const r = received("f32", "nhd");
    const view = new Float32Array(r.parts[1]!.v.buffer);
    view[5] = view[5]! * (1 + 2 ** -20);
    expect(compareKvWithReference(r.descriptor, r.parts, cache, exact).violations.join()).toMatch(
      /PF-36/,
    );
    expect(compareKvWithReference(r.descriptor, r.parts, cache, optical).violations).toEqual([]);
    view[5] = view[5]! + 0.5;
    expect(compareKvWithReference(r.descriptor, r.parts, cache, optical).violations.join()).toMatch(
      /PF-38: layer 1 v element 5/,
    );
  });

  it("fails NaN (PF-22) and a transposed layout", () => {
    const r = received("f32", "hnd");
    const wrong = { ...r, descriptor: { ...r.descriptor, layout: "nhd" as const } };
    expect(
      compareKvWithReference(wrong.descriptor, wrong.parts, cache, optical).violations.length,
    ).toBeGreaterThan(0);
    new Float32Array(r.parts[0]!.k.buffer)[0] = Number.NaN;
    expect(compareKvWithReference(r.descriptor, r.parts, cache, optical).violations.join()).toMatch(
      /PF-22/,
    );
  });
});
