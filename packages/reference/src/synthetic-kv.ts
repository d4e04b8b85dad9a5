import { createHash } from "node:crypto";
import { Code, OpalError, Reason } from "@opal/core";
import type { KvAttention, KvDtype, KvHeadRange, KvLayout, KvPart, KvScaleScheme } from "@opal/kv";
import { mix32 } from "./prng";

/** The KV shape of a real model, enough to generate its KV traffic without its weights. */
export interface SyntheticModelShape {
  /** Stable name; part of every generated value's seed. */
  readonly name: string;
  /** Attention layers. */
  readonly numLayers: number;
  /** MHA/GQA heads or the MLA latent. */
  readonly attention: KvAttention;
}

/** Names of the built-in shapes. */
export type SyntheticShapeName = "llama-3-8b" | "llama-3-70b" | "qwen2.5-7b" | "deepseek-v3";

/** The built-in shape names. */
export function toSyntheticShapeNames(): SyntheticShapeName[] {
  return ["llama-3-8b", "llama-3-70b", "qwen2.5-7b", "deepseek-v3"];
}

/**
 * A built-in shape: `llama-3-8b` 32 layers x 8 KV heads x 128; `llama-3-70b` 80 x 8 x 128;
 * `qwen2.5-7b` 28 x 4 x 128; `deepseek-v3` 61 MLA layers of 512 latent + 64 rope dims.
 * Throws INVALID_ARGUMENT (reason `MODEL_WEIGHTS_INVALID`) for another name.
 */
export function syntheticShape(name: SyntheticShapeName): SyntheticModelShape {
  switch (name) {
    case "llama-3-8b":
      return { name, numLayers: 32, attention: { kind: "mha", numKvHeads: 8, headDim: 128 } };
    case "llama-3-70b":
      return { name, numLayers: 80, attention: { kind: "mha", numKvHeads: 8, headDim: 128 } };
    case "qwen2.5-7b":
      return { name, numLayers: 28, attention: { kind: "mha", numKvHeads: 4, headDim: 128 } };
    case "deepseek-v3":
      return { name, numLayers: 61, attention: { kind: "mla", latentDim: 512, ropeDim: 64 } };
  }
  throw new OpalError(
    Code.INVALID_ARGUMENT,
    `unknown synthetic shape ${JSON.stringify(name)} (expected one of ${toSyntheticShapeNames().join(", ")})`,
    { reason: Reason.MODEL_WEIGHTS_INVALID },
  );
}

/**
 * What to generate: one part of one layer for a token range and head range. A `KvDescriptor` spread
 * with `tokens`, `layer` and `part` is a valid request.
 */
export interface SyntheticKvRequest {
  /** The prompt's token ids; at least `tokenStart + tokenCount` of them are read. */
  readonly tokens: ArrayLike<number>;
  /** Layer index, `0..numLayers-1`. */
  readonly layer: number;
  /** `k`/`v` for MHA, `latent` for MLA, or the matching `*_scale` part. */
  readonly part: KvPart;
  /** First position generated. */
  readonly tokenStart: number;
  /** Positions generated, >= 0. */
  readonly tokenCount: number;
  /** Heads generated; default all (MLA: its one latent "head"). */
  readonly headRange?: KvHeadRange;
  readonly dtype: KvDtype;
  /** Default `nhd`; MLA only supports `nhd`. */
  readonly layout?: KvLayout;
  /** Scales of the `*_scale` parts; default `none`. */
  readonly scaleScheme?: KvScaleScheme;
}

/** Generator of deterministic KV bytes for one {@link SyntheticModelShape}. */
export interface SyntheticKv {
  readonly shape: SyntheticModelShape;
  /**
   * Lower-case hex SHA-256 of the shape (`opal-synthetic-kv-v1` + canonical JSON); use it as the
   * `modelFingerprint` of synthetic traffic.
   */
  readonly fingerprint: string;
  /** Bytes {@link SyntheticKv.fill} writes for `request`. */
  byteLengthOf(request: Omit<SyntheticKvRequest, "tokens">): number;
  /**
   * Writes the bytes of `request` at the start of `target` (which must hold
   * {@link SyntheticKv.byteLengthOf} bytes) and returns that length. Each row (position, head) of
   * `headDim` (MLA: `latentDim + ropeDim`) elements depends only on the shape, the tokens up to and
   * including its position, the layer, the part, the head and the dtype: the same for any token
   * range, head range or layout that contains it, and for any longer prompt with the same prefix.
   * Values are finite with magnitudes in [1/32, 8) (f32, f16, bf16, fp8; fp8 e4m3fn never NaN);
   * int8 data lies in [-64, 63] and its scale parts hold 1/16 (dequantised |x| <= 4), fp8 scale parts hold 1.
   * Throws INVALID_ARGUMENT for a request outside the shape or a too-small target.
   */
  fill(target: Uint8Array, request: SyntheticKvRequest): number;
}

