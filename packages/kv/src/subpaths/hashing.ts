/**
 * `@opal/kv/hashing`: prefix block hashing. vLLM's chain for every vLLM hash algorithm, with its
 * extra keys and the 64-bit KV-event form (docs/formats/vllm-block-hashes.md), and the protocol's
 * own chain (docs/protocol/prefix-hashing.md). Integrity checksums (`crc32cOf`, the cache digest)
 * stay in the root export. The same names as the root export `@opal/kv`.
 *
 * @packageDocumentation
 */

export type { BlockHashOptions } from "../block-hash";
export {
  blockHashByteLength,
  computeBlockHashes,
  hashBlockTokens,
  kvEventBlockHash,
  noneHashOf,
  VLLM_DEFAULT_NONE_HASH_SEED,
} from "../block-hash";
export type { VllmBlockHashAlgorithm } from "../block-hash-algorithm";
export {
  encodeCbor,
  encodeMsgpack,
  isCryptographicBlockHash,
  sha256Cbor,
  VLLM_BLOCK_HASH_ALGORITHMS,
  vllmHash,
} from "../block-hash-algorithm";
export type {
  BlockExtraKeySource,
  VllmMultimodalFeature,
  VllmPromptEmbeds,
} from "../block-hash-extra-keys";
export { encodePickle } from "../block-hash-pickle";
export type { BlockHashValue } from "../block-hash-value";
export type { OpalBlockHashOptions } from "../opal-block-hash";
export { computeOpalBlockHashes } from "../opal-block-hash";
