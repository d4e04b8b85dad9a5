import { KvFormatError } from "./kv-format-error";

/** Element type of the KV data parts. Scale parts are always f32. */
export type KvDtype = "f32" | "f16" | "bf16" | "fp8_e4m3fn" | "fp8_e5m2" | "int8";
/** How quantised dtypes (fp8, int8) carry scales; "none" for f32/f16/bf16 (fp8 "none" = scale 1). */
export type KvScaleScheme = "none" | "per_tensor" | "per_token" | "per_head";
/** Physical order of one layer part: "nhd" = [tokens][heads][dim] (token-major); "hnd" = [heads][tokens][dim]. */
export type KvLayout = "nhd" | "hnd";
/** Parts of one layer, in stream order: data parts first, then scale parts. */
export type KvPart = "k" | "v" | "latent" | "k_scale" | "v_scale" | "latent_scale";
/** Attention shape: MHA/GQA/MQA heads, or MLA's single latent "head" of `latentDim + ropeDim`. */
export type KvAttention =
  | { readonly kind: "mha"; readonly numKvHeads: number; readonly headDim: number }
  | { readonly kind: "mla"; readonly latentDim: number; readonly ropeDim: number };
/** Tensor-parallel slice of the KV heads: heads `[start, start + count)`. */
export interface KvHeadRange {
  readonly start: number;
  readonly count: number;
}
/** Where the numbers came from and how far they may be from the exact reference. */
export interface KvNumerics {
  readonly deviceKind: "reference" | "digital" | "optical" | "analog";
  /** Free text, e.g. "f32 accumulate, bf16 out"; at most 256 characters. */
  readonly precisionPath: string;
  /** True: equals the reference bit for bit in this dtype. */
  readonly bitExact: boolean;
  /** Declared bound vs the exact reference; 0 when `bitExact`. */
  readonly maxAbsError: number;
  readonly maxRelError: number;
}
/**
 * Describes a KV cache completely: which model, which tokens, which heads, how the bytes are laid
 * out. Plain data; check it with {@link assertValidDescriptor} before trusting it.
 */
export interface KvDescriptor {
  /** Lower-case hex (1 to 128 digits), identifies architecture + shapes + weights. */
  readonly modelFingerprint: string;
  /** Number of attention layers carried, 1 to 65536. */
  readonly numLayers: number;
  readonly attention: KvAttention;
  /** For mla: `{start: 0, count: 1}`. */
  readonly headRange: KvHeadRange;
  readonly dtype: KvDtype;
  readonly scaleScheme: KvScaleScheme;
  /** For mla only "nhd" is valid. */
  readonly layout: KvLayout;
  /** Absolute position of the first token carried (0 for a whole prompt). */
  readonly tokenStart: number;
  /** Number of tokens carried, at least 1. */
  readonly tokenCount: number;
  /** The block size prefix hashing and paged layouts use, in tokens. */
  readonly blockSizeTokens: number;
  readonly numerics: KvNumerics;
}

/** What the byte sizes of a cache depend on: a descriptor's shape and format. */
export type KvShape = Pick<
  KvDescriptor,
  "numLayers" | "attention" | "headRange" | "dtype" | "scaleScheme" | "tokenCount"
>;

/** Largest byte length of one layer part (2^40 bytes). */
export const MAX_PART_BYTE_LENGTH = 2 ** 40;

const dtypeSizes: Readonly<Record<KvDtype, number>> = {
  f32: 4,
  f16: 2,
  bf16: 2,
  fp8_e4m3fn: 1,
  fp8_e5m2: 1,
  int8: 1,
};

/** All dtypes, in a fixed order. */
export const KV_DTYPES: readonly KvDtype[] = Object.keys(dtypeSizes) as KvDtype[];
/** All parts, in canonical stream order. */
export const KV_PARTS: readonly KvPart[] = [
  "k",
  "v",
  "latent",
  "k_scale",
  "v_scale",
  "latent_scale",
];

/** Bytes per element of `dtype` (4, 2 or 1). Throws UNSUPPORTED_DTYPE for anything else. */
export function dtypeByteSize(dtype: KvDtype): number {
  const size = Object.hasOwn(dtypeSizes, dtype) ? dtypeSizes[dtype] : undefined;
  if (size === undefined) {
    throw new KvFormatError(
      "UNSUPPORTED_DTYPE",
      `dtype ${JSON.stringify(dtype)} is not one of ${KV_DTYPES.join(", ")}`,
      {
        field: "dtype",
      },
    );
  }
  return size;
}

/** True for the quantised dtypes (fp8 and int8), whose parts may carry scales. */
export function isQuantizedDtype(dtype: KvDtype): boolean {
  return dtype === "fp8_e4m3fn" || dtype === "fp8_e5m2" || dtype === "int8";
}

