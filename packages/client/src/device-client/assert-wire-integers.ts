import { invalidField } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";

/** The range of each protobuf integer type a `PrefillRequest` carries as a JS number. */
const RANGES = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
  // A uint64 held in a number: exact up to 2^53 - 1.
  uint64: [0, Number.MAX_SAFE_INTEGER],
} as const;

type IntegerType = keyof typeof RANGES;

/**
 * Throws INVALID_ARGUMENT INVALID_FIELD, naming the field (as the `.proto` spells it) with what was
 * expected and what arrived, when an integer field of `request` is not a whole number inside its
 * protobuf type's range: `priority` (int32), `retention_seconds`, `max_chunk_bytes`,
 * `decoder_prefix.num_tokens`, `sampling.top_k` (uint32) and `sampling.seed` (uint64, up to
 * 2^53 - 1). protobufjs would otherwise send such a value wrapped or truncated (2^31 as -2^31,
 * 1.5 as 1), a different request from the one asked for. Absent fields pass.
 */
export function assertWireIntegers(request: PrefillRequest): void {
  check("priority", request.priority, "int32");
  check("retention_seconds", request.retentionSeconds, "uint32");
  check("max_chunk_bytes", request.maxChunkBytes, "uint32");
  check("decoder_prefix.num_tokens", request.decoderPrefix?.numTokens, "uint32");
  if (request.sampling?.mode === "seeded") {
    check("sampling.top_k", request.sampling.topK, "uint32");
    check("sampling.seed", request.sampling.seed, "uint64");
  }
}

function check(field: string, value: number | undefined, type: IntegerType): void {
  if (value === undefined) return;
  const [min, max] = RANGES[type];
  if (Number.isInteger(value) && value >= min && value <= max) return;
  throw invalidField(field, `expected a whole number in ${min}..${max} (${type}), got ${value}`);
}
