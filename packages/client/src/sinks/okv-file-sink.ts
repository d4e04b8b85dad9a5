import { type Channel, createChannel } from "@opal/core";
import { encodeOkv, type KvLayerParts, MAX_CHUNK_BYTES } from "@opal/kv";
import { invalidOption } from "../options/invalid-option";
import { type AtomicFile, createAtomicFile } from "./create-atomic-file";
import { createGuardedSink } from "./create-guarded-sink";
import type { KvSink } from "./kv-sink";
import { sinkCancelled } from "./sink-errors";

/** Options of {@link createOkvFileSink}. */
export interface OkvFileSinkOptions {
  /**
   * Where the `.okv` file appears on commit; its folder must exist. It must be free (absent, an
   * empty file or an empty folder) unless `replace`: ALREADY_EXISTS at `open`, and atomically at
   * `commit`.
   */
  readonly path: string;
  /** Atomically replace whatever `path` holds at `commit`; default false. */
  readonly replace?: boolean;
  /** Largest DATA frame payload, 1 byte to 64 MiB; default 16 MiB (as `encodeOkv`). */
  readonly maxFrameBytes?: number;
}

/** What {@link createOkvFileSink} committed. */
export interface OkvFileReceipt {
  /** The final path (`options.path`). */
  readonly path: string;
  /** Size of the file, in bytes. */
  readonly byteLength: number;
}

/**
 * A sink that records the cache as an `.okv` file (docs/formats/okv.md, with INDEX and XXH3-128
 * digest) while layers arrive: memory stays at about one layer (each layer's frames are written
 * before `writeLayer` resolves). The bytes go to `<path>.partial-<random>`; `commit` fsyncs and
 * publishes it at `path` (refusing an existing non-empty `path` unless `replace`), so `path` holds either
 * nothing new or the complete file. `abort` (or any
 * failure) deletes the partial file. Accepts any valid descriptor.
 */
export function createOkvFileSink(options: OkvFileSinkOptions): KvSink<OkvFileReceipt> {
  const path = options?.path;
  if (typeof path !== "string" || path.length === 0) {
    throw invalidOption("path", "a non-empty file path", path);
  }
  const replace = options.replace ?? false;
  if (typeof replace !== "boolean") throw invalidOption("replace", "a boolean", replace);
  const max = options.maxFrameBytes;
  if (max !== undefined && (!Number.isInteger(max) || max < 1 || max > MAX_CHUNK_BYTES)) {
    throw invalidOption("maxFrameBytes", `an integer from 1 to ${MAX_CHUNK_BYTES}`, max);
  }
  let file: AtomicFile | undefined;
  let inbox: Channel<KvLayerParts> | undefined;
  let pump: Promise<void> | undefined;
  // Resolved when the encoder asks for the layer after the one in flight: all of its frames are written.
  let written: (() => void) | undefined;

  return createGuardedSink<OkvFileReceipt>({
    async open(descriptor) {
      file = await createAtomicFile(path, { replace });
      const target = file;
      const layers = createChannel<KvLayerParts>({ capacity: 1 });
      inbox = layers;
      async function* source(): AsyncGenerator<KvLayerParts> {
        for await (const layer of layers) {
          yield layer;
          written?.();
        }
      }
      pump = (async () => {
        for await (const piece of encodeOkv(source(), {
          descriptor,
          maxFrameBytes: options.maxFrameBytes,
        })) {
          await target.write(piece);
        }
      })();
      // Failures surface through writeLayer/commit; keep an unobserved rejection harmless.
      pump.catch(() => {});
    },

    async writeLayer(layer) {
      const done = new Promise<void>((resolve) => {
        written = resolve;
      });
      await (inbox as Channel<KvLayerParts>).send(layer);
      // The pump only ends early by failing; then its error is the answer.
      await Promise.race([done, (pump as Promise<void>).then(() => done)]);
    },

    async commit(_stats, signal) {
      inbox?.close();
      await pump;
      if (signal.aborted) throw sinkCancelled("commit");
      const byteLength = await (file as AtomicFile).commit();
      return { path, byteLength };
    },

    async discard(reason) {
      inbox?.fail(reason);
      await pump?.catch(() => {});
      await file?.discard();
    },
  });
}
