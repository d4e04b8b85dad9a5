import {
  cacheByteLength,
  digestKvCache,
  layerByteLength,
  partByteLength,
  partsOf,
  toHex,
} from "@opal/kv";
import { Command } from "commander";
import { inspectForeign } from "../inspect-foreign";
import { readKvFile } from "../read-kv-file";

/**
 * `opal inspect PATH`: the descriptor, per-layer sizes and checksum verification of an OPAL KV
 * file; for other systems' outputs (vLLM ExampleConnector folders, vLLM pools saved as
 * safetensors, SGLang buffers, LMCache chunks) what they hold and which vLLM version and layout
 * they fit.
 */
export function createInspectCommand(): Command {
  return new Command("inspect")
    .description(
      "Show a KV file's descriptor and per-layer sizes, verifying it (.okv: every checksum; OPAL safetensors: tensor sizes); for vLLM ExampleConnector folders, vLLM pools, SGLang and LMCache outputs, what they hold and which vLLM version and layout they fit.",
    )
    .argument(
      "<file>",
      "a .okv or OPAL safetensors file, a vLLM ExampleConnector folder (or its storage path, or a layer file), a vLLM pool or SGLang safetensors file, or an LMCache folder",
    )
    .option("--json", "print the result as JSON")
    .action(async (file: string, o: { json?: boolean }) => {
      const foreign = await inspectForeign(file);
      if (foreign) {
        if (o.json) console.log(JSON.stringify(foreign, null, 2));
        else
          for (const line of [...foreign.lines, `verified ${foreign.verified}`]) console.log(line);
        return;
      }
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
