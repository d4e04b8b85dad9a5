import { isIP } from "node:net";
import { Code, OpalError, Reason } from "@opal/core";
import {
  type DriverCallOptions,
  type ModelInfo,
  type PrefillEvent,
  type PrefillRequest,
  prefillCacheByteLength,
} from "@opal/driver";
import { hasSharedMemory, isLoopbackHost, opal, SHARED_MEMORY_DIRECTORY } from "@opal/protocol";
import { readRegionChunks } from "../shared-memory/read-region-chunks";
import {
  createSharedMemoryRegions,
  type SharedMemoryRegion,
} from "../shared-memory/shared-memory-regions";
import type { DeviceClientOptions } from "./client-options";

type Offer = opal.device.v1.SharedMemoryRegion.$Properties;

/** What the plane needs of its device client. */
export interface SharedMemoryPlaneDevice {
  /** The device's capabilities (read once per client). */
  capabilities(call: DriverCallOptions): Promise<opal.device.v1.Capabilities.$Properties>;
  listModels(call: DriverCallOptions): Promise<readonly ModelInfo[]>;
}

/** The shared-memory data plane of one device client (`DeviceClientOptions.dataPlane`). */
export interface SharedMemoryPlane {
  /**
   * The region a prefill goes through, sized to its cache from the model's shape (ListModels, read
   * once per client and again for a model not seen yet), or undefined for inline.
   */
  regionFor(
    request: PrefillRequest,
    call: DriverCallOptions,
  ): Promise<SharedMemoryRegion | undefined>;
  /**
   * The prefill's events through `region`: `open` starts the call offering it (ended through
   * `signal` when the caller stops early); in "auto" mode a region the device refuses before any
   * event sends the call through `inline` instead. Releases the region when done.
   */
  stream(
    region: SharedMemoryRegion,
    call: DriverCallOptions,
    open: (offer: Offer, signal: AbortSignal) => AsyncIterable<opal.device.v1.PrefillResponse>,
    inline: () => AsyncIterable<PrefillEvent>,
  ): AsyncGenerator<PrefillEvent>;
  /** Removes the client's regions (those in use once released). */
  close(): void;
}

/** Creates the shared-memory plane of the device client for `target`. */
export function createSharedMemoryPlane(
  target: string,
  options: Pick<DeviceClientOptions, "dataPlane" | "sharedMemoryMaxBytes">,
  device: SharedMemoryPlaneDevice,
): SharedMemoryPlane {
  const mode = options.dataPlane ?? "auto";
  // "auto" offers shared memory only to a device on this host; it stops after a device cannot open a region.
  let off = mode === "inline" || (mode === "auto" && !(isSameHost(target) && hasSharedMemory()));
  const regions = createSharedMemoryRegions();
  let modelShapes: Map<string, ModelInfo> | undefined;

  return {
    async regionFor(request, call) {
      if (off || request.pushTarget) return undefined;
      if (mode === "auto") {
        const planes = (await device.capabilities(call)).dataPlanes ?? [];
        if (!planes.includes(opal.device.v1.DataPlaneKind.DATA_PLANE_KIND_SHARED_MEMORY)) {
          return undefined;
        }
      }
      if (!modelShapes?.has(request.modelId)) {
        modelShapes = new Map((await device.listModels(call)).map((m) => [m.modelId, m]));
      }
      const model = modelShapes.get(request.modelId);
      // An unknown model or format fails on the device with its proper reason, inline.
      if (!model) return undefined;
      let bytes: number;
      try {
        bytes = prefillCacheByteLength(request, model);
      } catch {
        return undefined;
      }
      if (options.sharedMemoryMaxBytes !== undefined && bytes > options.sharedMemoryMaxBytes) {
        return undefined;
      }
      let region: SharedMemoryRegion | undefined;
      try {
        region = regions.acquire(bytes);
      } catch (error) {
        if (mode === "shared-memory") throw regionUnavailable((error as Error).message);
        off = true; // this host will not let us create regions
        return undefined;
      }
      if (!region && mode === "shared-memory") {
        throw regionUnavailable(`${SHARED_MEMORY_DIRECTORY} has not ${bytes} bytes free`);
      }
      return region;
    },

    async *stream(region, call, open, inline) {
      let completed = false;
      let yielded = false;
      // Ends the call when the caller stops early, so no read of the region outlives this call.
      const local = new AbortController();
      const forward = () => local.abort(call.signal?.reason);
      if (call.signal?.aborted) forward();
      call.signal?.addEventListener("abort", forward, { once: true });
      try {
        const offer = { name: region.name, offsetBytes: 0, lengthBytes: region.lengthBytes };
        const hooks = {
          onCompleted: () => {
            completed = true;
          },
          cancel: () => local.abort(),
          ...(call.keepsChunks !== undefined ? { keepsChunks: call.keepsChunks } : {}),
        };
        for await (const event of readRegionChunks(open(offer, local.signal), region, hooks)) {
          yielded = true;
          yield event;
        }
      } catch (error) {
        const refused = mode === "auto" && !yielded ? refusedRegionField(error) : undefined;
        if (!refused) throw error;
        // A device that cannot open our region is not on our host after all: inline from now on.
        // A region it finds too small sends this call inline and the model's shape is read again.
        if (refused.endsWith(".length_bytes")) modelShapes = undefined;
        else off = true;
        yield* inline();
      } finally {
        call.signal?.removeEventListener("abort", forward);
        regions.release(region, completed);
      }
    },

    close() {
      regions.close();
    },
  };
}

/** Whether `target` names this host: a loopback address, `localhost`, or a unix socket. */
function isSameHost(target: string): boolean {
  if (/^unix(-abstract)?:/.test(target)) return true;
  const address = target.replace(/^(dns:(\/\/[^/]*\/)?|ipv4:|ipv6:)/, "");
  const host = isIP(address)
    ? address
    : address.startsWith("[")
      ? address.slice(1, address.indexOf("]"))
      : address.replace(/:\d+$/, "");
  return isLoopbackHost(host);
}

/**
 * The `data_plane` field a device named when it refused the offered region (it cannot open it,
 * does not offer the plane, or the region is too small), else undefined.
 */
function refusedRegionField(error: unknown): string | undefined {
  if (!(error instanceof OpalError)) return undefined;
  if (error.code !== Code.INVALID_ARGUMENT && error.code !== Code.UNIMPLEMENTED) return undefined;
  return error.fieldViolations.find((v) => v.field.startsWith("data_plane"))?.field;
}

function regionUnavailable(why: string): OpalError {
  return new OpalError(
    Code.FAILED_PRECONDITION,
    `dataPlane "shared-memory": no region for this cache: ${why}`,
    { reason: Reason.UNSUPPORTED_FEATURE },
  );
}
