import {
  encodeSafetensorsHeader,
  headCountOf,
  headDimOf,
  isScalePart,
  type KvDescriptor,
  type KvPart,
  partByteLength,
  partsOf,
  SAFETENSORS_KV_DESCRIPTOR_KEY,
  scaleCountOf,
  toSafetensorsDtype,
} from "@opal/kv";
import { invalidOption } from "../options/invalid-option";
import { type AtomicFile, createAtomicFile } from "./create-atomic-file";
import { createGuardedSink } from "./create-guarded-sink";
import type { KvSink } from "./kv-sink";
import { sinkCancelled } from "./sink-errors";

/** Options of {@link createSafetensorsFileSink}. */
export interface SafetensorsFileSinkOptions {
  /**
   * Where the file appears on commit; its folder must exist. It must be free (absent, an
   * empty file or an empty folder) unless `replace`: ALREADY_EXISTS at `open`, and atomically at
   * `commit`.
   */
  readonly path: string;
  /** Atomically replace whatever `path` holds at `commit`; default false. */
  readonly replace?: boolean;
}

/** What {@link createSafetensorsFileSink} committed. */
export interface SafetensorsFileReceipt {
  /** The final path (`options.path`). */
  readonly path: string;
  /** Size of the file, in bytes. */
  readonly byteLength: number;
}

/**
 * Key of `__metadata__` holding the cache's `KvDescriptor` as JSON (`decodeSafetensorsKv` of
 * `@opal/kv` reads such files back).
 */
export const SAFETENSORS_DESCRIPTOR_KEY = SAFETENSORS_KV_DESCRIPTOR_KEY;

/** The safetensors shape of one part: data `[T, H, D]` (nhd) or `[H, T, D]` (hnd), scales `[n]`. */
function shapeOf(d: KvDescriptor, part: KvPart): number[] {
  if (isScalePart(part)) return [scaleCountOf(d)];
  const t = d.tokenCount;
  const h = headCountOf(d);
  return d.layout === "hnd" ? [h, t, headDimOf(d)] : [t, h, headDimOf(d)];
}

/** The safetensors header (length and JSON) for the whole cache, written before any layer. */
function encodeHeader(d: KvDescriptor): Uint8Array {
  const header: Record<string, unknown> = {
    __metadata__: { [SAFETENSORS_DESCRIPTOR_KEY]: JSON.stringify(d) },
  };
  let offset = 0;
  for (let layer = 0; layer < d.numLayers; layer++) {
    for (const part of partsOf(d)) {
      const length = partByteLength(d, part);
      header[`layers.${layer}.${part}`] = {
        dtype: isScalePart(part) ? "F32" : toSafetensorsDtype(d.dtype),
        shape: shapeOf(d, part),
        data_offsets: [offset, offset + length],
      };
      offset += length;
    }
  }
  return encodeSafetensorsHeader(header);
}

/**
 * A sink that writes the cache as one safetensors file: tensors `layers.{i}.{part}` (`k`, `v`,
 * `k_scale`, `v_scale`; mla `latent`, `latent_scale`) in the descriptor's dtype (scales F32), shaped
 * `[tokens, heads, dim]` for nhd, `[heads, tokens, dim]` for hnd (mla `[tokens, 1, latent + rope]`),
 * scales `[1]` / `[tokens]` / `[heads]`; `__metadata__.descriptor` holds the `KvDescriptor` as JSON.
 * Tensors are stored in layer order so the file streams: the header is written at `open` and each
 * layer is appended as it arrives (memory: none beyond the caller's layer). Written to
 * `<path>.partial-<random>`; `commit` fsyncs and publishes at `path` (an existing non-empty `path` only
 * with `replace`); `abort` deletes the partial file.
 * Accepts any valid descriptor.
 */
export function createSafetensorsFileSink(
  options: SafetensorsFileSinkOptions,
): KvSink<SafetensorsFileReceipt> {
  const path = options?.path;
  if (typeof path !== "string" || path.length === 0) {
    throw invalidOption("path", "a non-empty file path", path);
  }
  const replace = options.replace ?? false;
  if (typeof replace !== "boolean") throw invalidOption("replace", "a boolean", replace);
  let file: AtomicFile | undefined;
  let descriptor: KvDescriptor | undefined;
  return createGuardedSink<SafetensorsFileReceipt>({
    async open(given) {
      descriptor = given;
      file = await createAtomicFile(path, { replace });
      await file.write(encodeHeader(given));
    },
    async writeLayer(layer) {
      for (const part of partsOf(descriptor as KvDescriptor)) {
        await (file as AtomicFile).write(layer.parts[part] as Uint8Array);
      }
    },
    async commit(_stats, signal) {
      if (signal.aborted) throw sinkCancelled("commit");
      const byteLength = await (file as AtomicFile).commit();
      return { path, byteLength };
    },
    async discard() {
      await file?.discard();
    },
  });
}
