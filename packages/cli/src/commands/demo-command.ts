import type { KvDtype } from "@opal/kv";
import { Command, Option } from "commander";
import { formatDemoReport } from "../format-demo-report";
import { parsePositiveInteger } from "../parse-positive-integer";
import { runDemo } from "../run-demo";

/** `opal demo`: the main job (what `npm start` runs). Exit code 1 when the tokens do not match. */
export function createDemoCommand(): Command {
  return new Command("demo")
    .description(
      "Start the mock device, offload a prompt's prefill over gRPC, push the KV cache layer by layer to a decode agent, continue decoding and compare with a monolithic run.",
    )
    .option("--prompt <text>", "prompt text")
    .addOption(
      new Option("--model <name>", "reference model")
        .choices(["opal-tiny", "opal-small"])
        .default("opal-small"),
    )
    .addOption(
      new Option("--profile <name>", "mock device profile")
        .choices(["iris-nova", "h100", "instant"])
        .default("iris-nova"),
    )
    .addOption(
      new Option("--dtype <dtype>", "KV dtype on the wire")
        .choices(["f32", "bf16", "f16"])
        .default("f32"),
    )
    .option("--tokens <n>", "tokens to generate", parsePositiveInteger("--tokens"), 24)
    .option("--json", "print the report as JSON")
    .showHelpAfterError()
    .action(
      async (o: {
        prompt?: string;
        model: "opal-tiny" | "opal-small";
        profile: string;
        dtype: KvDtype;
        tokens: number;
        json?: boolean;
      }) => {
        const report = await runDemo({
          ...(o.prompt !== undefined ? { prompt: o.prompt } : {}),
          model: o.model,
          profile: o.profile,
          dtype: o.dtype,
          maxNewTokens: o.tokens,
          ...(o.json ? {} : { onProgress: (line: string) => console.log(`  ${line}`) }),
        });
        console.log(o.json ? JSON.stringify(report, null, 2) : `\n${formatDemoReport(report)}`);
        if (!report.match) process.exitCode = 1;
      },
    );
}
