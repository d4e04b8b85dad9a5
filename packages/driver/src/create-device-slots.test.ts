import { setImmediate } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { createDeviceSlots } from "./create-device-slots";

describe("createDeviceSlots", () => {
  it("hands a freed slot to the lowest priority first, equal priorities in arrival order (PF-50)", async () => {
    const slots = createDeviceSlots(1, 4);
    const first = await slots.acquire(undefined);
    const admitted: string[] = [];
    const releases: Array<() => void> = [];
    const wait = (name: string, priority?: number) =>
      slots.acquire(undefined, priority).then((slot) => {
        admitted.push(name);
        releases.push(slot.release);
      });
    const waiting = [
      wait("batch", 5),
      wait("default-a"),
      wait("interactive", -1),
      wait("default-b", 0),
    ];
    expect(slots.queued).toBe(4);
    first.release();
    for (let held = 0; held < waiting.length; held++) {
      await setImmediate();
      expect(admitted).toHaveLength(held + 1);
      releases[held]!();
    }
    await Promise.all(waiting);
    expect(admitted).toEqual(["interactive", "default-a", "default-b", "batch"]);
    expect(slots.active).toBe(0);
  });

  it("refuses beyond the queue whatever the priority (DEVICE_BUSY)", async () => {
    const slots = createDeviceSlots(1, 1);
    await slots.acquire(undefined);
    void slots.acquire(undefined, 3);
    await expect(slots.acquire(undefined, -100)).rejects.toMatchObject({ reason: "DEVICE_BUSY" });
    expect(slots.queued).toBe(1);
  });
});
