/**
 * `@opal/kv/layouts`: converters between OPAL's NHD/HND caches and the decoders' memory layouts
 * (vLLM's paged pools and `VLLM_KV_CACHE_LAYOUT`, SGLang's per-layer buffers, LMCache's chunks)
 * and tensor-parallel head ranges. The same names as the root export `@opal/kv`.
 *
 * @packageDocumentation
 */

export { headRangeOf, mergeKvHeads, sliceKvHeads } from "../kv-head-range";
export type { LmcacheChunkOptions, LmcacheMemoryFormat } from "../lmcache-chunks";
export { fromLmcacheChunks, LMCACHE_CHUNK_TOKENS, toLmcacheChunks } from "../lmcache-chunks";
export type { SglangLayerBuffers, SglangOptions } from "../sglang-buffers";
export { fromSglangLayer, toSglangLayer } from "../sglang-buffers";
export type { TransposeKvPartOptions } from "../to-kv-layout";
export { rowBytesOf, toKvLayout, transposeKvPart } from "../to-kv-layout";
export type {
  VllmKvCacheLayout,
  VllmLegacyLayout,
  VllmPoolLayout,
  VllmPoolLayoutOptions,
} from "../vllm-kv-cache-layout";
export {
  isLegacyVllmVersion,
  resolveVllmPoolLayout,
  VLLM_KV_CACHE_LAYOUT_ALIASES,
  VLLM_KV_CACHE_LAYOUTS,
  VLLM_LEGACY_LAYOUTS,
  vllmStrideOrder,
} from "../vllm-kv-cache-layout";
export type { VllmPagedOptions, VllmPagedOrder } from "../vllm-paged";
export { fromVllmPagedLayer, toVllmPagedLayer, vllmPoolByteLength } from "../vllm-paged";
export type {
  VllmPoolShape,
  VllmStandardGeometry,
  VllmStandardPoolOptions,
} from "../vllm-standard-pool";
export {
  fromVllmStandardLayer,
  toVllmStandardLayer,
  vllmPoolShapeOf,
  vllmStandardGeometry,
} from "../vllm-standard-pool";
