/**
 * `@opal/kv/okv`: the streamable `.okv` container (docs/formats/okv.md). Encoders from a cache or
 * chunk stream, the streaming decoder and its events, random access to one layer of a file, and
 * the container's constants. The same names as the root export `@opal/kv`.
 *
 * @packageDocumentation
 */

export type { DecodeOkvOptions, OkvDecoder } from "../decode-okv";
export { createOkvDecoder, decodeOkv, decodeOkvBytes } from "../decode-okv";
export type { EncodeOkvChunksOptions, EncodeOkvOptions } from "../encode-okv";
export { encodeOkv, encodeOkvBytes, encodeOkvChunks, encodeOkvPieces } from "../encode-okv";
export type { OkvEvent } from "../okv-event";
export type { OkvHeader, OkvTrailer } from "../okv-format";
export {
  OKV_DEFAULT_MAX_FRAME_BYTES,
  OKV_MAGIC,
  OKV_VERSION_MAJOR,
  OKV_VERSION_MINOR,
} from "../okv-format";
export { readOkvLayer } from "../read-okv-layer";