const DTYPE_BYTES: Record<KvDtype, number> = {
  f32: 4,
  f16: 2,
  bf16: 2,
  fp8_e4m3fn: 1,
  fp8_e5m2: 1,
  int8: 1,
};

const PART_SALT: Record<KvPart, number> = {
  k: 0x6b,
  v: 0x76,
  latent: 0x6c,
  k_scale: 0x6b5,
  v_scale: 0x765,
  latent_scale: 0x6c5,
};

const DTYPE_SALT: Record<KvDtype, number> = {
  f32: 1,
  f16: 2,
  bf16: 3,
  fp8_e4m3fn: 4,
  fp8_e5m2: 5,
  int8: 6,
};

function bad(message: string, reason: Reason = Reason.INVALID_FIELD): OpalError {
  return new OpalError(Code.INVALID_ARGUMENT, message, { reason });
}

/**
 * Fills `words` 32-bit words of `out` from `offset` with a xorshift32 stream seeded by `seed`, each
 * word turned into `dtype` elements with magnitudes in [1/32, 8) by forcing the exponent bits into
 * a small range (int8: bytes in [-64, 63]). One branch-free loop per dtype.
 */
function fillWords(out: Uint32Array, offset: number, words: number, seed: number, dtype: KvDtype) {
  let x = seed | 1;
  const end = offset + words;
  switch (dtype) {
    case "f32":
      for (let i = offset; i < end; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        out[i] = (x & 0x807fffff) | ((122 + ((x >>> 20) & 7)) << 23);
      }
      return;
    case "bf16":
      for (let i = offset; i < end; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        out[i] = (x & 0x807f807f) | ((((x >>> 4) & 0x00070007) + 0x007a007a) << 7);
      }
      return;
    case "f16":
      for (let i = offset; i < end; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        out[i] = (x & 0x83ff83ff) | ((((x >>> 7) & 0x00070007) + 0x000a000a) << 10);
      }
      return;
    case "fp8_e4m3fn":
      for (let i = offset; i < end; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        out[i] = (x & 0x87878787) | ((((x >>> 3) & 0x07070707) + 0x02020202) << 3);
      }
      return;
    case "fp8_e5m2":
      for (let i = offset; i < end; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        out[i] = (x & 0x83838383) | ((((x >>> 2) & 0x07070707) + 0x0a0a0a0a) << 2);
      }
      return;
    case "int8":
      for (let i = offset; i < end; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        out[i] = (x & 0xbfbfbfbf) | ((x >>> 1) & 0x40404040);
      }
      return;
  }
}

