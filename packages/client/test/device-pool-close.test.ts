import * as core from "@opal/core";
import { createMockDevice, type MockDevice } from "@opal/mock";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createDevicePool } from "../src/pool/create-device-pool";

// The pool's watch registry is its own: it is found as the registries made while a pool is created.
const registries = vi.hoisted(() => [] as core.CallRegistry[]);
vi.mock("@opal/core", async (importOriginal) => {
  const actual = await importOriginal<typeof core>();
  return {
    ...actual,
    createCallRegistry: () => {
      const registry = actual.createCallRegistry();
      registries.push(registry);
      return registry;
    },
  };
});

const devices: MockDevice[] = [];
const device = () => {
  const mock = createMockDevice({ models: ["opal-tiny"] });
  devices.push(mock);
  return mock;
};
afterEach(async () => {
  for (const mock of devices.splice(0)) await mock.close();
});

/** The registries created by `create` (the pool's, and its members'). */
async function registriesOf(create: () => Promise<unknown>): Promise<core.CallRegistry[]> {
  const before = registries.length;
  await create().catch(() => {});
  return registries.slice(before);
}

describe("closing a device pool leaves no watch behind", () => {
  it("close() disposes every member's health watch and the pool's timers", async () => {
    let pool: Awaited<ReturnType<typeof createDevicePool>> | undefined;
    const made = await registriesOf(async () => {
      pool = await createDevicePool(["a:1", "b:1"], {
        connect: () => device(),
        health: { intervalMs: 50 },
      });
    });
    expect(made.some((r) => r.size === 3)).toBe(true); // two member watches and the timers
    await pool!.close();
    expect(made.map((r) => r.size)).toEqual(made.map(() => 0));
  });

  it("a connect that throws disposes the watches of the members already made", async () => {
    const made = await registriesOf(() =>
      createDevicePool(["a:1", "b:1", "c:1"], {
        connect: (target) => {
          if (target === "c:1") throw new core.OpalError(core.Code.UNAVAILABLE, "no c");
          return device();
        },
        health: { intervalMs: 50 },
      }),
    );
    expect(made.length).toBeGreaterThan(0);
    expect(made.map((r) => r.size)).toEqual(made.map(() => 0));
  });
});
