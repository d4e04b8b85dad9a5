import { Code, OpalError, Reason } from "@opal/core";
import type {
  DriverCallOptions,
  FetchEvent,
  PrefillDriver,
  PrefillEvent,
  PrefillRequest,
} from "@opal/driver";
import { DRIVER_API_VERSION } from "@opal/driver";
import { computeOpalBlockHashes, toHex } from "@opal/kv";
import { checkAcceptedDescriptor, isDescriptorViolation } from "./check-accepted-descriptor";
import { createDeviceClient, type DeviceClient } from "./create-device-client";
import {
  assertDevicePoolOptions,
  type DevicePool,
  type DevicePoolOptions,
} from "./device-pool-options";
import { expandTarget, isDnsTarget } from "./expand-pool-target";
import { fanOut } from "./fan-out";
import { watchDeviceHealth } from "./watch-device-health";

interface Member {
  target: string;
  driver: PrefillDriver;
  circuit: "closed" | "open" | "half-open";
  openedAt: number;
  inFlight: number;
  prefills: number;
  failures: number;
  reportedLoad: number | undefined;
  critical: readonly string[];
  /** The `dns:///` target this address came from; undefined for a listed target. */
  readonly source: string | undefined;
  /** No longer resolved: takes no new prefills, closed once idle and its leases have ended. */
  removed: boolean;
  /** Calls of any kind running on the device (prefills, fetches, releases). */
  busy: number;
  /** Latest lease the device granted, ms since the Unix epoch (0: none). */
  leaseUntilMs: number;
  /** Stops this member's health watching. */
  readonly watch: AbortController;
}

/** Longest a retired device is kept open for the leases it granted, in ms. */
const MAX_LEASE_WAIT_MS = 3_600_000;

