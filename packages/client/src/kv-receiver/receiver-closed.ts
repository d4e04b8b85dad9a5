import { Code, OpalError, Reason } from "@opal/core";

/** CANCELLED: what `received()` rejects with once the receiver is closed. */
export function receiverClosed(): OpalError {
  return new OpalError(Code.CANCELLED, "the KvReceiver was closed", { reason: Reason.CANCELLED });
}
