import {
  assertValidDescriptor,
  dtypeByteSize,
  headCountOf,
  headDimOf,
  type KvDescriptor,
  type KvDtype,
  type KvPart,
} from "./descriptor";
import { fromFloat32 } from "./from-float32";
import type { KvCache } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";
import {
  decodeSafetensors,
  encodeSafetensors,
  type SafetensorsDtype,
  toSafetensorsDtype,
} from "./safetensors";
import { toFloat32 } from "./to-float32";
import { transposeKvPart } from "./to-kv-layout";

/**
 * vLLM releases whose ExampleConnector files differ. "0.29" stands for 0.29 and later (the
 * standardized per-layer view of PR #51718: MHA `kv_cache` `[T, H, C]`, C = K then V of one head
 * and token); "0.28" for every release before it (MHA `[2, T, H*D]`). MLA is `[T, 576]` in both.
 */
export type VllmExampleVersion = "0.28" | "0.29";

/** Every {@link VllmExampleVersion}, oldest first. */
export const VLLM_EXAMPLE_VERSIONS: readonly VllmExampleVersion[] = ["0.28", "0.29"];

/** The version written when none is given: the newest. */
export const VLLM_EXAMPLE_DEFAULT_VERSION: VllmExampleVersion = "0.29";

/** vLLM's fp8 KV cache (`--kv-cache-dtype fp8` / `fp8_e4m3` / `fp8_e5m2`) with static scales. */
export interface VllmFp8Cache {
  /** fp8_e4m3fn for vLLM's `fp8` and `fp8_e4m3`; fp8_e5m2 for `fp8_e5m2`. */
  readonly dtype: "fp8_e4m3fn" | "fp8_e5m2";
  /**
   * The decoder's static per-layer `k_scale` (the checkpoint's, or 1.0 when it has none): one
   * number for every layer or one per layer. vLLM stores `fp8(k / k_scale)` and reads
   * `fp8 * k_scale`; MLA's latent uses `k_scale`.
   */
  readonly kScale: number | readonly number[];
  /** The decoder's static per-layer `v_scale`, as `kScale`. */
  readonly vScale: number | readonly number[];
}

/** Options of {@link encodeVllmExampleLayer}. */
export interface VllmExampleLayerOptions {
  /** The decoder's vLLM version; default {@link VLLM_EXAMPLE_DEFAULT_VERSION}. */
  readonly vllmVersion?: VllmExampleVersion;
  /**
   * Quantise an f32/f16/bf16 cache into vLLM's fp8 cache (written as safetensors `U8`, the dtype
   * vLLM allocates fp8 caches with). Omit for caches already in the decoder's dtype.
   */
  readonly fp8?: VllmFp8Cache;
}

/** The static scale of `layer` from a number or a per-layer list; OUT_OF_RANGE when unusable. */
export function vllmStaticScale(
  scale: number | readonly number[],
  layer: number,
  field: string,
): number {
  const value = typeof scale === "number" ? scale : scale[layer];
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `${field} for layer ${layer} is ${value}, expected a finite number > 0`,
      { field },
    );
  }
  return value;
}

/** A data part of `cache` as `[T][H][D]` bytes (token-major). */
function nhdPart(cache: KvCache, layer: number, part: KvPart): Uint8Array {
  const d = cache.descriptor;
  const src = cache.part(layer, part);
  if (d.layout === "nhd") return src;
  return transposeKvPart(src, {
    tokenCount: d.tokenCount,
    headCount: headCountOf(d),
    rowBytes: headDimOf(d) * dtypeByteSize(d.dtype),
    from: "hnd",
    to: "nhd",
  });
}

/**
 * `fp8(x / scale)` as vLLM's cache write stores it (`scaled_vec_conversion` in
 * csrc/quantization/fp8/nvidia/quant_utils.cuh @ 2fed15b1649c12fc4b6d4b4c54c3083039532e5a):
 * `__nv_cvt_float_to_fp8(float(x) / scale, __NV_SATFINITE, ...)` with the float32 scale, so the
 * quotient is taken in float32; finite overflow and ±inf saturate, and every NaN becomes CUDA's
 * canonical NaN 0x7F (its sign dropped), where OPAL's generic encoder would keep the sign.
 */
function quantizeStatic(
  src: Uint8Array,
  dtype: KvDtype,
  fp8: VllmFp8Cache["dtype"],
  scale: number,
) {
  const values = toFloat32(src, dtype);
  const divisor = Math.fround(scale);
  if (divisor !== 1)
    for (let i = 0; i < values.length; i++) values[i] = (values[i] as number) / divisor;
  const out = fromFloat32(values, fp8, { saturate: true });
  for (let i = 0; i < values.length; i++) if (Number.isNaN(values[i])) out[i] = CUDA_FP8_NAN;
  return out;
}

