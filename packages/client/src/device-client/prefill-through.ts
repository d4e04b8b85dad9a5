import type {
  DriverCallOptions,
  FetchEvent,
  FetchKvRequest,
  PrefillEvent,
  PrefillRequest,
} from "@opal/driver";
import {
  fromWireFetchEvent,
  fromWirePrefillEvent,
  toWireFetchRequest,
  toWirePrefillRequest,
} from "@opal/protocol";
import { assertWireIntegers } from "./assert-wire-integers";
import { chunkBytesFor } from "./chunk-bytes-for";
import type { SharedMemoryPlane } from "./create-shared-memory-plane";
import { deviceStream } from "./device-call";
import type { DeviceClientState } from "./device-client-state";

/**
 * A Prefill call: the request with its chunk size settled (see `chunkBytesFor`), its KV bytes
 * through a shared-memory region of `sharedMemory` when the plane offers one, else inline. An
 * integer field protobufjs would wrap fails INVALID_ARGUMENT before anything is sent
 * (`assertWireIntegers`).
 */
export async function* prefillThrough(
  state: DeviceClientState,
  sharedMemory: SharedMemoryPlane,
  request: PrefillRequest,
  call: DriverCallOptions = {},
): AsyncGenerator<PrefillEvent> {
  assertWireIntegers(request);
  const maxChunkBytes = await chunkBytesFor(state, request.maxChunkBytes, call);
  const wire = toWirePrefillRequest({ ...request, maxChunkBytes });
  const inline = () => deviceStream((o) => state.rpc.prefill(wire, o), fromWirePrefillEvent, call);
  const region = await sharedMemory.regionFor(request, call);
  if (!region) {
    yield* inline();
    return;
  }
  yield* sharedMemory.stream(
    region,
    call,
    (offer, signal) =>
      deviceStream(
        (o) => state.rpc.prefill({ ...wire, dataPlane: { sharedMemory: offer } }, o),
        (m) => m,
        { ...call, signal },
      ),
    inline,
  );
}

/** A FetchKv call, its chunk size settled as a prefill's. */
export async function* fetchKvFrom(
  state: DeviceClientState,
  request: FetchKvRequest,
  call: DriverCallOptions = {},
): AsyncGenerator<FetchEvent> {
  const maxChunkBytes = await chunkBytesFor(state, request.maxChunkBytes, call);
  const wire = toWireFetchRequest({ ...request, maxChunkBytes });
  yield* deviceStream((o) => state.rpc.fetchKv(wire, o), fromWireFetchEvent, call);
}
