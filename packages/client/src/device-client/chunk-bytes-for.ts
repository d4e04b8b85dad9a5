import type { DriverCallOptions } from "@opal/driver";
import { capabilitiesOnce } from "./capabilities-once";
import type { DeviceClientState } from "./device-client-state";

/** Room for a chunk message's fields besides its data, in bytes. */
const MESSAGE_OVERHEAD = 64 * 1024;
/**
 * Largest chunk asked for on behalf of a caller that copies chunks (`keepsChunks: false`: file,
 * vLLM and SGLang sinks). Whole-part chunks save such a caller nothing, and each received message
 * is garbage once copied: smaller ones are collected sooner. Measured, 4 GiB into a file sink:
 * about 215 MiB peak RSS with 2 MiB chunks against about 250 MiB with 4 MiB, at the same speed.
 */
const COPYING_CHUNK_BYTES = 2 * 1024 * 1024;

/** `maxChunkBytes` for a request that leaves it unset (see `DeviceClientOptions.chunkBytes`). */
export async function chunkBytesFor(
  state: DeviceClientState,
  requested: number | undefined,
  call: DriverCallOptions = {},
): Promise<number> {
  if (requested || state.options.chunkBytes === "device") return requested ?? 0;
  const largest = (await capabilitiesOnce(state, call)).maxChunkBytes ?? 0;
  const cap = call.keepsChunks === false ? COPYING_CHUNK_BYTES : Number.POSITIVE_INFINITY;
  return Math.max(0, Math.min(largest, cap, state.maxMessageBytes - MESSAGE_OVERHEAD));
}
