import { Code, OpalError, Reason } from "@opal/core";
import type { FetchKvRequest } from "@opal/driver";
import { crc32cOf, type KvChunk, type KvDescriptor, partByteLength, partsOf } from "@opal/kv";

/**
 * Where a FetchKv resumes, as a layer, an index into `partsOf(descriptor)` and a byte offset.
 * Absent means the start; the end position (numLayers, no part, offset 0) is valid (RT-13).
 * Anything else outside the cache is OUT_OF_RANGE RESUME_POSITION_INVALID.
 */
export function resumePosition(descriptor: KvDescriptor, from: FetchKvRequest["resumeFrom"]) {
  if (!from) return { layer: 0, partIndex: 0, offsetBytes: 0 };
  const parts = partsOf(descriptor);
  const partIndex = from.part ? parts.indexOf(from.part) : 0;
  const invalid = (why: string) =>
    new OpalError(Code.OUT_OF_RANGE, `resume_from: ${why}`, {
      reason: Reason.RESUME_POSITION_INVALID,
      fieldViolations: [{ field: "resume_from", description: why }],
    });
  // RT-13: the end position (numLayers, no part, offset 0) is valid: nothing is left to send.
  if (from.layer === descriptor.numLayers && !from.part && from.offsetBytes === 0) {
    return { layer: from.layer, partIndex: 0, offsetBytes: 0 };
  }
  if (!Number.isInteger(from.layer) || from.layer < 0 || from.layer >= descriptor.numLayers) {
    throw invalid(`layer ${from.layer} out of range (cache has ${descriptor.numLayers} layers)`);
  }
  if (partIndex < 0) throw invalid(`part ${from.part} is not one of ${parts.join(", ")}`);
  const partBytes = partByteLength(descriptor, parts[partIndex]!);
  if (!from.part && from.offsetBytes !== 0) throw invalid("an offset needs a part");
  if (from.offsetBytes < 0 || from.offsetBytes >= partBytes) {
    throw invalid(
      `offset ${from.offsetBytes} outside part ${parts[partIndex]} of ${partBytes} bytes`,
    );
  }
  return { layer: from.layer, partIndex, offsetBytes: from.offsetBytes };
}

/** `chunk` from byte `from` of its part on (a chunk the resume position cuts). */
export function sliceChunk(chunk: KvChunk, from: number): KvChunk {
  const data = chunk.data.subarray(from - chunk.offsetBytes);
  return { ...chunk, offsetBytes: from, data, crc32c: crc32cOf(data) };
}
