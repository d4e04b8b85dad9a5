import {
  dequantizeKv,
  fromFloat32,
  headCountOf,
  headDimOf,
  isQuantizedDtype,
  type KvDescriptor,
  type KvDtype,
  type KvNumerics,
  type KvPart,
  toFloat32,
} from "@opal/kv";
import type { ReferenceKvCache } from "@opal/reference";

/** Result of {@link compareKvWithReference}. */
export interface KvComparison {
  /** Elements compared. */
  readonly elements: number;
  /** Largest |device − reference| seen. */
  readonly maxAbsError: number;
  /** Violations of the bound (`PF-37`, `PF-38`) or of `PF-22`, first few only. */
  readonly violations: readonly string[];
}

/** One unit in the last place of `dtype` at magnitude `x` (the rounding step there). */
function ulpAt(dtype: KvDtype, x: number): number {
  const a = Math.abs(x);
  const [mantissaBits, minExponent] =
    dtype === "f32"
      ? [23, -126]
      : dtype === "f16"
        ? [10, -14]
        : dtype === "bf16"
          ? [7, -126]
          : dtype === "fp8_e4m3fn"
            ? [3, -6]
            : dtype === "fp8_e5m2"
              ? [2, -14]
              : [0, 0];
  if (dtype === "int8") return 1;
  const exponent = a > 0 ? Math.max(Math.floor(Math.log2(a)), minExponent) : minExponent;
  return 2 ** (exponent - mantissaBits);
}

/**
 * Compares the K and V of every layer of a received cache with the exact reference, element by
 * element. Bit-exact devices with an unquantised dtype must match the reference rounded to the dtype
 * byte for byte (`PF-36`); otherwise each element must satisfy
 * `|x − r| ≤ max_abs_error + max_rel_error·|r| + ulp` with one unit in the last place of the dtype at
 * `|r|` (for fp8/int8: one ulp of the quantised value `|r| / scale`, times the scale), as `PF-37`
 * defines. NaN or infinity fails (`PF-22`).
 */
export function compareKvWithReference(
  descriptor: KvDescriptor,
  parts: readonly Partial<Record<KvPart, Uint8Array>>[],
  reference: ReferenceKvCache,
  numerics: KvNumerics = descriptor.numerics,
): KvComparison {
  const violations: string[] = [];
  let elements = 0;
  let maxAbsError = 0;
  if (descriptor.attention.kind !== "mha") {
    return {
      elements,
      maxAbsError,
      violations: ["the conformance model is MHA; got an MLA descriptor"],
    };
  }
  const T = descriptor.tokenCount;
  const H = headCountOf(descriptor);
  const D = headDimOf(descriptor);
  const kvHeads = reference.numKvHeads;
  const h0 = descriptor.headRange.start;
  const quantized = isQuantizedDtype(descriptor.dtype);
  const exact = numerics.bitExact && !quantized;
  for (let layer = 0; layer < descriptor.numLayers; layer++) {
    for (const [part, scalePart, source] of [
      ["k", "k_scale", reference.keys[layer]!],
      ["v", "v_scale", reference.values[layer]!],
    ] as const) {
      const bytes = parts[layer]?.[part];
      if (!bytes) {
        violations.push(`layer ${layer} has no part ${part}`);
        continue;
      }
      // Reference values of this part, in the descriptor's element order.
      const expected = new Float32Array(T * H * D);
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < H; h++) {
          const from = ((descriptor.tokenStart + t) * kvHeads + h0 + h) * D;
          const to = descriptor.layout === "nhd" ? (t * H + h) * D : (h * T + t) * D;
          expected.set(source.subarray(from, from + D), to);
        }
      }
      let actual: Float32Array;
      let scaleOf: (index: number) => number = () => 1;
      if (quantized) {
        const scaleBytes = parts[layer]?.[scalePart];
        const scales =
          descriptor.scaleScheme === "none" || !scaleBytes
            ? Float32Array.of(1)
            : new Float32Array(scaleBytes.slice().buffer);
        const shape = { tokenCount: T, headCount: H, headDim: D, layout: descriptor.layout };
        const scheme = descriptor.scaleScheme === "none" ? "per_tensor" : descriptor.scaleScheme;
        actual = dequantizeKv(bytes, scales, {
          dtype: descriptor.dtype,
          scaleScheme: scheme,
          shape,
        });
        for (const s of scales) {
          if (!(Number.isFinite(s) && s > 0))
            violations.push(`PF-20: layer ${layer} ${scalePart} holds ${s}`);
        }
        scaleOf = (index) => {
          const row = Math.floor(index / D);
          const [t, h] =
            descriptor.layout === "nhd"
              ? [Math.floor(row / H), row % H]
              : [row % T, Math.floor(row / T)];
          if (scheme === "per_tensor") return scales[0] ?? 1;
          if (scheme === "per_token") return scales[t] ?? 1;
          return scales[h] ?? 1;
        };
      } else {
        actual = toFloat32(bytes, descriptor.dtype);
      }
      if (exact) {
        const rounded = fromFloat32(expected, descriptor.dtype);
        for (let i = 0; i < rounded.byteLength; i++) {
          if (rounded[i] !== bytes[i]) {
            const e = Math.floor(i / (bytes.byteLength / actual.length));
            violations.push(
              `PF-36: bit_exact device, layer ${layer} ${part} element ${e}: got ${actual[e]}, reference rounded to ${descriptor.dtype} is ${toFloat32(rounded, descriptor.dtype)[e]}`,
            );
            break;
          }
        }
      }
      for (let i = 0; i < actual.length; i++) {
        elements++;
        const x = actual[i]!;
        const r = expected[i]!;
        if (!Number.isFinite(x)) {
          if (violations.length < 10)
            violations.push(`PF-22: layer ${layer} ${part} element ${i} is ${x}`);
          continue;
        }
        const error = Math.abs(x - r);
        if (error > maxAbsError) maxAbsError = error;
        const scale = scaleOf(i);
        const step = quantized
          ? scale * ulpAt(descriptor.dtype, r / scale)
          : ulpAt(descriptor.dtype, r);
        const bound = numerics.maxAbsError + numerics.maxRelError * Math.abs(r) + step;
        if (error > bound * (1 + 1e-6) && violations.length < 10) {
          violations.push(
            `PF-38: layer ${layer} ${part} element ${i} = ${x}, reference ${r}: error ${error.toExponential(3)} exceeds the declared bound ${bound.toExponential(3)}`,
          );
        }
      }
    }
  }
  return { elements, maxAbsError, violations };
}