/** Parts of each layer in stream order: mha `k, v` (+ `k_scale, v_scale`), mla `latent` (+ `latent_scale`). */
export function partsOf(descriptor: KvShape): readonly KvPart[] {
  const scaled = descriptor.scaleScheme !== "none";
  if (descriptor.attention.kind === "mla") return scaled ? ["latent", "latent_scale"] : ["latent"];
  return scaled ? ["k", "v", "k_scale", "v_scale"] : ["k", "v"];
}

/** True for `k_scale`, `v_scale` and `latent_scale`. */
export function isScalePart(part: KvPart): boolean {
  return part === "k_scale" || part === "v_scale" || part === "latent_scale";
}

/** Heads carried per token: `headRange.count` for mha, 1 for mla. */
export function headCountOf(descriptor: KvShape): number {
  return descriptor.attention.kind === "mla" ? 1 : descriptor.headRange.count;
}

/** Elements per head row: `headDim` for mha, `latentDim + ropeDim` for mla. */
export function headDimOf(descriptor: KvShape): number {
  const a = descriptor.attention;
  return a.kind === "mla" ? a.latentDim + a.ropeDim : a.headDim;
}

/** Number of f32 scales of a scale part: per_tensor 1, per_token `tokenCount`, per_head heads; 0 for none. */
export function scaleCountOf(descriptor: KvShape): number {
  switch (descriptor.scaleScheme) {
    case "per_tensor":
      return 1;
    case "per_token":
      return descriptor.tokenCount;
    case "per_head":
      return headCountOf(descriptor);
    default:
      return 0;
  }
}

/**
 * Byte length of one part of one layer: data parts `tokens * heads * dim * dtypeBytes`, scale parts
 * `4 * scaleCountOf(descriptor)`. Throws OUT_OF_RANGE for a part the descriptor does not have.
 */
export function partByteLength(descriptor: KvShape, part: KvPart): number {
  if (!partsOf(descriptor).includes(part)) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `part ${part} is not one of ${partsOf(descriptor).join(", ")}`,
      {
        field: "part",
      },
    );
  }
  if (isScalePart(part)) return 4 * scaleCountOf(descriptor);
  return (
    descriptor.tokenCount *
    headCountOf(descriptor) *
    headDimOf(descriptor) *
    dtypeByteSize(descriptor.dtype)
  );
}

/** Sum of the part byte lengths of one layer. */
export function layerByteLength(descriptor: KvShape): number {
  let total = 0;
  for (const part of partsOf(descriptor)) total += partByteLength(descriptor, part);
  return total;
}

/** Byte length of the whole cache: `numLayers * layerByteLength`. */
export function cacheByteLength(descriptor: KvShape): number {
  return descriptor.numLayers * layerByteLength(descriptor);
}

const fail = (field: string, expected: string, actual: unknown): never => {
  const name = field === "" ? "descriptor" : `descriptor.${field}`;
  throw new KvFormatError(
    "INVALID_DESCRIPTOR",
    `${name}: expected ${expected}, got ${stringify(actual)}`,
    {
      field: name,
    },
  );
};

function stringify(value: unknown): string {
  try {
    const text = JSON.stringify(value);
    if (text === undefined) return String(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  } catch {
    return String(value);
  }
}

function checkInt(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    fail(field, `an integer in [${min}, ${max}]`, value);
  }
  return value as number;
}

function checkNonNegative(field: string, value: unknown): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    fail(field, "a finite number >= 0", value);
  }
}

/**
 * Checks every field of `descriptor` and the arithmetic of its sizes. Throws a {@link KvFormatError}
 * (INVALID_DESCRIPTOR, UNSUPPORTED_DTYPE, UNSUPPORTED_LAYOUT or LENGTH_LIMIT) naming the field,
 * expected vs actual. Sizes are checked: a part (data or scale) may not exceed 2^40 bytes nor the
 * cache `Number.MAX_SAFE_INTEGER` bytes. Accepts any value (e.g. parsed JSON).
 */
