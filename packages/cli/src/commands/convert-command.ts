import { createOkvFileSink, createSafetensorsFileSink, type KvSink } from "@opal/client";
import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import {
  cacheByteLength,
  fromFloat32,
  fromKvParts,
  type KvDtype,
  type KvLayout,
  partsOf,
  toFloat32,
  toKvLayout,
} from "@opal/kv";
import { Command, Option } from "commander";
import { readKvFile } from "../read-kv-file";

/**
 * `opal convert IN OUT --to …`: converts a KV file between formats, layouts and float dtypes. OUT's
 * directory must exist. `--json` prints `{in, inFormat, out, format, dtype, layout, layers, kvBytes,
 * fileBytes}` (the output's format, dtype and layout; byte counts of the KV data and of OUT).
 */
export function createConvertCommand(): Command {
  return new Command("convert")
    .description(
      "Convert a KV file between .okv and safetensors, and optionally its layout or float dtype.",
    )
    .argument("<in>", "a .okv or OPAL safetensors file")
    .argument("<out>", "the file to write (written atomically)")
    .addOption(
      new Option("--to <format>", "output format")
        .choices(["okv", "safetensors"])
        .makeOptionMandatory(),
    )
    .addOption(new Option("--layout <layout>", "convert the layout").choices(["nhd", "hnd"]))
    .addOption(
      new Option("--dtype <dtype>", "convert between float dtypes").choices(["f32", "f16", "bf16"]),
    )
    .option("--json", "print the result as JSON")
    .option("--force", "replace an existing non-empty OUT (atomically; without it, opal refuses)")
    .action(
      async (
        input: string,
        output: string,
        o: {
          to: "okv" | "safetensors";
          layout?: KvLayout;
          dtype?: KvDtype;
          json?: boolean;
          force?: boolean;
        },
      ) => {
        const replace = o.force === true;
        let { cache, format: inFormat } = await readKvFile(input);
        if (o.layout && o.layout !== cache.descriptor.layout) cache = toKvLayout(cache, o.layout);
        if (o.dtype && o.dtype !== cache.descriptor.dtype) {
          const from = cache.descriptor;
          if (from.scaleScheme !== "none")
            throw new OpalError(
              Code.INVALID_ARGUMENT,
              `--dtype converts float caches only (this one is ${from.dtype} with ${from.scaleScheme} scales)`,
              { reason: Reason.INVALID_FIELD },
            );
          const descriptor = { ...from, dtype: o.dtype };
          const source = cache;
          cache = fromKvParts(
            descriptor,
            Array.from({ length: from.numLayers }, (_, l) =>
              Object.fromEntries(
                partsOf(from).map((part) => [
                  part,
                  fromFloat32(toFloat32(source.part(l, part), from.dtype), o.dtype!),
                ]),
              ),
            ),
          );
        }
        const sink: KvSink<{ byteLength: number }> =
          o.to === "okv"
            ? createOkvFileSink({ path: output, replace })
            : createSafetensorsFileSink({ path: output, replace });
        await sink.open(cache.descriptor);
        for (let layer = 0; layer < cache.descriptor.numLayers; layer++)
          await sink.writeLayer(cache.layer(layer));
        const receipt = await sink.commit({} as PrefillStats);
        const d = cache.descriptor;
        const result = {
          in: input,
          inFormat,
          out: output,
          format: o.to,
          dtype: d.dtype,
          layout: d.layout,
          layers: d.numLayers,
          kvBytes: cacheByteLength(d),
          fileBytes: receipt.byteLength,
        };
        if (o.json) console.log(JSON.stringify(result, null, 2));
        else {
          console.log(
            `wrote ${output} (${o.to}, ${d.dtype} ${d.layout}, ${receipt.byteLength} bytes)`,
          );
        }
      },
    );
}
