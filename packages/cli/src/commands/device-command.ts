import type { DeviceClient } from "@opal/client";
import { Command } from "commander";
import { addTargetOptions, connectTarget, explain, type TargetFlags } from "../target-options";

interface DeviceFlags extends TargetFlags {
  json?: boolean;
}

/** `key: value` lines of a plain object, nested keys dotted, lists joined with commas. */
function toLines(value: object, prefix = ""): string[] {
  return Object.entries(value).flatMap(([key, v]) => {
    const name = `${prefix}${key}`;
    if (Array.isArray(v)) return [`${name}: ${v.length === 0 ? "(none)" : v.join(", ")}`];
    if (v !== null && typeof v === "object") return toLines(v, `${name}.`);
    return [`${name}: ${v}`];
  });
}

/** One `opal device` subcommand: connects, asks `query`, prints its answer as lines or JSON. */
function deviceQuery(
  name: string,
  description: string,
  query: (device: DeviceClient) => Promise<object>,
  format: (answer: object) => string[] = (answer) => toLines(answer),
): Command {
  const command = new Command(name)
    .description(description)
    .option("--json", "print the answer as JSON")
    .addHelpText("after", `\nExample:\n  $ opal device ${name} --target 127.0.0.1:50051`);
  return addTargetOptions(command).action(async (o: DeviceFlags) => {
    const device = connectTarget(o);
    try {
      const answer = await query(device);
      console.log(o.json ? JSON.stringify(answer, null, 2) : format(answer).join("\n"));
    } catch (error) {
      throw explain(error, o.target);
    } finally {
      await device.close();
    }
  });
}

/**
 * `opal device info|capabilities|models|health --target <host:port>`: what a device says about
 * itself (GetInfo, GetCapabilities, ListModels, Probe), as lines or `--json`.
 */
export function createDeviceCommand(): Command {
  return new Command("device")
    .description("Ask a device about itself: its identity, capabilities, models and health.")
    .addCommand(
      deviceQuery("info", "vendor, product, versions, device id and extensions (GetInfo)", (d) =>
        d.getInfo(),
      ),
    )
    .addCommand(
      deviceQuery(
        "capabilities",
        "dtypes, layouts, block sizes, limits and features (GetCapabilities)",
        (d) => d.getCapabilities(),
      ),
    )
    .addCommand(
      deviceQuery(
        "models",
        "the loaded models: id, architecture, layers, KV heads, vocabulary (ListModels)",
        async (d) => ({ models: await d.listModels() }),
        (answer) => {
          const { models } = answer as { models: Awaited<ReturnType<DeviceClient["listModels"]>> };
          if (models.length === 0) return ["no models loaded"];
          return models.map((m) => {
            const a = m.attention;
            const kv =
              a.kind === "mha"
                ? `${a.numKvHeads} KV heads × ${a.headDim}`
                : `MLA latent ${a.latentDim} + rope ${a.ropeDim}`;
            return `${m.modelId}  ${m.architecture}, ${m.numLayers} layers, ${kv}, vocabulary ${m.vocabSize}, context ${m.maxPositionEmbeddings}`;
          });
        },
      ),
    )
    .addCommand(
      deviceQuery(
        "health",
        "readiness (Probe): `ready` or `initializing`; an unhealthy device fails UNAVAILABLE (exit 78)",
        async (d) => ({ state: await d.probe() }),
        (answer) => [(answer as { state: string }).state],
      ),
    );
}
