import { createMockCommand } from "../src/create-mock-command";

createMockCommand("opal-mock")
  .parseAsync()
  .catch((error: unknown) => {
    console.error(`opal-mock: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
