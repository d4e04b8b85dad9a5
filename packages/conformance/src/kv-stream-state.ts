import { crc32cOf, type KvDescriptor, type KvPart, partByteLength, partsOf } from "@opal/kv";
import { fromWireDescriptor, type opal, partEnum } from "@opal/protocol";

type PrefillResponse = opal.device.v1.PrefillResponse;
type FetchKvResponse = opal.device.v1.FetchKvResponse;

/** Where a stream starts: layer, index into the descriptor's parts, byte offset. */
export interface StreamStart {
  readonly layer: number;
  readonly partIndex: number;
  readonly offsetBytes: number;
}

/** The shared-memory region a request offered (PF-43), which its chunks' `data_ref` point into. */
export interface KvRegion {
  /** Where the cache starts in the region, in bytes. */
  readonly offsetBytes: number;
  /** The region's bytes at `offsetBytes` (absolute in the region), `lengthBytes` long. */
  read(offsetBytes: number, lengthBytes: number): Uint8Array;
}

/**
 * What a KV stream has delivered so far and the rules it broke: plain state, owned by the one
 * collection that created it (see `collectKvStream`) and changed only by {@link readKvStreamMessage}.
 */
export interface KvStreamState {
  /** Largest chunk allowed (`PF-14`), in bytes. */
  readonly chunkBytes: number;
  readonly region: KvRegion | undefined;
  /** Rule violations, each prefixed with the requirement id; at most 20 are kept. */
  readonly violations: string[];
  accepted: (opal.device.v1.IPrefillAccepted & opal.device.v1.IFetchKvAccepted) | undefined;
  /** The descriptor, when `accepted` carried a valid one. */
  descriptor: KvDescriptor | undefined;
  /** The descriptor's parts in canonical order (empty before a valid `accepted`). */
  order: readonly KvPart[];
  /** Received bytes per layer and part, allocated from the descriptor. */
  readonly parts: Partial<Record<KvPart, Uint8Array>>[];
  /** Layer of the next expected chunk. */
  layer: number;
  /** Index into {@link order} of the next expected chunk's part. */
  partIndex: number;
  /** Byte offset of the next expected chunk in its part. */
  offsetBytes: number;
  completed: (opal.device.v1.IPrefillCompleted & opal.device.v1.IFetchKvCompleted) | undefined;
  readonly pushProgress: opal.device.v1.IPushProgress[];
  chunkCount: number;
  /** Chunk bytes received. */
  receivedBytes: number;
  /** Messages received in total. */
  messageCount: number;
}

/**
 * The state of a stream about to be read: it expects `accepted`, then chunks from `start` (default
 * the start of the cache), each of at most `chunkBytes` bytes, read from `region` when given.
 */
export function createKvStreamState(options: {
  readonly chunkBytes: number;
  readonly start?: StreamStart;
  readonly region?: KvRegion;
}): KvStreamState {
  return {
    chunkBytes: options.chunkBytes,
    region: options.region,
    violations: [],
    accepted: undefined,
    descriptor: undefined,
    order: [],
    parts: [],
    layer: options.start?.layer ?? 0,
    partIndex: options.start?.partIndex ?? 0,
    offsetBytes: options.start?.offsetBytes ?? 0,
    completed: undefined,
    pushProgress: [],
    chunkCount: 0,
    receivedBytes: 0,
    messageCount: 0,
  };
}

/** Records a violation, keeping the first 20. */
export function addViolation(state: KvStreamState, text: string): void {
  if (state.violations.length < 20) state.violations.push(text);
}

/**
 * Checks one message of a `Prefill` or `FetchKv` stream against the stream rules (`PF-10`,
 * `PF-12`…`PF-15`, `PF-28`, `PF-42`, `PF-43`, `GEN-4`) and records what it carried in `state`.
 */
export function readKvStreamMessage(
  state: KvStreamState,
  message: PrefillResponse | FetchKvResponse,
): void {
  state.messageCount++;
  const event = message.event;
  if (state.completed)
    addViolation(state, `PF-10: a ${event ?? "message"} arrived after \`completed\``);
  if (event === "accepted") readAccepted(state, message);
  // The oneof's case names the field it set, so that field is present.
  else if (event === "chunk" && message.chunk) readChunk(state, message.chunk);
  else if (event === "pushProgress" && "pushProgress" in message && message.pushProgress) {
    if (state.chunkCount > 0) addViolation(state, "PF-10: push_progress and chunks in one stream");
    state.pushProgress.push(message.pushProgress);
  } else if (event === "completed") readCompleted(state, message);
  else addViolation(state, `GEN-4: a message with no known event (${JSON.stringify(event)})`);
}

/** True once every byte the descriptor announces has arrived. */
function isComplete(state: KvStreamState): boolean {
  return state.descriptor !== undefined && state.layer >= state.descriptor.numLayers;
}

/** Moves the expected position past every part already filled. */
function advance(state: KvStreamState): void {
  const descriptor = state.descriptor;
  if (!descriptor) return;
  while (
    state.layer < descriptor.numLayers &&
    state.offsetBytes >= partByteLength(descriptor, state.order[state.partIndex]!)
  ) {
    state.offsetBytes = 0;
    state.partIndex++;
    if (state.partIndex >= state.order.length) {
      state.partIndex = 0;
      state.layer++;
    }
  }
}

