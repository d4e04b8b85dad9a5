import { Code, invalidField, OpalError, Reason } from "@opal/core";
import {
  type DeviceCapabilities,
  type DriverCallOptions,
  type PrefillDriver,
  prefillCacheByteLength,
  type ReceivedPrefillRequest,
  validatePrefillRequest,
} from "@opal/driver";
import { type opal, toWirePrefillEvent } from "@opal/protocol";
import { isLoopbackPeer } from "./caller-auth";
import {
  type HostPrefillEvent,
  openSharedMemoryRegion,
  type SharedMemoryOffer,
  writeThroughRegion,
} from "./shared-memory-region";

/**
 * The shared-memory region a prefill offers, if any. An offered plane the host does not serve
 * fails UNIMPLEMENTED UNSUPPORTED_FEATURE (PF-41); a region with a push target is INVALID_ARGUMENT
 * (the bytes go to the receiver, not to the caller), and so is a region offered by a caller that
 * is not on this host (`peer` as grpc-js reports it).
 */
export function sharedMemoryOffer(
  request: opal.device.v1.PrefillRequest,
  served: boolean,
  peer: string,
): SharedMemoryOffer | undefined {
  const plane = request.dataPlane;
  if (!plane?.sharedMemory && !plane?.transport) return undefined;
  if (plane.transport || !served) {
    const kind = plane.transport
      ? `transport ${JSON.stringify(plane.transport.kind)}`
      : "shared memory";
    throw new OpalError(Code.UNIMPLEMENTED, `data_plane: this device does not offer ${kind}`, {
      reason: Reason.UNSUPPORTED_FEATURE,
      fieldViolations: [{ field: "data_plane", description: "not declared in capabilities" }],
    });
  }
  if (request.pushTarget) {
    throw invalidField("data_plane", "a pushed cache goes to the push target, not to a region");
  }
  if (!peer.startsWith("unix:") && !isLoopbackPeer(peer)) {
    throw invalidField(
      "data_plane.shared_memory.name",
      "shared-memory regions are served only to callers on this host (loopback or unix socket)",
    );
  }
  return plane.sharedMemory!;
}

/**
 * A prefill through the caller's region. PF-1 puts `data_plane` late in stage 4, and a request
 * that fails validation must have no side effect: so the host first checks what precedes it
 * (`validatePrefillRequest` with the server's capabilities and the driver's model, without
 * `cache_salt`), then opens and sizes the region, and only then calls `admit` (which supersedes a
 * running call with the same id, PF-7, and takes the tenant's slot; the region is closed if it
 * fails) and starts the driver, which validates the whole request again.
 */
export async function* prefillThroughRegion(
  device: {
    readonly driver: PrefillDriver;
    readonly capabilities: DeviceCapabilities;
    readonly call: DriverCallOptions;
  },
  request: ReceivedPrefillRequest,
  offer: SharedMemoryOffer,
  admit: () => Promise<void>,
): AsyncGenerator<HostPrefillEvent> {
  const { driver, capabilities, call } = device;
  const model = (await driver.listModels(call)).find((m) => m.modelId === request.modelId);
  const { cacheSalt: _, ...beforeDataPlane } = request;
  const valid = validatePrefillRequest(beforeDataPlane, { capabilities, model });
  const tokens = request.promptTokenIds.length - valid.decoderPrefixTokens;
  const region = await openSharedMemoryRegion(
    offer,
    prefillCacheByteLength(valid.request, model!, Math.max(1, tokens)),
  );
  try {
    await admit();
  } catch (error) {
    await region.handle.close();
    throw error;
  }
  yield* writeThroughRegion(() => driver.prefill(request, call), region);
}

/** A host prefill event as its wire message: a chunk carried by reference gets its `data_ref`. */
export function toWireHostPrefillEvent(event: HostPrefillEvent) {
  const wire = toWirePrefillEvent(event);
  return "dataRef" in event ? { chunk: { ...wire.chunk, dataRef: event.dataRef } } : wire;
}
