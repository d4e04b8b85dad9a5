/**
 * vLLM block hashing throughput (16-token blocks per second) for a 32k-token prompt, each
 * algorithm as a ratio to vLLM's default `sha256` (pickle) in the same run. The CBOR algorithms
 * use cborg; the cbor2 npm package took about 10x as long per block (docs/formats/vllm-block-hashes.md).
 * Run: node --conditions=source --import tsx packages/kv/bench/block-hash.bench.ts
 */
import { computeBlockHashes, VLLM_BLOCK_HASH_ALGORITHMS } from "../src/index";
import { bestSeconds } from "./report";

const tokens = Array.from({ length: 32_768 }, (_, i) => (i * 7919) % 151_000);
const blocks = tokens.length / 16;
const rate = (algorithm: (typeof VLLM_BLOCK_HASH_ALGORITHMS)[number]) =>
  blocks /
  bestSeconds(
    () => computeBlockHashes(tokens, { blockSizeTokens: 16, algorithm, hashSeed: "0" }),
    3,
  );

const baseline = rate("sha256");
for (const algorithm of VLLM_BLOCK_HASH_ALGORITHMS) {
  if (algorithm === "sha256") continue;
  const value = rate(algorithm);
  console.log(
    JSON.stringify({
      bench: `kv/block-hash-${algorithm}`,
      metric: "blocks/s",
      value: Math.round(value),
      baseline: "sha256 (pickle)",
      baselineValue: Math.round(baseline),
      ratio: Math.round((value / baseline) * 1000) / 1000,
      // Each serialisation may cost at most twice pickle's (cbor2 was about a fifth of its rate).
      target: 0.5,
    }),
  );
}
