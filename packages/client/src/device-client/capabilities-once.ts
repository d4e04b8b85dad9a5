import { untilAborted } from "@opal/core";
import type { DriverCallOptions } from "@opal/driver";
import type { opal } from "@opal/protocol";
import { deviceCall } from "./device-call";
import type { DeviceClientState } from "./device-client-state";

/**
 * The device's capabilities, read once per client: one read shared by concurrent calls, so it
 * carries no caller's signal; each caller waits for it under its own signal. A failure fails the
 * call (and is read again next time) rather than falling back to a default: a retry with the
 * same `request_id` must carry the same body.
 */
export function capabilitiesOnce(
  state: DeviceClientState,
  call: DriverCallOptions,
): Promise<opal.device.v1.Capabilities.$Properties> {
  state.capabilitiesRead ??= deviceCall(state, (o) => state.rpc.getCapabilities({}, o)).then(
    (r) => r.capabilities ?? {},
    (error: unknown) => {
      state.capabilitiesRead = undefined;
      throw error;
    },
  );
  return untilAborted(state.capabilitiesRead, call.signal);
}
