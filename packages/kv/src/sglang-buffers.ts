import {
  assertValidDescriptor,
  headCountOf,
  type KvDescriptor,
  type KvPart,
  partByteLength,
} from "./descriptor";
import type { KvCache } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";
import { rowBytesOf } from "./to-kv-layout";

/**
 * One layer of SGLang's token-major pool: `kBuffer[l]` / `vBuffer[l]` of shape
 * `[slots, head_num, head_dim]` (MLA: `kBuffer` only, `[slots, 1, latent + rope]`). Slot 0 is
 * SGLang's padding slot; callers pass the slots SGLang allocated (`out_cache_loc`).
 */
export interface SglangLayerBuffers {
  readonly kBuffer: Uint8Array;
  /** Absent for mla. */
  readonly vBuffer?: Uint8Array;
}

/** Options of the SGLang converters. */
export interface SglangOptions {
  /** Slot of each cached token, `tokenCount` entries. */
  readonly slots: ArrayLike<number>;
}

function plan(descriptor: KvDescriptor, buffers: SglangLayerBuffers, slots: ArrayLike<number>) {
  assertValidDescriptor(descriptor);
  const mla = descriptor.attention.kind === "mla";
  const heads = headCountOf(descriptor);
  const rowBytes = rowBytesOf(descriptor);
  const slotBytes = heads * rowBytes;
  const targets: [KvPart, Uint8Array][] = mla
    ? [["latent", buffers.kBuffer]]
    : [
        ["k", buffers.kBuffer],
        ["v", buffers.vBuffer as Uint8Array],
      ];
  let numSlots = -1;
  for (const [part, buffer] of targets) {
    if (!(buffer instanceof Uint8Array) || buffer.byteLength % slotBytes !== 0) {
      throw new KvFormatError(
        "SHAPE_MISMATCH",
        `SGLang ${part} buffer: ${buffer instanceof Uint8Array ? `${buffer.byteLength} bytes is not a multiple of` : "missing, expected slots x"} ${slotBytes} bytes per slot`,
        { field: part === "v" ? "vBuffer" : "kBuffer" },
      );
    }
    const n = buffer.byteLength / slotBytes;
    if (numSlots >= 0 && n !== numSlots) {
      throw new KvFormatError("SHAPE_MISMATCH", `k buffer has ${numSlots} slots, v buffer ${n}`);
    }
    numSlots = n;
  }
  if (slots.length !== descriptor.tokenCount) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `${slots.length} slots, expected ${descriptor.tokenCount} (one per token)`,
      {
        field: "slots",
      },
    );
  }
  const seen = new Map<number, number>();
  for (let i = 0; i < slots.length; i++) {
    const s = slots[i] as number;
    if (!Number.isInteger(s) || s < 0 || s >= numSlots) {
      throw new KvFormatError("OUT_OF_RANGE", `slot ${i} is ${s}, expected [0, ${numSlots})`, {
        field: "slots",
      });
    }
    const other = seen.get(s);
    if (other !== undefined) {
      throw new KvFormatError(
        "INVALID_OFFSETS",
        `tokens ${other} and ${i} both use slot ${s} (overlap)`,
        { field: "slots" },
      );
    }
    seen.set(s, i);
  }
  return { targets, heads, rowBytes, slotBytes };
}

/**
 * Writes layer `layer` of `cache` into SGLang's per-layer buffers at `options.slots` (same dtype;
 * heads = `headRange.count`). Other slots are untouched. Buffers and slots are checked before the
 * first byte is written: SHAPE_MISMATCH (buffer sizes, slot count), OUT_OF_RANGE (a slot outside
 * the buffers), INVALID_OFFSETS (two tokens on one slot).
 */
export function toSglangLayer(
  cache: KvCache,
  options: SglangOptions & { readonly layer: number; readonly buffers: SglangLayerBuffers },
): void {
  const d = cache.descriptor;
  const { targets, heads, rowBytes, slotBytes } = plan(d, options.buffers, options.slots);
  const t = d.tokenCount;
  for (const [part, buffer] of targets) {
    const src = cache.part(options.layer, part);
    for (let i = 0; i < t; i++) {
      const slot = (options.slots[i] as number) * slotBytes;
      if (d.layout === "nhd") {
        buffer.set(src.subarray(i * slotBytes, (i + 1) * slotBytes), slot);
      } else {
        for (let h = 0; h < heads; h++) {
          const from = (h * t + i) * rowBytes;
          buffer.set(src.subarray(from, from + rowBytes), slot + h * rowBytes);
        }
      }
    }
  }
}

/** Reads one layer back from SGLang buffers into new parts in `descriptor`'s layout. */
export function fromSglangLayer(
  buffers: SglangLayerBuffers,
  options: SglangOptions & { readonly descriptor: KvDescriptor },
): Partial<Record<KvPart, Uint8Array>> {
  const d = options.descriptor;
  const { targets, heads, rowBytes, slotBytes } = plan(d, buffers, options.slots);
  const t = d.tokenCount;
  const result: Partial<Record<KvPart, Uint8Array>> = {};
  for (const [part, buffer] of targets) {
    const out = new Uint8Array(partByteLength(d, part));
    for (let i = 0; i < t; i++) {
      const slot = (options.slots[i] as number) * slotBytes;
      if (d.layout === "nhd") {
        out.set(buffer.subarray(slot, slot + slotBytes), i * slotBytes);
      } else {
        for (let h = 0; h < heads; h++) {
          const from = slot + h * rowBytes;
          out.set(buffer.subarray(from, from + rowBytes), (h * t + i) * rowBytes);
        }
      }
    }
    result[part] = out;
  }
  return result;
}
