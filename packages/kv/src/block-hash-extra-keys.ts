import { createHash } from "node:crypto";
import type { BlockHashValue } from "./block-hash-value";

/**
 * A multimodal input of a vLLM request (`MultiModalFeatureSpec`): its `identifier` (the mm hash
 * vLLM computed for it) and the request positions `[offset, offset + length)` of its placeholder
 * tokens.
 */
export interface VllmMultimodalFeature {
  readonly identifier: string;
  readonly offset: number;
  readonly length: number;
}

/**
 * A request's prompt embeddings as vLLM holds them (`request.prompt_embeds`, a `[n, hidden]`
 * tensor): the tensor's raw bytes in row-major order (as `tensor_data` in `vllm/v1/utils.py`
 * returns them: the dtype's native little-endian bytes) and the bytes of one row (one token).
 */
export interface VllmPromptEmbeds {
  readonly bytes: Uint8Array;
  readonly bytesPerToken: number;
}

/** What the extra keys of a block depend on (the fields of vLLM's `Request` that matter). */
export interface BlockExtraKeySource {
  readonly loraName?: string;
  readonly cacheSalt?: string;
  readonly multimodal?: readonly VllmMultimodalFeature[];
  readonly promptEmbeds?: VllmPromptEmbeds;
}

/**
 * vLLM's `_gen_mm_extra_hash_keys`: the `(identifier, offset - start)` of every multimodal input
 * that overlaps block `[start, end)`, scanning from feature `startIndex` (negative counts from the
 * end, as vLLM passes -1 for blocks completed by generated tokens); returns the keys and the index
 * the next block starts from. Features are sorted by offset.
 */
function multimodalKeys(
  features: readonly VllmMultimodalFeature[],
  start: number,
  end: number,
  startIndex: number,
): [BlockHashValue[], number] {
  const keys: BlockHashValue[] = [];
  const last = features[features.length - 1];
  if (last === undefined || last.offset + last.length <= start) return [keys, startIndex];
  let index = startIndex < 0 ? features.length + startIndex : startIndex;
  for (let feature = features[index]; feature !== undefined; feature = features[index]) {
    if (end <= feature.offset) break;
    if (start >= feature.offset + feature.length) {
      index++;
      continue;
    }
    keys.push([feature.identifier, feature.offset - start]);
    if (end < feature.offset + feature.length) break;
    index++;
  }
  return [keys, index];
}

/**
 * vLLM's `generate_block_hash_extra_keys` for block `[start, end)` (request positions): LoRA name,
 * then multimodal `(identifier, offset in block)` keys, then `cache_salt` (block at position 0
 * only, and only a non-empty salt), then SHA-256 of the block's prompt-embedding bytes (always
 * SHA-256, whatever the block-hash algorithm; rows past the embeddings are simply absent, as a
 * tensor slice past its end is). Returns the tuple (null when empty) and the next multimodal index.
 * Written from vllm-project/vllm `vllm/v1/core/kv_cache_utils.py` at commit
 * 002f10e0cfa1373a19a0d2756598a34b700d20e5.
 */
export function blockExtraKeys(
  source: BlockExtraKeySource,
  start: number,
  end: number,
  multimodalIndex: number,
): [BlockHashValue[] | null, number] {
  const [mmKeys, nextIndex] = multimodalKeys(source.multimodal ?? [], start, end, multimodalIndex);
  const keys: BlockHashValue[] = [];
  if (source.loraName !== undefined) keys.push(source.loraName);
  keys.push(...mmKeys);
  if (start === 0 && source.cacheSalt) keys.push(source.cacheSalt);
  const embeds = source.promptEmbeds;
  if (embeds !== undefined) {
    const rows = embeds.bytes.subarray(start * embeds.bytesPerToken, end * embeds.bytesPerToken);
    keys.push(new Uint8Array(createHash("sha256").update(rows).digest()));
  }
  return [keys.length > 0 ? keys : null, nextIndex];
}
