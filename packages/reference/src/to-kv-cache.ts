import { Code, OpalError, Reason } from "@opal/core";
import {
  createKvCache,
  fromFloat32,
  type KvCache,
  type KvDescriptor,
  type KvLayout,
  toFloat32,
  transposeKvPart,
} from "@opal/kv";
import type { ModelConfig } from "./model-config";
import { fromKvLayers, type ReferenceKvCache } from "./reference-kv-cache";

/** Options of {@link toKvCache}. */
export interface ToKvCacheOptions {
  /** The model's fingerprint (`ReferenceModel.fingerprint`), copied into the descriptor. */
  readonly modelFingerprint: string;
  /** First position carried; default 0. */
  readonly tokenStart?: number;
  /** Positions carried; default all from `tokenStart` to `cache.numTokens`. */
  readonly tokenCount?: number;
  /** Element type; default `f32` (f16/bf16 round to nearest even). */
  readonly dtype?: "f32" | "f16" | "bf16";
  /** Default `nhd`. */
  readonly layout?: KvLayout;
  /** Block size recorded in the descriptor, in tokens; default 16. */
  readonly blockSizeTokens?: number;
}

function mismatch(message: string): OpalError {
  return new OpalError(Code.INVALID_ARGUMENT, message, { reason: Reason.INVALID_FIELD });
}

/**
 * Copies rows `tokenStart..tokenStart+tokenCount-1` of a reference cache into an `@opal/kv`
 * `KvCache` (all KV heads, parts `k` and `v`, no scales) in the requested dtype and layout.
 * The descriptor's numerics say `deviceKind: "reference"`, bit-exact. The result owns new buffers.
 */
export function toKvCache(cache: ReferenceKvCache, options: ToKvCacheOptions): KvCache {
  const tokenStart = options.tokenStart ?? 0;
  const tokenCount = options.tokenCount ?? cache.numTokens - tokenStart;
  if (
    !Number.isSafeInteger(tokenStart) ||
    !Number.isSafeInteger(tokenCount) ||
    tokenStart < 0 ||
    tokenCount < 1 ||
    tokenStart + tokenCount > cache.numTokens
  ) {
    throw new OpalError(
      Code.OUT_OF_RANGE,
      `token range ${tokenStart}+${tokenCount} out of range (cache holds ${cache.numTokens} tokens; at least 1 needed)`,
      { reason: Reason.RESUME_POSITION_INVALID },
    );
  }
  const dtype = options.dtype ?? "f32";
  const layout = options.layout ?? "nhd";
  const descriptor: KvDescriptor = {
    modelFingerprint: options.modelFingerprint,
    numLayers: cache.numLayers,
    attention: { kind: "mha", numKvHeads: cache.numKvHeads, headDim: cache.headDim },
    headRange: { start: 0, count: cache.numKvHeads },
    dtype,
    scaleScheme: "none",
    layout,
    tokenStart,
    tokenCount,
    blockSizeTokens: options.blockSizeTokens ?? 16,
    numerics: {
      deviceKind: "reference",
      precisionPath: `f32 reference (@opal/reference), ${dtype} out`,
      bitExact: true,
      maxAbsError: 0,
      maxRelError: 0,
    },
  };
  const out = createKvCache(descriptor);
  const row = cache.numKvHeads * cache.headDim;
  const rowBytes = cache.headDim * (dtype === "f32" ? 4 : 2);
  for (let l = 0; l < cache.numLayers; l++) {
    for (const [part, source] of [
      ["k", cache.keys[l]!],
      ["v", cache.values[l]!],
    ] as const) {
      const rows = source.subarray(tokenStart * row, (tokenStart + tokenCount) * row);
      const target = out.part(l, part);
      if (layout === "nhd") {
        fromFloat32(rows, dtype, { into: target });
      } else {
        transposeKvPart(fromFloat32(rows, dtype), {
          tokenCount,
          headCount: cache.numKvHeads,
          rowBytes,
          from: "nhd",
          to: "hnd",
          into: target,
        });
      }
    }
  }
  return out;
}

/**
 * Rebuilds a reference cache from an `@opal/kv` `KvCache` received for a model with
 * `config`: MHA with the model's KV head count and head dim, all heads, every layer, starting at
 * position 0, dtype f32, f16 or bf16 (widened exactly to f32), layout `nhd` or `hnd`. Quantised caches
 * must be dequantised first (`dequantizeKv` of `@opal/kv`): UNIMPLEMENTED (reason
 * `UNSUPPORTED_DTYPE`). Shape mismatches throw INVALID_ARGUMENT (reason `INVALID_FIELD`).
 */
export function fromKvCache(config: ModelConfig, kv: KvCache): ReferenceKvCache {
  const d = kv.descriptor;
  const a = d.attention;
  if (a.kind !== "mha") throw mismatch(`KV attention is ${a.kind} (the reference model is mha)`);
  if (
    a.numKvHeads !== config.numKeyValueHeads ||
    a.headDim !== config.headDim ||
    d.numLayers !== config.numHiddenLayers
  ) {
    throw mismatch(
      `KV has ${d.numLayers} layers x ${a.numKvHeads} heads x ${a.headDim} dims (model has ${config.numHiddenLayers} x ${config.numKeyValueHeads} x ${config.headDim})`,
    );
  }
  if (d.headRange.start !== 0 || d.headRange.count !== a.numKvHeads) {
    throw mismatch(
      `KV carries heads ${d.headRange.start}+${d.headRange.count} (expected all ${a.numKvHeads}; merge head ranges first)`,
    );
  }
  if (d.tokenStart !== 0) {
    throw mismatch(`KV starts at position ${d.tokenStart} (a reference cache starts at 0)`);
  }
  if (d.dtype !== "f32" && d.dtype !== "f16" && d.dtype !== "bf16") {
    throw new OpalError(
      Code.UNIMPLEMENTED,
      `KV dtype ${d.dtype} is quantised (expected f32, f16 or bf16; dequantize with @opal/kv first)`,
      { reason: Reason.UNSUPPORTED_DTYPE },
    );
  }
  const rowBytes = a.headDim * (d.dtype === "f32" ? 4 : 2);
  const widen = (bytes: Uint8Array) => {
    const nhd =
      d.layout === "nhd"
        ? bytes
        : transposeKvPart(bytes, {
            tokenCount: d.tokenCount,
            headCount: a.numKvHeads,
            rowBytes,
            from: "hnd",
            to: "nhd",
          });
    return toFloat32(nhd, d.dtype);
  };
  const keys: Float32Array[] = [];
  const values: Float32Array[] = [];
  for (let l = 0; l < d.numLayers; l++) {
    keys.push(widen(kv.part(l, "k")));
    values.push(widen(kv.part(l, "v")));
  }
  return fromKvLayers(config, keys, values, d.tokenCount);
}
