import { Code, OpalError, Reason } from "@opal/core";
import { peerStatusOf } from "@opal/protocol";

/**
 * The `OpalError` of a failed device call. A CANCELLED status the caller did not ask for means the
 * device or the connection reset the stream (a dropped connection, a forced shutdown): reported as
 * UNAVAILABLE DEVICE_FAULT, which callers retry, rather than as a cancellation nobody asked for.
 * Every other failure is the call's own error (the caller's CANCELLED, the deadline, the device's
 * status with its reason and retry delay).
 */
export function toDeviceError(error: unknown): OpalError {
  const peer = peerStatusOf(error);
  if (peer?.code === Code.CANCELLED) {
    return new OpalError(Code.UNAVAILABLE, `the device reset the call: ${peer.details}`, {
      reason: Reason.DEVICE_FAULT,
      cause: error,
    });
  }
  return OpalError.from(error);
}
