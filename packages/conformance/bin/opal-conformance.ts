import { createConformanceCommand } from "../src/create-conformance-command";

createConformanceCommand("opal-conformance")
  .parseAsync()
  .catch((error: unknown) => {
    console.error(`opal-conformance: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 2;
  });
