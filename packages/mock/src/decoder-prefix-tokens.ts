import type { PrefillRequest } from "@opal/driver";
import { computeOpalBlockHashes } from "@opal/kv";

/** Tokens the decoder holds: `numTokens`, or the leading blocks whose hashes it listed. */
export function decoderPrefixTokens(
  request: PrefillRequest,
  numTokens: number,
  tokens: Uint32Array,
  blockSize: number,
): number {
  const hashes = request.decoderPrefix?.blockHashes;
  if (!hashes?.length) return numTokens;
  const ours = computeOpalBlockHashes(tokens, {
    blockSizeTokens: blockSize,
    ...(request.cacheSalt ? { cacheSalt: request.cacheSalt } : {}),
  });
  let blocks = 0;
  while (
    blocks < hashes.length &&
    blocks < ours.length &&
    Buffer.compare(hashes[blocks]!, ours[blocks]!) === 0
  )
    blocks++;
  return Math.min(blocks * blockSize, tokens.length - 1);
}
