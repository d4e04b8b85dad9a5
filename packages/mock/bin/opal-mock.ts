import { readFileSync } from "node:fs";
import { exitCodeOf, formatErrorReport } from "@opal/core";
import { createMockCommand } from "../src/create-mock-command";

// Exit codes: `ExitCode` of @opal/core (2 for usage errors, which commander prints itself).
const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
let printed = false;
createMockCommand("opal-mock")
  .version(version, "-V, --version", "print the version of @opal/mock")
  .addHelpText(
    "after",
    "\nExamples:\n  $ opal-mock --port 50051 --profile iris-nova --model opal-tiny llama-3-8b\n  $ opal-mock --port 0 --profile instant --token a=ta --token b=tb\n\nExit codes: 0 success, 1 failure, 2 usage error, 64 + the gRPC code of a failed call (78: unavailable).",
  )
  .exitOverride()
  .configureOutput({
    outputError: (text, write) => {
      printed = true;
      write(text);
    },
  })
  .parseAsync()
  .catch((error: unknown) => {
    // Commander printed its own usage errors, help and version (exit 0) already.
    if (!printed && exitCodeOf(error) !== 0) console.error(formatErrorReport("opal-mock", error));
    process.exit(exitCodeOf(error));
  });
