import {
  dtypeByteSize,
  KV_DTYPES,
  type KvDescriptor,
  type KvDtype,
  type KvLayerParts,
  type SglangLayerBuffers,
  toSglangLayer,
} from "@opal/kv";
import { invalidOption } from "../options/invalid-option";
import { assertFitsLayerTarget, checkCount } from "./check-layer-target";
import { createGuardedSink } from "./create-guarded-sink";
import type { KvSink } from "./kv-sink";
import { copyScales, layerAsCache, zeroLayer } from "./layer-as-cache";
import { descriptorMismatch } from "./sink-errors";

/**
 * Options of {@link createSglangSink}: the caller's SGLang per-layer buffers and what they hold.
 * The description (`attention`, `dtype`, `headNum`, `headDim`) is checked against the buffer sizes
 * here and against the cache's descriptor at `open`.
 */
export interface SglangSinkOptions {
  /**
   * SGLang's `k_buffer[l]`, one per layer, caller-owned: `[slots, headNum, headDim]` token-major
   * (mla: `[slots, 1, latent + rope]`, the only buffer). All buffers have the same number of slots.
   */
  readonly kBuffers: readonly Uint8Array[];
  /** SGLang's `v_buffer[l]`, same shape as `kBuffers`; required for mha, absent for mla. */
  readonly vBuffers?: readonly Uint8Array[];
  /** Slot of each token of the cache (SGLang's `out_cache_loc`), `tokenCount` distinct slots >= 1 (slot 0 is padding). */
  readonly slots: ArrayLike<number>;
  /** Element type of the buffers. */
  readonly dtype: KvDtype;
  /** KV heads per slot held by this rank (SGLang's `head_num`); 1 for mla. */
  readonly headNum: number;
  /** Elements per head (`head_dim`; `latent + rope`, e.g. 576, for mla). */
  readonly headDim: number;
  /** Attention kind of the buffers; default "mha". */
  readonly attention?: "mha" | "mla";
}

/** What {@link createSglangSink} committed. */
export interface SglangReceipt {
  /** Tokens written (one slot each, in every layer). */
  readonly tokens: number;
  /** Per layer, copies of the scale parts (little-endian f32); empty without scales. */
  readonly scales: readonly KvLayerParts["parts"][];
}

/**
 * A sink that writes each layer straight into the caller's SGLang per-layer buffers at the given
 * slots, as layers arrive (other slots untouched).
 *
 * Ownership and visibility: the buffers are written in place before `commit`, so the caller must
 * not let the decoder read these slots before `commit` resolves. `abort` (or any failure) zeroes
 * the slots this sink wrote, in every layer touched.
 *
 * `open` rejects with FAILED_PRECONDITION DESCRIPTOR_MISMATCH, naming the buffers' value and the
 * cache's, when attention kind, dtype, heads, head dim, layer count or token count (vs
 * `slots.length`) differ. Bad options throw INVALID_ARGUMENT INVALID_FIELD here.
 */
export function createSglangSink(options: SglangSinkOptions): KvSink<SglangReceipt> {
  const { kBuffers, vBuffers, slots } = options;
  const attention = options.attention ?? "mha";
  if (attention !== "mha" && attention !== "mla")
    throw invalidOption("attention", '"mha" or "mla"', attention);
  if (!KV_DTYPES.includes(options.dtype))
    throw invalidOption("dtype", KV_DTYPES.join(", "), options.dtype);
  const heads = checkCount("headNum", options.headNum, 1);
  const headDim = checkCount("headDim", options.headDim, 1);
  if (attention === "mla" && heads !== 1) throw invalidOption("headNum", "1 for mla", heads);
  const slotBytes = heads * headDim * dtypeByteSize(options.dtype);
  if (!Array.isArray(kBuffers) || kBuffers.length === 0)
    throw invalidOption("kBuffers", "one Uint8Array per layer", kBuffers);
  const first = kBuffers[0];
  if (
    !(first instanceof Uint8Array) ||
    first.byteLength === 0 ||
    first.byteLength % slotBytes !== 0
  )
    throw invalidOption("kBuffers[0]", `a multiple of ${slotBytes} bytes per slot`, first);
  const numSlots = first.byteLength / slotBytes;
  const buffers: [string, readonly Uint8Array[]][] = [["kBuffers", kBuffers]];
  if (attention === "mha") {
    if (!Array.isArray(vBuffers) || vBuffers.length !== kBuffers.length)
      throw invalidOption("vBuffers", `${kBuffers.length} buffers (one per layer)`, vBuffers);
    buffers.push(["vBuffers", vBuffers]);
  } else if (vBuffers !== undefined) {
    throw invalidOption("vBuffers", "none for mla", vBuffers);
  }
  for (const [name, list] of buffers) {
    list.forEach((buffer, i) => {
      if (!(buffer instanceof Uint8Array) || buffer.byteLength !== first.byteLength)
        throw invalidOption(
          `${name}[${i}]`,
          `${first.byteLength} bytes (${numSlots} slots x ${heads} heads x ${headDim} x ${options.dtype})`,
          buffer,
        );
    });
  }
  if (!slots || typeof slots.length !== "number")
    throw invalidOption("slots", "an array of slot indices", slots);
  const seen = new Set<number>();
  for (let i = 0; i < slots.length; i++) {
    const slot = slots[i];
    if (typeof slot !== "number" || !Number.isInteger(slot) || slot < 1 || slot >= numSlots)
      throw invalidOption(`slots[${i}]`, `a slot in [1, ${numSlots}) (0 is padding)`, slot);
    if (seen.has(slot))
      throw invalidOption(`slots[${i}]`, "a slot not used by another token", slot);
    seen.add(slot);
  }

  let descriptor: KvDescriptor | undefined;
  let touched = 0;
  let scales: KvLayerParts["parts"][] = [];
  const write = (d: KvDescriptor, layer: KvLayerParts) => {
    const target: SglangLayerBuffers = {
      kBuffer: kBuffers[layer.layer] as Uint8Array,
      vBuffer: vBuffers?.[layer.layer],
    };
    toSglangLayer(layerAsCache(d, layer), { layer: layer.layer, buffers: target, slots });
  };

  return createGuardedSink<SglangReceipt>({
    open(d) {
      assertFitsLayerTarget(d, {
        noun: "buffers",
        layerNoun: "layer buffers",
        headsField: "head_num",
        headDimField: "head_dim",
        attention,
        dtype: options.dtype,
        heads: heads,
        headDim: headDim,
        layers: kBuffers.length,
      });
      if (d.tokenCount !== slots.length) {
        throw descriptorMismatch(
          "tokens",
          `${slots.length} slots were given`,
          `the cache holds ${d.tokenCount} tokens`,
        );
      }
      descriptor = d;
    },

    writeLayer(layer) {
      const d = descriptor as KvDescriptor;
      touched = layer.layer + 1;
      write(d, layer);
      if (d.scaleScheme !== "none") scales.push(copyScales(d, layer));
    },

    commit() {
      return { tokens: slots.length, scales };
    },

    discard() {
      scales = [];
      const d = descriptor;
      if (!d) return;
      for (let layer = 0; layer < touched; layer++) write(d, zeroLayer(d, layer));
    },
  });
}