const DEVICE_FAILURES = new Set<number>([
  Code.UNAVAILABLE,
  Code.INTERNAL,
  Code.DATA_LOSS,
  Code.UNKNOWN,
]);

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
  const connect =
    options.connect ??
    ((target: string): DeviceClient => createDeviceClient(target, options.client));
  const expanded = await Promise.all(targets.map(expandTarget));
  if (expanded.flat().length === 0)
    throw new OpalError(Code.INVALID_ARGUMENT, "a device pool needs at least one target");
  const members: Member[] = [];
  const watching = new AbortController();
  const healthMs = options.health === false ? 0 : (options.health?.intervalMs ?? 1_000);
  const addMember = (target: string, source: string | undefined) => {
    const member: Member = {
      target,
      driver: connect(target),
      circuit: "closed",
      openedAt: 0,
      inFlight: 0,
      prefills: 0,
      failures: 0,
      reportedLoad: undefined,
      critical: [],
      source,
      removed: false,
      busy: 0,
      leaseUntilMs: 0,
      watch: new AbortController(),
    };
    members.push(member);
    if (healthMs > 0) {
      void watchDeviceHealth(member.driver, healthMs, member.watch.signal, (health) => {
        member.reportedLoad = health?.reportedLoad;
        // Critical conditions stand until a snapshot (or a ready Probe) says otherwise: a device
        // whose telemetry failed after SHUTTING_DOWN is not back.
        if (health) member.critical = health.critical;
      });
    }
  };
  try {
    for (const [i, addresses] of expanded.entries()) {
      const source = isDnsTarget(targets[i]!) ? targets[i] : undefined;
      for (const address of addresses) addMember(address, source);
    }
  } catch (error) {
    // A target `connect` rejects: close the devices already made, which would otherwise keep
    // watching their health (and the process alive) for a pool nobody holds.
    for (const member of members) member.watch.abort();
    await Promise.all(members.map((m) => m.driver.close().catch(() => {})));
    throw error;
  }
  const routing = options.routing ?? "prefix-affinity";
  const maxInFlight = options.maxInFlightPerDevice ?? 8;
  const threshold = options.failureThreshold ?? 3;
  const openMs = options.openMs ?? 5_000;
  const failedFor = new Map<string, string>();
  const affinity = new Map<string, string>();
  let cursor = 0;

  const available = (member: Member) => {
    if (member.circuit === "open" && Date.now() - member.openedAt >= openMs)
      member.circuit = "half-open";
    if (member.removed || member.circuit === "open" || member.critical.length > 0) return false;
    if (member.circuit === "half-open" && member.inFlight > 0) return false;
    return member.inFlight < maxInFlight;
  };

  function choose(request: PrefillRequest, hashes: readonly string[]): Member {
    const avoid = failedFor.get(request.requestId);
    let candidates = members.filter((m) => available(m) && m.target !== avoid);
    if (candidates.length === 0) candidates = members.filter(available);
    if (candidates.length === 0) {
      throw new OpalError(
        Code.RESOURCE_EXHAUSTED,
        `no device available: all ${members.length} are busy or out of service`,
        {
          reason: Reason.DEVICE_BUSY,
          retryDelayMs: 50,
        },
      );
    }
    if (routing === "prefix-affinity") {
      for (let i = hashes.length - 1; i >= 0; i--) {
        const holder = candidates.find((m) => m.target === affinity.get(hashes[i]!));
        if (holder) return holder;
      }
    }
    if (routing === "round-robin") return candidates[cursor++ % candidates.length]!;
    // The device's own report counts every client's work; ours is fresher: take the larger.
    const load = (m: Member) => Math.max(m.inFlight, m.reportedLoad ?? 0);
    const least = Math.min(...candidates.map(load));
    const tied = candidates.filter((m) => load(m) === least);
    return tied[cursor++ % tied.length]!;
  }

  /** A retry of `request` avoids `member` (bounded: the oldest requests are forgotten). */
  const avoidOnRetry = (member: Member, request: PrefillRequest) => {
    failedFor.set(request.requestId, member.target);
    if (failedFor.size > 10_000) failedFor.delete(failedFor.keys().next().value as string);
  };

  /**
   * Counts how a prefill on `member` ended: "completed", failed with an error, or "abandoned" by
   * its reader before `completed` (it found a chunk corrupt, its sink failed, its caller gave up):
   * not a success, and not necessarily the device's fault, so only a retry avoids the device.
   * A device failure (UNAVAILABLE, INTERNAL, DATA_LOSS, UNKNOWN, or an `accepted` descriptor
   * that contradicts the request) counts towards `failureThreshold`.
   */
  function record(
    member: Member,
    end: OpalError | "completed" | "abandoned",
    request: PrefillRequest,
  ) {
    if (end === "completed") {
      member.failures = 0;
      member.circuit = "closed";
      failedFor.delete(request.requestId);
      return;
    }
    if (end === "abandoned") {
      avoidOnRetry(member, request);
      return;
    }
    if (!DEVICE_FAILURES.has(end.code) && !isDescriptorViolation(end)) return;
    member.failures++;
    avoidOnRetry(member, request);
    if (member.circuit === "half-open" || member.failures >= threshold) {
      member.circuit = "open";
      member.openedAt = Date.now();
    }
  }

  const byHandle = (handle: string) => {
    const split = handle.indexOf("|");
    const target = split > 0 ? decodeURIComponent(handle.slice(0, split)) : "";
    const member = members.find((m) => m.target === target);
    if (!member) {
      throw new OpalError(Code.NOT_FOUND, "no KV handle of that name in this pool", {
        reason: Reason.KV_HANDLE_NOT_FOUND,
      });
    }
    return { member, handle: handle.slice(split + 1) };
  };

  const first = () => members.find(available) ?? members[0]!;

  /** A device that answered Probe ready: in service, its failures and critical conditions cleared. */
  const backInService = (member: Member) => {
    member.circuit = "closed";
    member.failures = 0;
    member.critical = []; // a device with a critical condition fails Probe (ID-10)
  };

  /** Ends a call counted in `member.busy`; the last one on a member DNS dropped may retire it. */
  const callEnded = (member: Member) => {
    member.busy--;
    if (member.removed) retireRemoved();
  };
  const noteLease = (member: Member, leaseExpiryUnixMs: number) => {
    // Bounded: a device's clock or a bad value must not keep a retired device open for long.
    const capped = Math.min(leaseExpiryUnixMs, Date.now() + MAX_LEASE_WAIT_MS);
    member.leaseUntilMs = Math.max(member.leaseUntilMs, capped);
  };

  /**
   * Closes and drops the members DNS no longer lists once nothing runs on them and the leases
   * they granted have ended (until then their KV handles still reach them).
   */
  const retireRemoved = () => {
    const now = Date.now();
    for (const member of members.filter(
      (m) => m.removed && m.busy === 0 && m.leaseUntilMs <= now,
    )) {
      members.splice(members.indexOf(member), 1);
      member.watch.abort();
      void member.driver.close().catch(() => {});
    }
  };
  const refreshDns = async () => {
    for (const source of new Set(targets.filter(isDnsTarget))) {
      const addresses = await expandTarget(source).catch(() => undefined);
      // A failed or empty answer is more likely a DNS hiccup than every device gone: keep them.
      if (!addresses?.length || watching.signal.aborted) continue;
      for (const address of addresses) {
        const known = members.find((m) => m.source === source && m.target === address);
        if (known) known.removed = false;
        else addMember(address, source);
      }
      for (const member of members) {
        if (member.source === source && !addresses.includes(member.target)) member.removed = true;
      }
    }
    retireRemoved();
  };
  const dnsRefreshMs = options.dnsRefreshMs ?? 30_000;
  if (dnsRefreshMs > 0 && targets.some(isDnsTarget)) {
    let refreshing = false;
    const refresher = setInterval(() => {
      // One refresh at a time: a slow lookup must not pile up others, or land after a newer one.
      if (refreshing) return;
      refreshing = true;
      refreshDns()
        .catch(() => {}) // a `connect` that throws leaves the pool as it was
        .finally(() => {
          refreshing = false;
        });
    }, dnsRefreshMs).unref();
    watching.signal.addEventListener("abort", () => clearInterval(refresher), { once: true });
  }

  if (healthMs > 0) {
    const probeOpen = async (member: Member) => {
      const ready = await member.driver
        .probe({ signal: member.watch.signal, timeoutMs: healthMs })
        .then((state) => state === "ready")
        .catch(() => false);
      if (member.circuit !== "open") return;
      if (ready) {
        backInService(member);
      } else {
        member.openedAt = Date.now();
      }
    };
    const prober = setInterval(() => {
      for (const member of members) {
        if (member.circuit === "open" && Date.now() - member.openedAt >= openMs)
          void probeOpen(member);
      }
    }, healthMs).unref();
    watching.signal.addEventListener("abort", () => clearInterval(prober), { once: true });
  }

  async function* prefill(
    request: PrefillRequest,
    call?: DriverCallOptions,
  ): AsyncGenerator<PrefillEvent> {
    // Devices cache prefixes by model as well as by salted block hash (PH-3): so does affinity.
    const hashes =
      routing === "prefix-affinity"
        ? computeOpalBlockHashes(request.promptTokenIds, {
            blockSizeTokens: request.kvFormat.blockSizeTokens || 16,
            ...(request.cacheSalt ? { cacheSalt: request.cacheSalt } : {}),
          }).map((hash) => `${request.modelId}\n${toHex(hash)}`)
        : [];
    const member = choose(request, hashes);
    member.inFlight++;
    member.busy++;
    member.prefills++;
    let end: OpalError | "completed" | "abandoned" = "abandoned";
    try {
      for await (const event of member.driver.prefill(request, call)) {
        if (event.type === "completed") {
          // Recorded before yielding: a consumer may stop iterating right after `completed`.
          end = "completed";
          for (const hash of hashes) affinity.set(hash, member.target);
          if (affinity.size > 100_000)
            for (const key of [...affinity.keys()].slice(0, 10_000)) affinity.delete(key);
        }
        if (event.type === "accepted") {
          noteLease(member, event.leaseExpiryUnixMs);
          // A device whose cache is not the one asked for broke the protocol (PF-12): its failure.
          const refused = checkAcceptedDescriptor(request, event.descriptor);
          if (refused) throw refused;
        }
        yield event.type === "accepted"
          ? { ...event, kvHandle: `${encodeURIComponent(member.target)}|${event.kvHandle}` }
          : event;
      }
    } catch (error) {
      end = OpalError.from(error);
      throw end;
    } finally {
      member.inFlight--;
      record(member, end, request);
      callEnded(member);
    }
  }

  async function* fetchKv(
    request: Parameters<PrefillDriver["fetchKv"]>[0],
    call?: DriverCallOptions,
  ): AsyncGenerator<FetchEvent> {
    const { member, handle } = byHandle(request.kvHandle);
    member.busy++;
    try {
      for await (const event of member.driver.fetchKv({ ...request, kvHandle: handle }, call)) {
        if (event.type === "accepted") noteLease(member, event.leaseExpiryUnixMs);
        yield event;
      }
    } finally {
      callEnded(member);
    }
  }

  return {
    driverApiVersion: DRIVER_API_VERSION,
    // Owned only if every member's are (remote device clients yield their received messages).
    get yieldsOwnedChunks() {
      return members.every((m) => m.driver.yieldsOwnedChunks === true);
    },
    targetOf: (kvHandle) => {
      const split = kvHandle.indexOf("|");
      if (split <= 0) return undefined;
      const encoded = kvHandle.slice(0, split);
      return members.find((m) => encodeURIComponent(m.target) === encoded)?.target;
    },
    get devices() {
      return members.map(
        ({ target, circuit, inFlight, prefills, failures, reportedLoad, critical }) => ({
          target,
          circuit,
          inFlight,
          prefills,
          failures,
          reportedLoad,
          critical,
        }),
      );
    },
    getInfo: (call) => first().driver.getInfo(call),
    getCapabilities: (call) => first().driver.getCapabilities(call),
    async probe(call) {
      // The members as they are now: DNS may retire one while the probes run.
      const probed = [...members];
      const states = await Promise.allSettled(probed.map((m) => m.driver.probe(call)));
      for (const [i, state] of states.entries()) {
        const member = probed[i]!;
        if (state.status !== "fulfilled" || state.value !== "ready") continue;
        member.critical = []; // before `available`, which skips devices with one
        if (member.circuit !== "closed" && available(member)) backInService(member);
      }
      if (states.some((s) => s.status === "fulfilled" && s.value === "ready")) return "ready";
      throw new OpalError(Code.UNAVAILABLE, "no device of the pool is ready", {
        reason: Reason.DEVICE_FAULT,
      });
    },
    listModels: (call) => first().driver.listModels(call),
    loadModel: async (request, call) => {
      // Uploaded weights are one stream: each device gets its own copy of it.
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
    },
    unloadModel: async (modelId, call) => {
      const results = await Promise.all(members.map((m) => m.driver.unloadModel(modelId, call)));
      return { wasLoaded: results.some((r) => r.wasLoaded) };
    },
    prefill,
    fetchKv,
    releaseKv: async (kvHandle, call) => {
      try {
        const { member, handle } = byHandle(kvHandle);
        member.busy++;
        try {
          return await member.driver.releaseKv(handle, call);
        } finally {
          callEnded(member);
        }
      } catch (error) {
        if (error instanceof OpalError && error.code === Code.NOT_FOUND) return { released: false };
        throw error;
      }
    },
    watchTelemetry: (request, call) => first().driver.watchTelemetry(request, call),
    async close() {
      watching.abort();
      for (const member of members) member.watch.abort();
      await Promise.all(members.map((m) => m.driver.close()));
    },
  };
}
