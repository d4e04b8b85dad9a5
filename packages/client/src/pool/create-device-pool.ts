import { type CallSignal, Code, createCallRegistry, OpalError, Reason } from "@opal/core";
import { DRIVER_API_VERSION } from "@opal/driver";
import { createDeviceClient, type DeviceClient } from "../device-client/create-device-client";
import {
  assertDevicePoolOptions,
  type DevicePool,
  type DevicePoolOptions,
} from "./device-pool-options";
import { expandTarget, isDnsTarget } from "./expand-target";
import { fetchPoolKv } from "./fetch-pool-kv";
import { loadModelEverywhere } from "./load-model-everywhere";
import { targetOfPoolHandle } from "./pool-handle";
import { toPoolDevice } from "./pool-member";
import { addMember, firstMember } from "./pool-membership";
import { poolPrefill } from "./pool-prefill";
import { type PoolState, toPoolSettings } from "./pool-state";
import { probePool } from "./probe-pool";
import { startDnsRefresh } from "./refresh-dns";
import { releasePoolKv } from "./release-pool-kv";
import { startProbingOpenMembers } from "./start-probing-open-members";

/**
 * Creates a pool over `targets`: `host:port` entries, and `dns:///name:port` entries that expand to
 * one device per address the name resolves to (again every `dnsRefreshMs`). Rejects UNAVAILABLE
 * when a name does not resolve at creation, INVALID_ARGUMENT when no target is given or an option
 * is bad (naming it, see {@link DevicePoolOptions}).
 */
export async function createDevicePool(
  targets: readonly string[],
  options: DevicePoolOptions = {},
): Promise<DevicePool> {
  assertDevicePoolOptions(targets, options);
  const expanded = await Promise.all(targets.map(expandTarget));
  if (expanded.flat().length === 0)
    throw new OpalError(Code.INVALID_ARGUMENT, "a device pool needs at least one target");
  const pool: PoolState = {
    members: [],
    settings: toPoolSettings(options),
    connect:
      options.connect ??
      ((target: string): DeviceClient => createDeviceClient(target, options.client)),
    watches: createCallRegistry(),
    affinity: new Map(),
    failedFor: new Map(),
    turn: 0,
  };
  await addListedMembers(pool, targets, expanded);
  // Ends when the pool closes, with the health watches and probes.
  const timers = pool.watches.open();
  startDnsRefresh(pool, targets, timers.signal);
  if (pool.settings.healthMs > 0) startProbingOpenMembers(pool, timers.signal);
  return toDevicePool(pool, timers);
}

/**
 * Adds a member per address of `expanded` (the addresses of each of `targets`). When `connect`
 * throws, closes the members already made, which would otherwise keep watching their health (and
 * the process alive) for a pool nobody holds, and rethrows.
 */
async function addListedMembers(
  pool: PoolState,
  targets: readonly string[],
  expanded: readonly string[][],
): Promise<void> {
  try {
    for (const [i, addresses] of expanded.entries()) {
      const source = isDnsTarget(targets[i]!) ? targets[i] : undefined;
      for (const address of addresses) addMember(pool, address, source);
    }
  } catch (error) {
    endWatches(pool);
    await Promise.all(pool.members.map((m) => m.driver.close().catch(() => {})));
    throw error;
  }
}

/**
 * Ends the pool's watches (health, probes, DNS refresh): aborts them with CANCELLED, then disposes
 * each member's watch and `timers` (the pool's own), so none stays in `pool.watches`.
 */
function endWatches(pool: PoolState, timers?: CallSignal): void {
  pool.watches.abortAll(poolClosed());
  for (const member of pool.members) member.watch.stop();
  timers?.dispose();
}

/** The `DevicePool` over `pool`'s state; `close()` disposes `timers` (see {@link endWatches}). */
function toDevicePool(pool: PoolState, timers: CallSignal): DevicePool {
  const { members } = pool;
  return {
    driverApiVersion: DRIVER_API_VERSION,
    // Owned only if every member's are (remote device clients yield their received messages).
    get yieldsOwnedChunks() {
      return members.every((m) => m.driver.yieldsOwnedChunks === true);
    },
    targetOf: (kvHandle) => targetOfPoolHandle(members, kvHandle),
    get devices() {
      return members.map(toPoolDevice);
    },
    getInfo: (call) => firstMember(pool).driver.getInfo(call),
    getCapabilities: (call) => firstMember(pool).driver.getCapabilities(call),
    probe: (call) => probePool(pool, call),
    listModels: (call) => firstMember(pool).driver.listModels(call),
    loadModel: (request, call) => loadModelEverywhere(members, request, call),
    unloadModel: async (modelId, call) => {
      const results = await Promise.all(members.map((m) => m.driver.unloadModel(modelId, call)));
      return { wasLoaded: results.some((r) => r.wasLoaded) };
    },
    prefill: (request, call) => poolPrefill(pool, request, call),
    fetchKv: (request, call) => fetchPoolKv(pool, request, call),
    releaseKv: (kvHandle, call) => releasePoolKv(pool, kvHandle, call),
    watchTelemetry: (request, call) => firstMember(pool).driver.watchTelemetry(request, call),
    async close() {
      endWatches(pool, timers);
      await Promise.all(members.map((m) => m.driver.close()));
    },
  };
}

/** The reason the pool's watches end with when it closes. */
function poolClosed(): OpalError {
  return new OpalError(Code.CANCELLED, "the device pool is closed", { reason: Reason.CANCELLED });
}