/** Creates the generator for `shape` (validated: positive layer count and dimensions). */
export function createSyntheticKv(shape: SyntheticModelShape): SyntheticKv {
  const a = shape.attention;
  const dims = a.kind === "mla" ? [a.latentDim, a.ropeDim] : [a.numKvHeads, a.headDim];
  if (
    !Number.isSafeInteger(shape.numLayers) ||
    shape.numLayers < 1 ||
    !dims.every((d) => Number.isSafeInteger(d) && d > 0)
  ) {
    throw bad(`invalid synthetic shape ${JSON.stringify(shape)}`, Reason.INVALID_FIELD);
  }
  const rowElements = a.kind === "mla" ? a.latentDim + a.ropeDim : a.headDim;
  const totalHeads = a.kind === "mla" ? 1 : a.numKvHeads;
  const fingerprint = createHash("sha256")
    .update(
      `opal-synthetic-kv-v1\n${JSON.stringify({ attention: a, name: shape.name, numLayers: shape.numLayers })}`,
    )
    .digest("hex");
  let nameSeed = 0x2545f491;
  for (let i = 0; i < shape.name.length; i++) nameSeed = mix32(nameSeed ^ shape.name.charCodeAt(i));
  let scratch = new Uint32Array(0);

  const resolve = (request: Omit<SyntheticKvRequest, "tokens">) => {
    const { layer, part, tokenStart, tokenCount, dtype } = request;
    const layout = request.layout ?? "nhd";
    const scheme = request.scaleScheme ?? "none";
    const headRange = request.headRange ?? { start: 0, count: totalHeads };
    if (!Number.isSafeInteger(layer) || layer < 0 || layer >= shape.numLayers) {
      throw bad(`layer ${layer} out of range (model has ${shape.numLayers} layers)`);
    }
    if (!Object.hasOwn(DTYPE_BYTES, dtype)) throw bad(`unsupported dtype ${JSON.stringify(dtype)}`);
    const dataParts: KvPart[] = a.kind === "mla" ? ["latent"] : ["k", "v"];
    const scaleParts: KvPart[] = a.kind === "mla" ? ["latent_scale"] : ["k_scale", "v_scale"];
    const isScale = scaleParts.includes(part);
    if (!dataParts.includes(part) && !isScale) {
      throw bad(`part ${part} not in ${[...dataParts, ...scaleParts].join(", ")} for ${a.kind}`);
    }
    if (
      !Number.isSafeInteger(tokenStart) ||
      !Number.isSafeInteger(tokenCount) ||
      tokenStart < 0 ||
      tokenCount < 0
    ) {
      throw bad(`token range ${tokenStart}+${tokenCount} invalid (expected integers >= 0)`);
    }
    if (
      !Number.isSafeInteger(headRange.start) ||
      !Number.isSafeInteger(headRange.count) ||
      headRange.start < 0 ||
      headRange.count < 1 ||
      headRange.start + headRange.count > totalHeads
    ) {
      throw bad(
        `head range ${headRange.start}+${headRange.count} out of range (model has ${totalHeads} KV heads)`,
      );
    }
    if (a.kind === "mla" && layout !== "nhd")
      throw bad(`layout ${layout} invalid for mla (only nhd)`);
    if (isScale && (scheme === "none" || !(dtype === "int8" || dtype.startsWith("fp8")))) {
      throw bad(
        `part ${part} needs a quantised dtype and a scale scheme (got ${dtype}, ${scheme})`,
      );
    }
    let byteLength: number;
    if (isScale) {
      const count =
        scheme === "per_tensor" ? 1 : scheme === "per_token" ? tokenCount : headRange.count;
      byteLength = 4 * count;
    } else {
      byteLength = tokenCount * headRange.count * rowElements * DTYPE_BYTES[dtype];
    }
    return { layout, headRange, isScale, byteLength };
  };

  return {
    shape,
    fingerprint,
    byteLengthOf(request) {
      return resolve(request).byteLength;
    },
    fill(target, request) {
      const { layout, headRange, isScale, byteLength } = resolve(request);
      const { tokens, layer, part, tokenStart, tokenCount, dtype } = request;
      if (target.byteLength < byteLength) {
        throw bad(`target has ${target.byteLength} bytes (expected >= ${byteLength})`);
      }
      if (isScale) {
        const scale = dtype === "int8" ? 0.0625 : 1;
        const view = new DataView(target.buffer, target.byteOffset, byteLength);
        for (let i = 0; i < byteLength; i += 4) view.setFloat32(i, scale, true);
        return byteLength;
      }
      const end = tokenStart + tokenCount;
      if (tokens.length < end) {
        throw bad(`tokens has ${tokens.length} ids (expected >= tokenStart + tokenCount = ${end})`);
      }
      // Running hash of the prefix: the seed of position p depends on tokens 0..p only.
      const seeds = new Uint32Array(tokenCount);
      let h = nameSeed;
      for (let p = 0; p < end; p++) {
        h = mix32(h ^ mix32((tokens[p]! >>> 0) + Math.imul(p + 1, 0x9e3779b9)));
        if (p >= tokenStart) seeds[p - tokenStart] = h;
      }
      const layerSalt = mix32(
        Math.imul(layer + 1, 0x632be5ab) ^
          Math.imul(PART_SALT[part], 0x85157af5) ^
          DTYPE_SALT[dtype],
      );
      const rowBytes = rowElements * DTYPE_BYTES[dtype];
      const rowWords = Math.ceil(rowBytes / 4);
      const direct = target.byteOffset % 4 === 0 && rowBytes % 4 === 0;
      const words = direct
        ? new Uint32Array(target.buffer, target.byteOffset, byteLength / 4)
        : undefined;
      if (!direct && scratch.length < rowWords) scratch = new Uint32Array(rowWords);
      const scratchBytes = direct ? undefined : new Uint8Array(scratch.buffer, 0, rowBytes);
      const heads = headRange.count;
      for (let ti = 0; ti < tokenCount; ti++) {
        const posSeed = mix32(seeds[ti]! ^ layerSalt);
        for (let hi = 0; hi < heads; hi++) {
          const seed = mix32(posSeed + Math.imul(headRange.start + hi + 1, 0x27d4eb2f));
          const row = layout === "nhd" ? ti * heads + hi : hi * tokenCount + ti;
          if (words !== undefined) {
            fillWords(words, row * rowWords, rowWords, seed, dtype);
          } else {
            fillWords(scratch, 0, rowWords, seed, dtype);
            target.set(scratchBytes!, row * rowBytes);
          }
        }
      }
      return byteLength;
    },
  };
}
