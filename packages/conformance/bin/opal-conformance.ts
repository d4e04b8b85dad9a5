import { readFileSync } from "node:fs";
import { exitCodeOf, formatErrorReport } from "@opal/core";
import { createConformanceCommand } from "../src/create-conformance-command";

// Exit codes: `ExitCode` of @opal/core (2 for usage errors, which commander prints itself).
const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
let printed = false;
createConformanceCommand("opal-conformance")
  .version(version, "-V, --version", "print the version of @opal/conformance")
  .addHelpText(
    "after",
    "\nExamples:\n  $ opal-conformance --target 127.0.0.1:50051 --junit conformance.xml --json conformance.json\n  $ opal-conformance --list\n\nExit codes: 0 success, 1 failure, 2 usage error, 64 + the gRPC code of a failed call (78: unavailable).",
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
    if (!printed && exitCodeOf(error) !== 0)
      console.error(formatErrorReport("opal-conformance", error));
    process.exit(exitCodeOf(error));
  });
