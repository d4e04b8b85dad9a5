import type { KvDescriptor } from "./descriptor";
import type { KvLayerParts } from "./kv-cache";
import type { KvChunk } from "./kv-chunk";
import type { OkvTrailer } from "./okv-format";

/** What {@link decodeOkv} and {@link createOkvDecoder} report, in stream order. */
export type OkvEvent =
  | { readonly kind: "header"; readonly descriptor: KvDescriptor; readonly maxFrameBytes: number }
  | { readonly kind: "layer"; readonly layer: KvLayerParts }
  /** Only with `chunks: true`: one verified DATA frame; `chunk.data` is valid until the next event. */
  | { readonly kind: "chunk"; readonly chunk: KvChunk }
  | { readonly kind: "trailer"; readonly trailer: OkvTrailer };