export function assertValidDescriptor(descriptor: KvDescriptor): void {
  const d = descriptor as unknown as Record<string, unknown>;
  if (typeof d !== "object" || d === null) fail("", "an object", d);
  const fp = d.modelFingerprint;
  if (typeof fp !== "string" || !/^[0-9a-f]{1,128}$/.test(fp)) {
    fail("modelFingerprint", "1 to 128 lower-case hex digits", fp);
  }
  checkInt("numLayers", d.numLayers, 1, 65_536);
  const a = d.attention as Record<string, unknown> | undefined;
  if (typeof a !== "object" || a === null) fail("attention", "an object", a);
  const attention = a as Record<string, unknown>;
  if (attention.kind === "mha") {
    checkInt("attention.numKvHeads", attention.numKvHeads, 1, 65_536);
    checkInt("attention.headDim", attention.headDim, 1, 65_536);
  } else if (attention.kind === "mla") {
    checkInt("attention.latentDim", attention.latentDim, 1, 65_536);
    checkInt("attention.ropeDim", attention.ropeDim, 0, 65_536);
  } else {
    fail("attention.kind", '"mha" or "mla"', attention.kind);
  }
  const r = d.headRange as Record<string, unknown> | undefined;
  if (typeof r !== "object" || r === null) fail("headRange", "an object", r);
  const range = r as Record<string, unknown>;
  if (attention.kind === "mla") {
    if (range.start !== 0 || range.count !== 1)
      fail("headRange", "{start: 0, count: 1} for mla", r);
  } else {
    const heads = attention.numKvHeads as number;
    const start = checkInt("headRange.start", range.start, 0, heads - 1);
    checkInt("headRange.count", range.count, 1, heads - start);
  }
  const dtype = d.dtype;
  if (typeof dtype !== "string" || !KV_DTYPES.includes(dtype as KvDtype)) {
    throw new KvFormatError(
      "UNSUPPORTED_DTYPE",
      `descriptor.dtype: expected one of ${KV_DTYPES.join(", ")}, got ${stringify(dtype)}`,
      { field: "descriptor.dtype" },
    );
  }
  const scheme = d.scaleScheme;
  if (!["none", "per_tensor", "per_token", "per_head"].includes(scheme as string)) {
    fail("scaleScheme", "none, per_tensor, per_token or per_head", scheme);
  }
  if (!isQuantizedDtype(dtype as KvDtype) && scheme !== "none") {
    fail("scaleScheme", `"none" for dtype ${dtype}`, scheme);
  }
  if (dtype === "int8" && scheme === "none") {
    fail("scaleScheme", "per_tensor, per_token or per_head for dtype int8", scheme);
  }
  const layout = d.layout;
  if (layout !== "nhd" && layout !== "hnd") {
    throw new KvFormatError(
      "UNSUPPORTED_LAYOUT",
      `descriptor.layout: expected "nhd" or "hnd", got ${stringify(layout)}`,
      {
        field: "descriptor.layout",
      },
    );
  }
  if (attention.kind === "mla" && layout !== "nhd") {
    throw new KvFormatError(
      "UNSUPPORTED_LAYOUT",
      `descriptor.layout: expected "nhd" for mla, got ${stringify(layout)}`,
      {
        field: "descriptor.layout",
      },
    );
  }
  checkInt("tokenStart", d.tokenStart, 0, 2 ** 40);
  checkInt("tokenCount", d.tokenCount, 1, 2 ** 40);
  checkInt("blockSizeTokens", d.blockSizeTokens, 1, 1 << 20);
  const n = d.numerics as Record<string, unknown> | undefined;
  if (typeof n !== "object" || n === null) fail("numerics", "an object", n);
  const numerics = n as Record<string, unknown>;
  if (!["reference", "digital", "optical", "analog"].includes(numerics.deviceKind as string)) {
    fail("numerics.deviceKind", "reference, digital, optical or analog", numerics.deviceKind);
  }
  if (typeof numerics.precisionPath !== "string" || numerics.precisionPath.length > 256) {
    fail("numerics.precisionPath", "a string of at most 256 characters", numerics.precisionPath);
  }
  if (typeof numerics.bitExact !== "boolean")
    fail("numerics.bitExact", "a boolean", numerics.bitExact);
  checkNonNegative("numerics.maxAbsError", numerics.maxAbsError);
  checkNonNegative("numerics.maxRelError", numerics.maxRelError);
  if (numerics.bitExact && (numerics.maxAbsError !== 0 || numerics.maxRelError !== 0)) {
    fail("numerics.maxAbsError", "0 when bitExact", numerics.maxAbsError);
  }
  // Checked arithmetic: every product below stays exact because each factor is bounded. Scale
  // parts count too: per_token scales of a 1-byte, 1-element-per-token part are 4x its size.
  const elems = (d.tokenCount as number) * headCountOf(descriptor) * headDimOf(descriptor);
  const partBytes = Math.max(elems * dtypeByteSize(dtype as KvDtype), 4 * scaleCountOf(descriptor));
  if (partBytes > MAX_PART_BYTE_LENGTH) {
    throw new KvFormatError(
      "LENGTH_LIMIT",
      `part byte length ${partBytes} exceeds the limit of 2^40 (${MAX_PART_BYTE_LENGTH})`,
      { field: "descriptor.tokenCount" },
    );
  }
  const total = cacheByteLength(descriptor);
  if (!Number.isSafeInteger(total)) {
    throw new KvFormatError(
      "LENGTH_LIMIT",
      `cache byte length ${total} exceeds Number.MAX_SAFE_INTEGER`,
      { field: "descriptor.numLayers" },
    );
  }
}
