import { readFileSync } from "node:fs";
import { createDeviceClient } from "@opal/client";
import { createDeviceServer } from "@opal/server";
import { describeDriverContract } from "@opal/testing";
import { expect, it } from "vitest";
import { createMinimalDriver } from "./minimal-driver";

describeDriverContract(
  "the minimal vendor driver of docs/guides/vendor.md, over gRPC",
  async () => {
    const driver = createMinimalDriver();
    const server = await createDeviceServer(driver);
    const client = createDeviceClient(server.address);
    return {
      driver: client,
      modelId: "opal-tiny",
      async close() {
        await client.close();
        await server.shutdown({ graceMs: 100 });
      },
    };
  },
);

it("stays under 100 lines, as the vendor guide promises", () => {
  const lines = readFileSync(new URL("./minimal-driver.ts", import.meta.url), "utf8")
    .trimEnd()
    .split("\n");
  expect(lines.length).toBeLessThan(100);
});
