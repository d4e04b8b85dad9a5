import { readFileSync } from "node:fs";
import { createConformanceCommand } from "@opal/conformance";
import { createMockCommand } from "@opal/mock";
import { Command } from "commander";
import { createBenchCommand } from "../src/commands/bench-command";
import { createConvertCommand } from "../src/commands/convert-command";
import { createDemoCommand } from "../src/commands/demo-command";
import { createDeviceCommand } from "../src/commands/device-command";
import { createInspectCommand } from "../src/commands/inspect-command";
import { createLoadCommand } from "../src/commands/load-command";
import { createPrefillCommand } from "../src/commands/prefill-command";
import { runProgram } from "../src/run-program";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

const program = new Command("opal")
  .description(
    "OPAL: offload LLM prefill to specialised hardware and hand the KV cache to decoders.",
  )
  .version(version, "-V, --version", "print the version of @opal/cli")
  .showHelpAfterError()
  .addCommand(createDemoCommand())
  .addCommand(createMockCommand("mock"))
  .addCommand(createDeviceCommand())
  .addCommand(createLoadCommand())
  .addCommand(createPrefillCommand())
  .addCommand(createInspectCommand())
  .addCommand(createConvertCommand())
  .addCommand(createConformanceCommand("conformance"))
  .addCommand(createBenchCommand());

/** Examples at the end of each command's `--help`, as gh and kubectl show them. */
const examples: Record<string, string[]> = {
  demo: ["opal demo", "opal demo --model opal-tiny --dtype bf16 --tokens 8 --json"],
  mock: ["opal mock --port 50051 --profile iris-nova --model opal-tiny llama-3-8b"],
  device: [
    "opal device info --target 127.0.0.1:50051",
    "opal device models --target 127.0.0.1:50051 --json",
  ],
  load: ["opal load --target 127.0.0.1:50051 ./my-llama --model-id my-llama"],
  prefill: [
    'opal prefill --target 127.0.0.1:50051 --model opal-tiny --prompt "hello" --out cache.okv',
    "opal prefill --target 127.0.0.1:50051 --model my-llama --prompt hi --tokenizer ./my-llama/tokenizer.json --out cache.okv",
  ],
  inspect: ["opal inspect cache.okv"],
  convert: ["opal convert cache.okv cache.safetensors --to safetensors --layout hnd --dtype f32"],
  conformance: ["opal conformance --target 127.0.0.1:50051 --junit conformance.xml"],
  bench: ["opal bench --target 127.0.0.1:50051 --model llama-3-8b --tokens 2048 --requests 5"],
};
for (const command of program.commands) {
  const lines = examples[command.name()];
  if (lines)
    command.addHelpText("after", `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}`);
}
program.addHelpText(
  "after",
  "\nExit codes: 0 success, 1 failure, 2 usage error, 64 + the gRPC code of a failed call\n(67 invalid argument, 69 not found, 73 failed precondition, 78 unavailable, 79 data loss, ...).\n--json prints failures as JSON on stdout: { error: { code, exitCode, reason, field, message } }.",
);

await runProgram("opal", program);
