import { createHash } from "node:crypto";
import { Code, invalidField, OpalError, Reason } from "@opal/core";
import type { opal } from "@opal/protocol";
import { nextWithin } from "./next-within";

type LoadModelRequest = opal.device.v1.LoadModelRequest;

/**
 * The weight bytes of a LoadModel stream after its header, checked as they pass: every message
 * well formed and a `weights_chunk`, no more bytes than `byteLength`, and at the end exactly
 * `byteLength` bytes whose SHA-256 is `sha256` (when given). Throws INVALID_ARGUMENT
 * (MODEL_WEIGHTS_INVALID, or INVALID_FIELD for a second header) at the first violation, so the
 * driver never commits weights that do not match their header. A message that does not come within
 * `idleTimeoutMs` fails DEADLINE_EXCEEDED (`nextWithin`).
 */
export async function* checkedWeights(
  messages: AsyncIterator<LoadModelRequest>,
  byteLength: number,
  sha256: string | undefined,
  idleTimeoutMs: number,
): AsyncIterable<Uint8Array> {
  const hash = sha256 ? createHash("sha256") : undefined;
  let received = 0;
  for (;;) {
    const next = await nextWithin(messages, idleTimeoutMs);
    if (next.done) break;
    const chunk = next.value.weightsChunk;
    if (!chunk)
      throw invalidField("weights_chunk", "only the first LoadModel message may carry a header");
    received += chunk.byteLength;
    if (received > byteLength) {
      throw weightsInvalid(`more than the declared ${byteLength} weight bytes arrived`);
    }
    hash?.update(chunk);
    yield chunk;
  }
  if (received !== byteLength) {
    throw weightsInvalid(`${received} weight bytes arrived, header declared ${byteLength}`);
  }
  const digest = hash?.digest("hex");
  if (sha256 && digest !== sha256.toLowerCase()) {
    throw weightsInvalid(
      `weights sha256 ${digest} does not match the declared ${sha256}`,
      "header.weights_sha256",
    );
  }
}

function weightsInvalid(message: string, field = "weights_chunk"): OpalError {
  return new OpalError(Code.INVALID_ARGUMENT, message, {
    reason: Reason.MODEL_WEIGHTS_INVALID,
    fieldViolations: [{ field, description: message }],
  });
}
