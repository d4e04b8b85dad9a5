/**
 * Generation speed of synthetic KV (Llama-3-8B shape, bf16, one layer's K for 16384 tokens = 32 MiB
 * per call) against a memcpy of the same size. Target: 1 GB/s on one core.
 * Run: node --conditions=source --import tsx packages/reference/bench/synthetic-kv.bench.ts
 */
import { createSyntheticKv, syntheticShape } from "@opal/reference";
import { medianSeconds, printFigure } from "./report";

const kv = createSyntheticKv(syntheticShape("llama-3-8b"));
const tokens = Uint32Array.from({ length: 16384 }, (_, i) => (i * 2654435761) % 128000);
const request = {
  tokens,
  layer: 7,
  part: "k",
  tokenStart: 0,
  tokenCount: 16384,
  dtype: "bf16",
} as const;
const target = new Uint8Array(kv.byteLengthOf(request));
const source = new Uint8Array(target.byteLength).fill(7);
const repeat = 4;

const fillSeconds = medianSeconds(() => {
  for (let i = 0; i < repeat; i++) kv.fill(target, { ...request, layer: i });
}, 5);
const copySeconds = medianSeconds(() => {
  for (let i = 0; i < repeat; i++) target.set(source);
}, 5);
const gbps = (seconds: number) => (repeat * target.byteLength) / seconds / 1e9;
printFigure({
  bench: "reference/synthetic-kv",
  metric: "GB/s",
  value: gbps(fillSeconds),
  baseline: "memcpy",
  baselineValue: gbps(copySeconds),
});
printFigure({
  bench: "reference/synthetic-kv",
  metric: "GB/s",
  value: gbps(fillSeconds),
  target: 1.0,
});

for (const dtype of ["f32", "f16", "fp8_e4m3fn", "int8"] as const) {
  const r = { ...request, dtype };
  const out = new Uint8Array(kv.byteLengthOf(r));
  const seconds = medianSeconds(() => {
    for (let i = 0; i < repeat; i++) kv.fill(out, { ...r, layer: i });
  }, 5);
  printFigure({
    bench: `reference/synthetic-kv-${dtype}`,
    metric: "GB/s",
    value: (repeat * out.byteLength) / seconds / 1e9,
    target: 1.0,
  });
}
