import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillEvent } from "@opal/driver";
import { fromWireChunk, fromWirePrefillEvent, type opal } from "@opal/protocol";
import type { SharedMemoryRegion } from "./shared-memory-regions";

type PrefillResponse = opal.device.v1.PrefillResponse;

/**
 * The events of a prefill whose bytes a device writes into `region` (PF-42, PF-43): each chunk's
 * bytes are read from the region into a buffer of the caller's once its message arrives, so the
 * events look exactly like an inline stream's (CRC and digest checks downstream are unchanged).
 * A chunk without `data_ref`, with inline data, or whose reference is not the next canonical
 * offset or leaves the region is a broken stream (DATA_LOSS STREAM_INCOMPLETE). `onCompleted` is
 * called when the device reports completion: from then on it writes nothing more into the region.
 */
export async function* readRegionChunks(
  messages: AsyncIterable<PrefillResponse>,
  region: SharedMemoryRegion,
  onCompleted: () => void,
): AsyncGenerator<PrefillEvent> {
  let canonicalBytes = 0;
  for await (const message of messages) {
    if (!message.chunk) {
      const event = fromWirePrefillEvent(message);
      if (event.type === "completed") onCompleted();
      yield event;
      continue;
    }
    const ref = message.chunk.dataRef;
    if (!ref) throw broken("a chunk arrived without data_ref on the shared-memory plane (PF-42)");
    if (message.chunk.data?.byteLength) {
      throw broken("a chunk carried both data and data_ref (PF-42)");
    }
    const offsetBytes = Number(ref.offsetBytes ?? 0);
    const lengthBytes = Number(ref.lengthBytes ?? 0);
    if (offsetBytes !== canonicalBytes) {
      throw broken(
        `data_ref.offset_bytes ${offsetBytes} is not the next canonical offset ${canonicalBytes} (PF-43)`,
      );
    }
    if (offsetBytes + lengthBytes > region.lengthBytes) {
      throw broken(
        `data_ref [${offsetBytes}, +${lengthBytes}) leaves the region of ${region.lengthBytes} bytes`,
      );
    }
    canonicalBytes += lengthBytes;
    const chunk = fromWireChunk(message.chunk);
    yield { type: "chunk", chunk: { ...chunk, data: region.read(offsetBytes, lengthBytes) } };
  }
}

function broken(message: string): OpalError {
  return new OpalError(Code.DATA_LOSS, message, { reason: Reason.STREAM_INCOMPLETE });
}
