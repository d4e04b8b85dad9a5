import type { PrefillDriver } from "@opal/driver";

/** A driver that says which device served a KV handle: a `DevicePool`. */
export type TargetOfDriver = PrefillDriver & {
  targetOf(kvHandle: string): string | undefined;
};

/** True when `device` has a `targetOf` function (it is a pool of devices). */
export function hasTargetOf(device: PrefillDriver): device is TargetOfDriver {
  return "targetOf" in device && typeof device.targetOf === "function";
}
