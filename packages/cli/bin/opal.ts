import { createConformanceCommand } from "@opal/conformance";
import { createMockCommand } from "@opal/mock";
import { Command } from "commander";
import { createBenchCommand } from "../src/commands/bench-command";
import { createConvertCommand } from "../src/commands/convert-command";
import { createDemoCommand } from "../src/commands/demo-command";
import { createInspectCommand } from "../src/commands/inspect-command";
import { createPrefillCommand } from "../src/commands/prefill-command";

const program = new Command("opal")
  .description(
    "OPAL: offload LLM prefill to specialised hardware and hand the KV cache to decoders.",
  )
  .showHelpAfterError()
  .addCommand(createDemoCommand())
  .addCommand(createMockCommand("mock"))
  .addCommand(createPrefillCommand())
  .addCommand(createInspectCommand())
  .addCommand(createConvertCommand())
  .addCommand(createConformanceCommand("conformance"))
  .addCommand(createBenchCommand());

program.parseAsync().catch((error: unknown) => {
  console.error(`opal: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
