import { Code, invalidField, OpalError, Reason } from "@opal/core";
import type { DriverCallOptions, FetchEvent, FetchKvRequest } from "@opal/driver";
import { streamRetainedKv } from "../stream-retained-kv";
import { enterMockCall } from "./enter-mock-call";
import type { MockDeviceState } from "./mock-device-state";

/**
 * The mock's `PrefillDriver.fetchKv`: INVALID_ARGUMENT for a handle outside 1-128 characters, then
 * UNIMPLEMENTED `UNSUPPORTED_FEATURE` on a device without retention (RT-11's order), then the
 * retained cache of the caller's tenant (NOT_FOUND when unknown, expired or another tenant's).
 */
export async function* fetchMockKv(
  state: MockDeviceState,
  request: FetchKvRequest,
  call?: DriverCallOptions,
): AsyncGenerator<FetchEvent> {
  const { scope, tenant } = await enterMockCall(state, "FetchKv", call);
  try {
    if (!request.kvHandle || request.kvHandle.length > 128)
      throw invalidField("kv_handle", "expected 1-128 characters");
    if (state.capabilities.retention.maxRetentionSeconds === 0)
      throw new OpalError(Code.UNIMPLEMENTED, "kv_handle: this device retains no caches", {
        reason: Reason.UNSUPPORTED_FEATURE,
        fieldViolations: [{ field: "kv_handle", description: "max_retention_seconds = 0" }],
      });
    const entry = state.store.get(tenant, request.kvHandle);
    yield* streamRetainedKv(entry, {
      request,
      capabilities: state.capabilities,
      signal: scope.signal,
    });
  } finally {
    scope.dispose();
  }
}
