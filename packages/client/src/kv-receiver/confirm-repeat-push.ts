import { Code, OpalError, Reason } from "@opal/core";
import { type KvDescriptor, toHex } from "@opal/kv";
import type { ReceivedKv } from "./kv-receiver-options";
import type { PushMessages } from "./read-push-header";
import { receivePush } from "./receive-push";

/**
 * A push under the id of a committed transfer (PS-13): accepted only when it carries the same
 * cache, i.e. the same descriptor and, once its chunks and commit verified, the same digest.
 * Anything else fails ABORTED PUSH_REJECTED; a push that is not a complete, verified cache fails
 * as any push would (no chunks: DATA_LOSS STREAM_INCOMPLETE).
 */
export async function confirmRepeatPush(
  earlier: ReceivedKv<unknown>,
  descriptor: KvDescriptor,
  digest: string,
  messages: PushMessages,
): Promise<void> {
  const refused = () =>
    new OpalError(
      Code.ABORTED,
      `transfer ${earlier.transferId} was already committed with another cache`,
      { reason: Reason.PUSH_REJECTED },
    );
  if (JSON.stringify(earlier.descriptor) !== JSON.stringify(descriptor)) throw refused();
  const { outcome } = await receivePush(descriptor, messages, {
    onAccepted: async () => {},
    onLayer: async () => {},
    reuseLayerBuffers: () => true,
  });
  if (toHex(outcome.stats.kvDigest) !== digest) throw refused();
}
