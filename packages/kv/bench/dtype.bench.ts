/**
 * Dtype conversion throughput (millions of elements per second), 16 Mi elements each.
 * Run: node --conditions=source --import tsx packages/kv/bench/dtype.bench.ts
 */
import { fromFloat32, quantizeKv, toFloat32 } from "../src/index";
import { bestSeconds, reportMelems } from "./report";

const n = 1 << 24;
const f32 = new Float32Array(n);
for (let i = 0; i < n; i++) f32[i] = Math.sin(i) * 100;
const out32 = new Float32Array(n);
const out16 = new Uint8Array(2 * n);
const out8 = new Uint8Array(n);
const bf16 = fromFloat32(f32, "bf16");
const f16 = fromFloat32(f32, "f16");
const e4m3 = fromFloat32(f32, "fp8_e4m3fn", { saturate: true });
const rate = (fn: () => void) => n / bestSeconds(fn, 3) / 1e6;

reportMelems(
  "kv/bf16-to-f32",
  rate(() => toFloat32(bf16, "bf16", { into: out32 })),
  200,
);
reportMelems(
  "kv/f16-to-f32",
  rate(() => toFloat32(f16, "f16", { into: out32 })),
  200,
);
reportMelems(
  "kv/f32-to-bf16",
  rate(() => fromFloat32(f32, "bf16", { into: out16 })),
  200,
);
reportMelems(
  "kv/f32-to-f16",
  rate(() => fromFloat32(f32, "f16", { into: out16 })),
  200,
);
reportMelems(
  "kv/f32-copy",
  rate(() => toFloat32(new Uint8Array(f32.buffer), "f32", { into: out32 })),
  200,
);
reportMelems(
  "kv/fp8-e4m3-to-f32",
  rate(() => toFloat32(e4m3, "fp8_e4m3fn", { into: out32 })),
  200,
);
reportMelems(
  "kv/f32-to-fp8-e4m3",
  rate(() => fromFloat32(f32, "fp8_e4m3fn", { into: out8 })),
  100,
);
const shape = { tokenCount: n / (8 * 128), headCount: 8, headDim: 128, layout: "nhd" as const };
reportMelems(
  "kv/quantize-fp8-e4m3-per-token",
  rate(() => quantizeKv(f32, { dtype: "fp8_e4m3fn", scaleScheme: "per_token", shape })),
  100,
);