function readAccepted(state: KvStreamState, message: PrefillResponse | FetchKvResponse): void {
  if (state.accepted) {
    addViolation(state, "PF-10: a second `accepted`");
    return;
  }
  if (state.messageCount !== 1) addViolation(state, "PF-10: `accepted` is not the first message");
  state.accepted = message.accepted as KvStreamState["accepted"];
  try {
    const descriptor = fromWireDescriptor(state.accepted?.descriptor ?? {});
    state.descriptor = descriptor;
    state.order = partsOf(descriptor);
    for (let l = 0; l < descriptor.numLayers; l++) {
      const byPart: Partial<Record<KvPart, Uint8Array>> = {};
      for (const part of state.order)
        byPart[part] = new Uint8Array(partByteLength(descriptor, part));
      state.parts.push(byPart);
    }
    advance(state);
  } catch (cause) {
    addViolation(state, `PF-12: invalid descriptor in \`accepted\`: ${(cause as Error).message}`);
  }
}

/** A CRC32C as errors.md §6 writes it: `0x` and 8 lower-case hex digits. */
function hex32(value: number): string {
  return `0x${(value >>> 0).toString(16).padStart(8, "0")}`;
}

/** The chunk's bytes, inline or in the shared-memory region (`PF-42`, `PF-43`). */
function chunkData(state: KvStreamState, chunk: opal.device.v1.IKvChunk): Uint8Array {
  const data = chunk.data ?? new Uint8Array();
  if (!state.region) {
    if (chunk.dataRef) addViolation(state, "PF-42: `data_ref` set on the inline data plane");
    return data;
  }
  const ref = chunk.dataRef;
  if (!ref) {
    addViolation(
      state,
      `PF-42: chunk ${state.chunkCount} has no \`data_ref\` on the shared-memory plane`,
    );
    return data;
  }
  if (data.byteLength)
    addViolation(state, `PF-42: chunk ${state.chunkCount} has both \`data\` and \`data_ref\``);
  const at = Number(ref.offsetBytes ?? 0);
  const expectedAt = state.region.offsetBytes + state.receivedBytes;
  if (at !== expectedAt) {
    addViolation(
      state,
      `PF-43: chunk ${state.chunkCount} has data_ref.offset_bytes ${at}, expected ${expectedAt}`,
    );
  }
  return state.region.read(at, Number(ref.lengthBytes ?? 0));
}

function readChunk(state: KvStreamState, chunk: opal.device.v1.IKvChunk): void {
  state.chunkCount++;
  if (!state.accepted) {
    addViolation(state, "PF-10: a chunk before `accepted`");
    return;
  }
  if (state.pushProgress.length > 0)
    addViolation(state, "PF-10: chunks and push_progress in one stream");
  const data = chunkData(state, chunk);
  const n = state.chunkCount;
  state.receivedBytes += data.byteLength;
  if (data.byteLength < 1 || data.byteLength > state.chunkBytes) {
    addViolation(
      state,
      `PF-14: chunk ${n} has ${data.byteLength} bytes (allowed 1..${state.chunkBytes})`,
    );
  }
  if (crc32cOf(data) >>> 0 !== (chunk.crc32c ?? 0) >>> 0) {
    addViolation(
      state,
      `PF-15: chunk ${n} (layer ${chunk.layer} part ${chunk.part} offset ${chunk.offsetBytes}) CRC32C ${hex32(chunk.crc32c ?? 0)} does not match its bytes (${hex32(crc32cOf(data))})`,
    );
  }
  if (state.descriptor) placeChunk(state, chunk, data);
}

/** Stores a chunk's bytes when it is at the expected position (`PF-13`), and advances. */
function placeChunk(state: KvStreamState, chunk: opal.device.v1.IKvChunk, data: Uint8Array): void {
  const n = state.chunkCount;
  let part: KvPart | undefined;
  try {
    part = partEnum.fromWire(chunk.part, "part");
  } catch {
    part = undefined;
  }
  const expectedPart = state.order[state.partIndex];
  const expected = isComplete(state)
    ? "the end of the cache"
    : `layer ${state.layer} part ${expectedPart} offset ${state.offsetBytes}`;
  if (
    isComplete(state) ||
    chunk.layer !== state.layer ||
    part !== expectedPart ||
    Number(chunk.offsetBytes ?? 0) !== state.offsetBytes
  ) {
    addViolation(
      state,
      `PF-13: chunk ${n} at layer ${chunk.layer} part ${part ?? chunk.part} offset ${chunk.offsetBytes}, expected ${expected}`,
    );
    return;
  }
  const target = state.parts[state.layer]![part as KvPart]!;
  if (state.offsetBytes + data.byteLength > target.byteLength) {
    addViolation(
      state,
      `PF-13: chunk ${n} overruns part ${part} of layer ${state.layer} (${target.byteLength} bytes)`,
    );
    return;
  }
  target.set(data, state.offsetBytes);
  state.offsetBytes += data.byteLength;
  advance(state);
}

function readCompleted(state: KvStreamState, message: PrefillResponse | FetchKvResponse): void {
  if (state.completed) {
    addViolation(state, "PF-10: a second `completed`");
    return;
  }
  if (!state.accepted) addViolation(state, "PF-10: `completed` before `accepted`");
  state.completed = message.completed as KvStreamState["completed"];
  if (state.descriptor && state.pushProgress.length === 0 && !isComplete(state)) {
    addViolation(
      state,
      `PF-28: \`completed\` before the last chunk (next expected: layer ${state.layer} part ${state.order[state.partIndex]} offset ${state.offsetBytes})`,
    );
  }
}
