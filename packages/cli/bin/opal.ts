import { OpalError } from "@opal/core";
import type { KvDtype } from "@opal/kv";
import { Command, InvalidArgumentError, Option } from "commander";
import { formatDemoReport } from "../src/format-demo-report";
import { runDemo } from "../src/run-demo";

const positive = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError(`${name} must be a whole number >= 1 (got ${value})`);
  return n;
};

const program = new Command("opal")
  .description(
    "OPAL: offload LLM prefill to specialised hardware and hand the KV cache to decoders.",
  )
  .showHelpAfterError();

program
  .command("demo")
  .description(
    "Start the mock device, offload a prompt's prefill over gRPC, stream the KV cache layer by layer to a decoder, continue decoding and compare with a monolithic run.",
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
  .option("--tokens <n>", "tokens to generate", positive("--tokens"), 24)
  .option("--json", "print the report as JSON")
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

program.parseAsync().catch((error: unknown) => {
  const message =
    error instanceof OpalError || error instanceof Error ? error.message : String(error);
  console.error(`opal: ${message}`);
  process.exit(1);
});
