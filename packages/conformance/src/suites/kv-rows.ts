import {
  headCountOf,
  headDimOf,
  isQuantizedDtype,
  type KvDescriptor,
  type KvPart,
  toFloat32,
} from "@opal/kv";

/** A data part as f32 in token-major order `[token][head][dim]`, whatever its layout. */
function toTokenRows(descriptor: KvDescriptor, bytes: Uint8Array): Float32Array {
  const values = toFloat32(bytes, descriptor.dtype);
  if (descriptor.layout === "nhd") return values;
  const T = descriptor.tokenCount;
  const H = headCountOf(descriptor);
  const D = headDimOf(descriptor);
  const out = new Float32Array(values.length);
  for (let h = 0; h < H; h++) {
    for (let t = 0; t < T; t++)
      out.set(values.subarray((h * T + t) * D, (h * T + t + 1) * D), (t * H + h) * D);
  }
  return out;
}

/**
 * Compares the KV of tokens `[fromToken, fromToken + count)` (absolute positions) of two caches of
 * the same model and format. Bit-exact devices must agree byte for byte on the f32 values; others
 * within twice their declared bound (each side may be off by the bound). Returns violations.
 */
export function compareTokenRows(
  a: { descriptor: KvDescriptor; parts: readonly Partial<Record<KvPart, Uint8Array>>[] },
  b: { descriptor: KvDescriptor; parts: readonly Partial<Record<KvPart, Uint8Array>>[] },
  fromToken: number,
  count: number,
  rule: string,
): string[] {
  const problems: string[] = [];
  if (isQuantizedDtype(a.descriptor.dtype)) return ["cannot compare quantised caches row by row"];
  const n = a.descriptor.numerics;
  const H = headCountOf(a.descriptor);
  const D = headDimOf(a.descriptor);
  const row = H * D;
  for (let layer = 0; layer < a.descriptor.numLayers; layer++) {
    for (const part of ["k", "v"] as const) {
      const x = toTokenRows(a.descriptor, a.parts[layer]![part]!);
      const y = toTokenRows(b.descriptor, b.parts[layer]![part]!);
      const xs = (fromToken - a.descriptor.tokenStart) * row;
      const ys = (fromToken - b.descriptor.tokenStart) * row;
      for (let i = 0; i < count * row; i++) {
        const u = x[xs + i]!;
        const v = y[ys + i]!;
        const bound = n.bitExact
          ? 0
          : 2 * (n.maxAbsError + n.maxRelError * Math.max(Math.abs(u), Math.abs(v))) +
            1e-6 * Math.abs(u);
        const tolerance = n.bitExact ? 0 : bound + 2 * Math.abs(u) * 2 ** -7;
        if (!(Math.abs(u - v) <= tolerance)) {
          problems.push(
            `${rule}: layer ${layer} ${part} token ${fromToken + Math.floor(i / row)} element ${i % row}: ${u} vs ${v}`,
          );
          return problems;
        }
      }
    }
  }
  return problems;
}
