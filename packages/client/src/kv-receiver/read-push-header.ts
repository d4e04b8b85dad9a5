import { Code, OpalError, Reason } from "@opal/core";
import type { KvDescriptor } from "@opal/kv";
import { fromWireDescriptor, type opal } from "@opal/protocol";

// The first step of one PushKv call after admission (docs/protocol/push.md PS-6).

type PushMessage = InstanceType<typeof opal.device.v1.PushKvRequest>;
/** A push call's messages (with its idle timeout). */
export type PushMessages = { next(): Promise<IteratorResult<PushMessage>> };

/** A push's header as checked: its transfer id (non-empty), request id and descriptor. */
export interface PushHeader {
  readonly transferId: string;
  /** The device's request id; "" when it sent none. */
  readonly requestId: string;
  readonly descriptor: KvDescriptor;
}

/** The first message: a header with a transfer id and a valid descriptor (PS-6 step 2). */
export async function readPushHeader(messages: PushMessages): Promise<PushHeader> {
  const first = await messages.next();
  const header = first.done ? undefined : first.value.header;
  if (!header?.transferId || !header.descriptor) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      "the first PushKv message must be a header with transfer_id and descriptor",
      {
        reason: Reason.INVALID_FIELD,
        fieldViolations: [{ field: "header", description: "required as the first message" }],
      },
    );
  }
  return {
    transferId: header.transferId,
    requestId: header.requestId ?? "",
    descriptor: fromWireDescriptor(header.descriptor, "header.descriptor"),
  };
}
