import type { DriverCallOptions, LoadModelRequest, LoadModelResult } from "@opal/driver";
import { fanOut } from "./fan-out";
import type { PoolMember } from "./pool-member";

/**
 * Loads the model on every member at once and resolves with the first member's answer; rejects
 * when any load fails. Uploaded `weights` are one stream, read once and copied to each device at
 * the pace of the slowest (see `fanOut`).
 */
export async function loadModelEverywhere(
  members: readonly PoolMember[],
  request: LoadModelRequest,
  call?: DriverCallOptions,
): Promise<LoadModelResult> {
  const weights = request.weights ? fanOut(request.weights, members.length) : [];
  const results = await Promise.all(
    members.map((m, i) => {
      const upload = weights[i] ? { ...request, weights: weights[i] } : request;
      const loading = Promise.resolve().then(() => m.driver.loadModel(upload, call));
      // A device that is done (or failed before reading) must not hold the others' copies.
      return loading.finally(() => weights[i]?.close());
    }),
  );
  return results[0]!;
}
