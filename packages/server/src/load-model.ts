import { Code, invalidField, OpalError, Reason } from "@opal/core";
import type { DeviceCapabilities, LoadModelHeader } from "@opal/driver";
import { fromWireLoadModelHeader, type opal, toWireLoadResult } from "@opal/protocol";
import { checkedWeights } from "./checked-weights";
import type { DeviceCallContext } from "./device-call-context";
import type { HandlerContext } from "./handler-context";
import { nextWithin } from "./next-within";

type LoadModelRequest = opal.device.v1.LoadModelRequest;

/** A model id (models.md, MD-5). */
const MODEL_ID = /^[A-Za-z0-9._:/-]{1,128}$/;

/**
 * The LoadModel handler: reads the header (the first message, within `uploadIdleTimeoutMs`),
 * checks it in the order of models.md ("LoadModel checks, in order"), takes an upload slot for
 * uploaded weights (MD-20, given back when the call ends) and loads the model from the device-local
 * reference or the streamed weights, checked against their declared length and digest.
 */
export async function loadModel(
  ctx: HandlerContext,
  requests: AsyncIterable<LoadModelRequest>,
  call: DeviceCallContext,
): Promise<opal.device.v1.LoadModelResponse.$Properties> {
  const messages = requests[Symbol.asyncIterator]();
  const first = await nextWithin(messages, ctx.uploadIdleTimeoutMs);
  const wire = first.done ? undefined : first.value.header;
  if (!wire) throw invalidField("header", "the first LoadModel message must carry the header");
  const header = fromWireLoadModelHeader(wire);
  const byteLength = assertLoadModelHeader(header, ctx.capabilities);
  // MD-20: an upload takes one of the device's upload slots and its declared bytes.
  if (!header.deviceLocalRef) call.onDispose(ctx.uploads.admit(byteLength));
  const weights = header.deviceLocalRef
    ? {}
    : {
        weights: checkedWeights(
          messages,
          byteLength,
          header.weightsSha256,
          ctx.uploadIdleTimeoutMs,
        ),
      };
  const result = await ctx.driver.loadModel(
    { ...header, ...weights },
    { signal: call.signal, tenant: call.tenant },
  );
  return toWireLoadResult(result);
}

/**
 * Checks a LoadModel header in the order of models.md: model_id, config, one weight source (MD-5),
 * uploads supported and within max_model_bytes (MD-6); returns the declared weight bytes.
 */
function assertLoadModelHeader(header: LoadModelHeader, capabilities: DeviceCapabilities): number {
  if (!header.modelId) throw invalidField("header.model_id", "required, got an empty string");
  if (!MODEL_ID.test(header.modelId))
    throw invalidField(
      "header.model_id",
      `expected 1-128 characters of [A-Za-z0-9._:/-], got ${JSON.stringify(header.modelId)}`,
    );
  if (!header.configJson) throw invalidField("header.config_json", "required, got an empty string");
  const byteLength = header.weightsByteLength ?? 0;
  if (header.deviceLocalRef ? byteLength !== 0 : byteLength < 1)
    throw invalidField(
      "header.weights_byte_length",
      header.deviceLocalRef
        ? `expected 0 with device_local_ref, got ${byteLength}`
        : "expected >= 1 with uploaded weights (or a device_local_ref), got 0",
    );
  const maxModelBytes = capabilities.maxModelBytes;
  if (!header.deviceLocalRef && maxModelBytes === 0) {
    throw new OpalError(Code.UNIMPLEMENTED, "this device accepts no model uploads", {
      reason: Reason.UNSUPPORTED_FEATURE,
      fieldViolations: [
        {
          field: "header.weights_byte_length",
          description: "uploads unsupported (capabilities.max_model_bytes = 0)",
        },
      ],
    });
  }
  if (!header.deviceLocalRef && byteLength > maxModelBytes) {
    throw new OpalError(
      Code.RESOURCE_EXHAUSTED,
      `weights of ${byteLength} bytes exceed the device limit of ${maxModelBytes} bytes`,
      { reason: Reason.MESSAGE_TOO_LARGE },
    );
  }
  return byteLength;
}
