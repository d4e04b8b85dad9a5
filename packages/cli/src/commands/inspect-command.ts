import {
  cacheByteLength,
  digestKvCache,
  layerByteLength,
  partByteLength,
  partsOf,
  toHex,
} from "@opal/kv";
import { Command } from "commander";
import { readKvFile } from "../read-kv-file";

/** `opal inspect FILE`: the descriptor, per-layer sizes and checksum verification of a KV file. */
export function createInspectCommand(): Command {
  return new Command("inspect")
    .description(
      "Show a KV file's descriptor and per-layer sizes, verifying it (.okv: every checksum; OPAL safetensors: tensor sizes).",
    )
    .argument(
      "<file>",
      "a .okv file or a safetensors file written by `opal prefill --format safetensors`",
    )
    .option("--json", "print the result as JSON")
    .action(async (file: string, o: { json?: boolean }) => {
      const { cache, format, byteLength } = await readKvFile(file);
      const d = cache.descriptor;
      const layers = Array.from({ length: d.numLayers }, (_, layer) => ({
        layer,
        bytes: layerByteLength(d),
        parts: Object.fromEntries(partsOf(d).map((part) => [part, partByteLength(d, part)])),
      }));
      const report = {
        file,
        format,
        fileBytes: byteLength,
        descriptor: d,
        kvBytes: cacheByteLength(d),
        digest: toHex(digestKvCache(cache)),
        verified:
          format === "okv"
            ? "every frame CRC32C and the trailer digest"
            : "tensor sizes against the descriptor",
        layers,
      };
      if (o.json) {
        console.log(JSON.stringify(report, null, 2));
        return;
      }
      const attention =
        d.attention.kind === "mha"
          ? `${d.attention.numKvHeads} KV heads × ${d.attention.headDim}`
          : `MLA ${d.attention.latentDim}+${d.attention.ropeDim}`;
      console.log(`${file}: ${format}, ${byteLength} bytes, verified ${report.verified}`);
      console.log(
        `model ${d.modelFingerprint.slice(0, 16)}…, ${d.numLayers} layers, ${attention}, heads ${d.headRange.start}+${d.headRange.count}`,
      );
      console.log(
        `${d.dtype} ${d.layout}, scales ${d.scaleScheme}, tokens [${d.tokenStart}, ${d.tokenStart + d.tokenCount}), block ${d.blockSizeTokens}`,
      );
      console.log(
        `numerics: ${d.numerics.deviceKind}${d.numerics.bitExact ? ", bit-exact" : `, max abs error ${d.numerics.maxAbsError}`}`,
      );
      console.log(`KV ${report.kvBytes} bytes, digest ${report.digest}`);
      for (const l of layers)
        console.log(
          `  layer ${l.layer}: ${Object.entries(l.parts)
            .map(([p, b]) => `${p} ${b}`)
            .join(", ")}`,
        );
    });
}
