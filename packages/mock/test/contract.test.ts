import { createDeviceClient } from "@opal/client";
import { createDeviceServer } from "@opal/server";
import { describeDriverContract } from "@opal/testing";
import { createMockDevice } from "../src/create-mock-device";

describeDriverContract("mock device, in process", async () => {
  const device = createMockDevice({ models: ["opal-tiny"] });
  const asTenant = (tenant: string) =>
    new Proxy(device, {
      get(target, key) {
        const value = Reflect.get(target, key);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          const last = args.length - 1;
          const withTenant = (o: unknown) => ({ ...(o as object), tenant });
          // Every driver method takes its call options last.
          const fixed =
            key === "getInfo" ||
            key === "getCapabilities" ||
            key === "probe" ||
            key === "listModels" ||
            key === "close"
              ? [withTenant(args[0])]
              : [...args.slice(0, Math.max(1, last)), withTenant(args[Math.max(1, last)])];
          return (value as (...a: unknown[]) => unknown).apply(target, fixed);
        };
      },
    });
  return {
    driver: asTenant("tenant-a"),
    otherTenant: asTenant("tenant-b"),
    modelId: "opal-tiny",
    activePrefills: () => device.stats.activePrefills,
    close: () => device.close(),
  };
});

describeDriverContract("mock device over gRPC", async () => {
  const device = createMockDevice({ models: ["opal-tiny"] });
  const server = await createDeviceServer(device, {
    auth: { tokens: { "token-a": "tenant-a", "token-b": "tenant-b" } },
  });
  const driver = createDeviceClient(server.address, { token: "token-a" });
  const otherTenant = createDeviceClient(server.address, { token: "token-b" });
  return {
    driver,
    otherTenant,
    modelId: "opal-tiny",
    activePrefills: () => device.stats.activePrefills,
    async close() {
      await driver.close();
      await otherTenant.close();
      await server.shutdown({ graceMs: 100 });
      await device.close();
    },
  };
});