/** The NaN `__nv_cvt_float_to_fp8` returns for any NaN input, E4M3 and E5M2 alike. */
const CUDA_FP8_NAN = 0x7f;

/** Checks what an ExampleConnector file can hold; returns the file dtype. */
function fileDtype(d: KvDescriptor, fp8: VllmFp8Cache | undefined): SafetensorsDtype {
  if (d.scaleScheme !== "none") {
    throw new KvFormatError(
      "UNSUPPORTED_LAYOUT",
      `the ExampleConnector file carries no scales (scaleScheme ${d.scaleScheme}); vLLM's fp8 cache has static per-layer scales: pass fp8 {kScale, vScale} with an f32/f16/bf16 cache`,
    );
  }
  if (d.dtype === "int8") {
    throw new KvFormatError("UNSUPPORTED_DTYPE", "vLLM's ExampleConnector takes no int8 cache");
  }
  if (fp8 && d.dtype !== "f32" && d.dtype !== "f16" && d.dtype !== "bf16") {
    throw new KvFormatError(
      "UNSUPPORTED_DTYPE",
      `fp8 quantises an f32, f16 or bf16 cache; this cache is already ${d.dtype}`,
    );
  }
  return fp8 || d.dtype.startsWith("fp8") ? "U8" : toSafetensorsDtype(d.dtype);
}

/**
 * One layer as the ExampleConnector's `<layer_name>.safetensors`: tensor `kv_cache` shaped as
 * `vllmVersion` saves it (docs/formats/vllm-example-connector.md): "0.29" MHA `[T, H, 2*D]` (per
 * token and head, D K values then D V values), "0.28" MHA `[2, T, H*D]`, MLA `[T, L+R]` in both.
 * fp8 (a cache in fp8 with scale scheme none, taken as already quantised with the decoder's
 * scales, or `options.fp8`) is written as `U8`. UNSUPPORTED_LAYOUT for caches with scale parts,
 * UNSUPPORTED_DTYPE for int8.
 */
export function encodeVllmExampleLayer(
  cache: KvCache,
  layer: number,
  options: VllmExampleLayerOptions = {},
): Uint8Array {
  const d = cache.descriptor;
  const version = options.vllmVersion ?? VLLM_EXAMPLE_DEFAULT_VERSION;
  const dtype = fileDtype(d, options.fp8);
  const t = d.tokenCount;
  const heads = headCountOf(d);
  const dim = headDimOf(d);
  const part = (name: KvPart, scaleOf: "kScale" | "vScale") => {
    const src = nhdPart(cache, layer, name);
    const fp8 = options.fp8;
    if (!fp8) return src;
    return quantizeStatic(src, d.dtype, fp8.dtype, vllmStaticScale(fp8[scaleOf], layer, scaleOf));
  };
  if (d.attention.kind === "mla") {
    return encodeSafetensors([
      ["kv_cache", { dtype, shape: [t, dim], data: part("latent", "kScale") }],
    ]);
  }
  const k = part("k", "kScale");
  const v = part("v", "vScale");
  if (version === "0.28") {
    const data = new Uint8Array(k.byteLength * 2);
    data.set(k, 0);
    data.set(v, k.byteLength);
    return encodeSafetensors([["kv_cache", { dtype, shape: [2, t, heads * dim], data }]]);
  }
  const row = k.byteLength / (t * heads);
  const data = new Uint8Array(k.byteLength * 2);
  for (let r = 0; r < t * heads; r++) {
    data.set(k.subarray(r * row, (r + 1) * row), 2 * r * row);
    data.set(v.subarray(r * row, (r + 1) * row), (2 * r + 1) * row);
  }
  return encodeSafetensors([["kv_cache", { dtype, shape: [t, heads, 2 * dim], data }]]);
}

/** What an ExampleConnector `kv_cache` tensor's shape fits. */
export interface VllmExampleFit {
  readonly vllmVersion: VllmExampleVersion;
  /** mha with the heads and head size the shape implies (0.28 cannot tell heads from head size: 0). */
  readonly attention:
    | { readonly kind: "mha"; readonly numKvHeads: number; readonly headDim: number }
    | { readonly kind: "mla"; readonly width: number };
  readonly tokenCount: number;
  /** The tensor shape, as vLLM's code names its axes. */
  readonly shapeName: string;
}

/**
 * Every reading of an ExampleConnector `kv_cache` shape: `[T, H, C]` (C even) fits 0.29 MHA;
 * `[2, T, W]` fits 0.28 MHA; `[T, W]` fits MLA of both versions. Empty when nothing fits.
 */
