import { Code, OpalError, Reason } from "@opal/core";
import { type PrefillRequest, type PrefillStats, prefillBodyDigest } from "@opal/driver";
import type { MockModel } from "../mock-model";
import type { RetainedKv } from "../retention-store";
import type { MockDeviceState } from "./mock-device-state";

/** A prefill admitted by {@link admitPrefill}. */
export interface PrefillAdmission {
  /** The key its request id is remembered under: `tenant\0requestId`. */
  readonly idKey: string;
  /** The digest of the request as its caller sent it. */
  readonly bodyHash: string;
  /**
   * Set when the same request id, with the same body, completed before and its cache is still
   * retained: the prefill is answered from that cache (`PF-7`).
   */
  readonly replay?: {
    readonly kvHandle: string;
    readonly retained: RetainedKv;
    readonly stats: PrefillStats;
  };
}

/**
 * Admits a validated prefill by its request id: ALREADY_EXISTS `REQUEST_ID_CONFLICT` when the id was
 * used with a different body, a replay of the earlier result when it is still retained, otherwise
 * a new prefill. `bodyDigest` is the caller's digest when the host changed the request.
 */
export function admitPrefill(
  state: MockDeviceState,
  request: PrefillRequest,
  options: { readonly tenant: string; readonly bodyDigest: string | undefined },
): PrefillAdmission {
  const idKey = `${options.tenant}\0${request.requestId}`;
  const bodyHash = options.bodyDigest ?? prefillBodyDigest(request);
  const prior = state.requests.get(idKey);
  if (prior && prior.bodyHash !== bodyHash) {
    throw new OpalError(
      Code.ALREADY_EXISTS,
      `request_id ${JSON.stringify(request.requestId)} was used with a different request`,
      { reason: Reason.REQUEST_ID_CONFLICT },
    );
  }
  const retained = prior?.stats ? tryGetRetained(state, options.tenant, prior.handle) : undefined;
  if (prior?.stats && retained) {
    return { idKey, bodyHash, replay: { kvHandle: prior.handle, retained, stats: prior.stats } };
  }
  return { idKey, bodyHash };
}

/**
 * Throws FAILED_PRECONDITION `MODEL_NOT_LOADED` when the model a prefill was validated against is no
 * longer the one loaded under its id: it was unloaded while the prefill waited for its slot (MD-17).
 */
export function assertModelStillLoaded(
  state: MockDeviceState,
  modelId: string,
  model: MockModel | undefined,
): void {
  if (state.models.get(modelId) !== model) {
    throw new OpalError(
      Code.FAILED_PRECONDITION,
      `model ${JSON.stringify(modelId)} was unloaded while the prefill waited`,
      { reason: Reason.MODEL_NOT_LOADED },
    );
  }
}

function tryGetRetained(state: MockDeviceState, tenant: string, handle: string) {
  try {
    return state.store.get(tenant, handle);
  } catch {
    return undefined;
  }
}
