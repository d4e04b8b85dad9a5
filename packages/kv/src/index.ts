/**
 * The KV-cache data model and formats of OPAL: descriptors, in-memory caches of typed views,
 * dtype conversion (f32, f16, bf16, fp8 e4m3fn/e5m2, int8 with scales), layout converters (NHD/HND,
 * vLLM paged and MLA, SGLang, LMCache, tensor-parallel head ranges), the streamable `.okv`
 * container, safetensors, vLLM's ExampleConnector handoff and vLLM-compatible prefix block hashing.
 * Pure bytes: no gRPC, no import-time side effects.
 *
 * @packageDocumentation
 */

// Streams, .okv and digests
export { allocateKvMemory, KV_MEMORY_BACKEND } from "./allocate-kv-memory";
export type { BlockHashOptions } from "./block-hash";
// Prefix hashing
export {
  blockHashByteLength,
  computeBlockHashes,
  hashBlockTokens,
  kvEventBlockHash,
  noneHashOf,
  VLLM_DEFAULT_NONE_HASH_SEED,
} from "./block-hash";
export type { VllmBlockHashAlgorithm } from "./block-hash-algorithm";
export {
  encodeCbor,
  encodeMsgpack,
  isCryptographicBlockHash,
  sha256Cbor,
  VLLM_BLOCK_HASH_ALGORITHMS,
  vllmHash,
} from "./block-hash-algorithm";
export type {
  BlockExtraKeySource,
  VllmMultimodalFeature,
  VllmPromptEmbeds,
} from "./block-hash-extra-keys";
export { encodePickle } from "./block-hash-pickle";
export type { BlockHashValue } from "./block-hash-value";
export { CRC32C_BACKEND, crc32cOf } from "./crc32c-of";
export type { DecodeOkvOptions, OkvDecoder } from "./decode-okv";
export { createOkvDecoder, decodeOkv, decodeOkvBytes } from "./decode-okv";
// safetensors and vLLM ExampleConnector
export { decodeSafetensorsKv, SAFETENSORS_KV_DESCRIPTOR_KEY } from "./decode-safetensors-kv";
export type {
  KvAttention,
  KvDescriptor,
  KvDtype,
  KvHeadRange,
  KvLayout,
  KvNumerics,
  KvPart,
  KvScaleScheme,
  KvShape,
} from "./descriptor";
// Data model
export {
  assertValidDescriptor,
  cacheByteLength,
  dtypeByteSize,
  headCountOf,
  headDimOf,
  isQuantizedDtype,
  isScalePart,
  KV_DTYPES,
  KV_PARTS,
  layerByteLength,
  MAX_PART_BYTE_LENGTH,
  partByteLength,
  partsOf,
  scaleCountOf,
} from "./descriptor";
export type { EncodeOkvChunksOptions, EncodeOkvOptions } from "./encode-okv";
export { encodeOkv, encodeOkvBytes, encodeOkvChunks, encodeOkvPieces } from "./encode-okv";
export type { FromFloat32Options } from "./from-float32";
export { fromFloat32 } from "./from-float32";
export type { KvAssembler, KvAssemblerOptions, KvStreamPosition } from "./kv-assembler";
export { createKvAssembler } from "./kv-assembler";
export type { KvCache, KvLayerParts } from "./kv-cache";
export { copyKvCache, createKvCache, fromKvParts, toFloat32View } from "./kv-cache";
export type { KvChunk, KvChunker, KvChunkerOptions } from "./kv-chunk";
export {
  createKvChunker,
  DEFAULT_MAX_CHUNK_BYTES,
  MAX_CHUNK_BYTES,
  toKvChunks,
} from "./kv-chunk";
export type { KvDigest } from "./kv-digest";
export { createKvDigest, digestKvCache, KV_DIGEST_BYTE_LENGTH, toHex } from "./kv-digest";
export type { KvFormatErrorOptions, KvFormatReason } from "./kv-format-error";
export { isKvFormatError, KV_FORMAT_REASONS, KvFormatError } from "./kv-format-error";
export { headRangeOf, mergeKvHeads, sliceKvHeads } from "./kv-head-range";
export type { LmcacheChunkOptions, LmcacheMemoryFormat } from "./lmcache-chunks";
export { fromLmcacheChunks, LMCACHE_CHUNK_TOKENS, toLmcacheChunks } from "./lmcache-chunks";
export type { OkvEvent } from "./okv-event";
export type { OkvHeader, OkvTrailer } from "./okv-format";
export {
  OKV_DEFAULT_MAX_FRAME_BYTES,
  OKV_MAGIC,
  OKV_VERSION_MAJOR,
  OKV_VERSION_MINOR,
} from "./okv-format";
export type { OpalBlockHashOptions } from "./opal-block-hash";
export { computeOpalBlockHashes } from "./opal-block-hash";
export type { KvPartShape, QuantizedKv, QuantizeKvOptions } from "./quantize-kv";
export { computeKvScales, dequantizeKv, quantizeKv, quantMaxOf } from "./quantize-kv";
export { readOkvLayer } from "./read-okv-layer";
export type {
  DecodeSafetensorsOptions,
  EncodeSafetensorsOptions,
  SafetensorsDtype,
  SafetensorsFile,
  SafetensorsInput,
  SafetensorsTensor,
} from "./safetensors";
export {
  decodeSafetensors,
  encodeSafetensors,
  encodeSafetensorsHeader,
  encodeSafetensorsPieces,
  fromSafetensorsDtype,
  SAFETENSORS_DTYPE_SIZES,
  SAFETENSORS_MAX_HEADER_BYTES,
  toSafetensorsDtype,
} from "./safetensors";
export type { SglangLayerBuffers, SglangOptions } from "./sglang-buffers";
export { fromSglangLayer, toSglangLayer } from "./sglang-buffers";
export type { ToFloat32Options } from "./to-float32";
// Dtypes
export { toFloat32 } from "./to-float32";
export type { TransposeKvPartOptions } from "./to-kv-layout";
// Layouts and decoder formats
export { rowBytesOf, toKvLayout, transposeKvPart } from "./to-kv-layout";
export { FILE_LOCKS_AVAILABLE, tryLockFile } from "./try-lock-file";
export type {
  VllmExampleFolderNames,
  VllmExampleFolderOptions,
  VllmExampleHandoffOptions,
} from "./vllm-example-connector";
export {
  assertVllmExampleTensorParallel,
  readVllmExampleFolder,
  vllmExampleFolderName,
  vllmExampleFolders,
  vllmExampleTokenCount,
  vllmLayerName,
  writeVllmExampleFolder,
  writeVllmExampleHandoff,
} from "./vllm-example-connector";
export type {
  VllmExampleDecodeOptions,
  VllmExampleFit,
  VllmExampleLayerOptions,
  VllmExampleVersion,
  VllmFp8Cache,
} from "./vllm-example-layer";
export {
  decodeVllmExampleLayer,
  encodeVllmExampleLayer,
  VLLM_EXAMPLE_DEFAULT_VERSION,
  VLLM_EXAMPLE_VERSIONS,
  vllmExampleFits,
  vllmStaticScale,
} from "./vllm-example-layer";
export type {
  VllmKvCacheLayout,
  VllmLegacyLayout,
  VllmPoolLayout,
  VllmPoolLayoutOptions,
} from "./vllm-kv-cache-layout";
export {
  isLegacyVllmVersion,
  resolveVllmPoolLayout,
  VLLM_KV_CACHE_LAYOUT_ALIASES,
  VLLM_KV_CACHE_LAYOUTS,
  VLLM_LEGACY_LAYOUTS,
  vllmStrideOrder,
} from "./vllm-kv-cache-layout";
export type { VllmPagedOptions, VllmPagedOrder } from "./vllm-paged";
export { fromVllmPagedLayer, toVllmPagedLayer, vllmPoolByteLength } from "./vllm-paged";
export type {
  VllmPoolShape,
  VllmStandardGeometry,
  VllmStandardPoolOptions,
} from "./vllm-standard-pool";
export {
  fromVllmStandardLayer,
  toVllmStandardLayer,
  vllmPoolShapeOf,
  vllmStandardGeometry,
} from "./vllm-standard-pool";