export function vllmExampleFits(shape: readonly number[]): VllmExampleFit[] {
  const fits: VllmExampleFit[] = [];
  if (shape.length === 2) {
    const [t, w] = shape as [number, number];
    for (const vllmVersion of VLLM_EXAMPLE_VERSIONS)
      fits.push({
        vllmVersion,
        attention: { kind: "mla", width: w },
        tokenCount: t,
        shapeName: "[T, 576]",
      });
  }
  if (shape.length === 3) {
    const [a, b, c] = shape as [number, number, number];
    if (a === 2)
      fits.push({
        vllmVersion: "0.28",
        attention: { kind: "mha", numKvHeads: 0, headDim: 0 },
        tokenCount: b,
        shapeName: "[2, T, H*D]",
      });
    if (c % 2 === 0)
      fits.push({
        vllmVersion: "0.29",
        attention: { kind: "mha", numKvHeads: b, headDim: c / 2 },
        tokenCount: a,
        shapeName: "[T, H, C]",
      });
  }
  return fits;
}

/** Options of {@link decodeVllmExampleLayer}. */
export interface VllmExampleDecodeOptions {
  /** Require this version's shape; default: whichever version's shape the file has (newest on a tie). */
  readonly vllmVersion?: VllmExampleVersion;
}

/**
 * Parses one ExampleConnector layer file (vLLM's or OPAL's) into parts of `descriptor` (its
 * layout). Accepts 0.29 MHA `[T, H, 2*D]`, 0.28 MHA `[2, T, H*D]` or `[2, T, H, D]`, MLA `[T, L+R]`
 * or `[T, 1, L+R]`. fp8 descriptors accept `U8` (vLLM's) and the matching `F8_*`; the values stay
 * quantised (real = q * the decoder's static scale). SHAPE_MISMATCH / UNSUPPORTED_DTYPE naming
 * what was expected.
 */
export function decodeVllmExampleLayer(
  bytes: Uint8Array,
  descriptor: KvDescriptor,
  options: VllmExampleDecodeOptions = {},
): Partial<Record<KvPart, Uint8Array>> {
  assertValidDescriptor(descriptor);
  const file = decodeSafetensors(bytes);
  const tensor = file.tensors.get("kv_cache");
  if (!tensor) throw new KvFormatError("SHAPE_MISMATCH", "file has no tensor kv_cache");
  const fp8 = descriptor.dtype.startsWith("fp8");
  const dtypes = fp8
    ? ["U8", toSafetensorsDtype(descriptor.dtype)]
    : [toSafetensorsDtype(descriptor.dtype)];
  if (!dtypes.includes(tensor.dtype)) {
    throw new KvFormatError(
      "UNSUPPORTED_DTYPE",
      `kv_cache dtype ${tensor.dtype}, expected ${dtypes.join(" or ")}`,
    );
  }
  const t = descriptor.tokenCount;
  const heads = headCountOf(descriptor);
  const dim = headDimOf(descriptor);
  const shape = tensor.shape.join(",");
  const byVersion: Record<VllmExampleVersion, string[]> =
    descriptor.attention.kind === "mla"
      ? { "0.28": [`${t},${dim}`, `${t},1,${dim}`], "0.29": [`${t},${dim}`, `${t},1,${dim}`] }
      : {
          "0.28": [`2,${t},${heads * dim}`, `2,${t},${heads},${dim}`],
          "0.29": [`${t},${heads},${2 * dim}`],
        };
  const candidates = options.vllmVersion
    ? [options.vllmVersion]
    : [...VLLM_EXAMPLE_VERSIONS].reverse();
  const version = candidates.find((v) => byVersion[v].includes(shape));
  if (!version) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `kv_cache shape [${shape}], expected ${candidates.map((v) => `[${byVersion[v][0]}] (vLLM ${v === "0.28" ? "<= 0.28" : ">= 0.29"})`).join(" or ")}`,
    );
  }
  const rowBytes = dim * dtypeByteSize(descriptor.dtype);
  const toLayout = (src: Uint8Array) =>
    descriptor.layout === "nhd"
      ? src.slice()
      : transposeKvPart(src, { tokenCount: t, headCount: heads, rowBytes, from: "nhd", to: "hnd" });
  if (descriptor.attention.kind === "mla") return { latent: toLayout(tensor.data) };
  const half = t * heads * rowBytes;
  if (version === "0.28") {
    return { k: toLayout(tensor.data.subarray(0, half)), v: toLayout(tensor.data.subarray(half)) };
  }
  const k = new Uint8Array(half);
  const v = new Uint8Array(half);
  for (let r = 0; r < t * heads; r++) {
    k.set(tensor.data.subarray(2 * r * rowBytes, (2 * r + 1) * rowBytes), r * rowBytes);
    v.set(tensor.data.subarray((2 * r + 1) * rowBytes, (2 * r + 2) * rowBytes), r * rowBytes);
  }
  return { k: toLayout(k), v: toLayout(v) };
}
