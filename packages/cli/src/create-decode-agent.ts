import { createKvReceiver, type KvSink } from "@opal/client";
import { Code, OpalError, Reason } from "@opal/core";
import { type KvDescriptor, toFloat32 } from "@opal/kv";
import {
  fromKvLayers,
  type ReferenceKvCache,
  type ReferenceModel,
  sampleGreedy,
} from "@opal/reference";

/** A cache the agent received, ready to decode from. */
export interface ReceivedCache {
  readonly cache: ReferenceKvCache;
  readonly descriptor: KvDescriptor;
  readonly firstTokenId: number;
  /** Bytes received and the time from the first to the last layer, in seconds. */
  readonly kvBytes: number;
  readonly receiveSeconds: number;
  /** From the transfer's start to its first verified layer, in milliseconds. */
  readonly timeToFirstLayerMs: number;
}

/** A decode agent: a KvReceiver in front of the reference decoder. */
export interface DecodeAgent {
  /** What a prefill's `pushTarget.address` names. */
  readonly address: string;
  /** Waits for the cache of `transferId` to be committed. */
  received(transferId: string, options?: { timeoutMs?: number }): Promise<ReceivedCache>;
  /** Greedy continuation from a received cache: the first token, then `maxNewTokens - 1` more. */
  generate(received: ReceivedCache, maxNewTokens: number): number[];
  close(): Promise<void>;
}

/**
 * Starts a decode agent for `model`: devices push caches into it, each layer is converted to f32
 * as it arrives (so decoding could start on layer 0 while later layers stream), and a cache is
 * usable only once the receiver verified and committed it. A cache of another model (its
 * fingerprint differs) is refused at the handshake with FAILED_PRECONDITION DESCRIPTOR_MISMATCH.
 */
export async function createDecodeAgent(
  model: ReferenceModel,
  options: {
    readonly onLayer?: (layer: number, numLayers: number, elapsedMs: number) => void;
  } = {},
): Promise<DecodeAgent> {
  const receiver = await createKvReceiver<ReceivedCache>({
    createSink: () => {
      const keys: Float32Array[] = [];
      const values: Float32Array[] = [];
      let descriptor: KvDescriptor | undefined;
      let openedAt = 0;
      let firstLayerAt = 0;
      let lastLayerAt = 0;
      let bytes = 0;
      const sink: KvSink<ReceivedCache> = {
        open(d) {
          if (
            d.modelFingerprint !== model.fingerprint ||
            d.tokenStart !== 0 ||
            d.layout !== "nhd"
          ) {
            throw new OpalError(
              Code.FAILED_PRECONDITION,
              `the agent decodes model ${model.fingerprint.slice(0, 12)}… from token 0 in nhd, got ${d.modelFingerprint.slice(0, 12)}… from token ${d.tokenStart} in ${d.layout}`,
              { reason: Reason.DESCRIPTOR_MISMATCH },
            );
          }
          descriptor = d;
          openedAt = performance.now();
        },
        writeLayer(layer) {
          keys[layer.layer] = toFloat32(layer.parts.k!, descriptor!.dtype);
          values[layer.layer] = toFloat32(layer.parts.v!, descriptor!.dtype);
          bytes += layer.parts.k!.byteLength + layer.parts.v!.byteLength;
          lastLayerAt = performance.now();
          firstLayerAt ||= lastLayerAt;
          options.onLayer?.(layer.layer, descriptor!.numLayers, lastLayerAt - openedAt);
        },
        commit(stats) {
          return {
            cache: fromKvLayers(model.config, keys, values, descriptor!.tokenCount),
            descriptor: descriptor!,
            firstTokenId: stats.firstTokenId,
            kvBytes: bytes,
            receiveSeconds: Math.max((lastLayerAt - openedAt) / 1000, 1e-9),
            timeToFirstLayerMs: firstLayerAt - openedAt,
          };
        },
        abort() {
          keys.length = 0;
          values.length = 0;
        },
      };
      return sink;
    },
  });
  return {
    address: receiver.address,
    async received(transferId, wait = {}) {
      return (await receiver.received(transferId, wait)).receipt;
    },
    generate(received, maxNewTokens) {
      const tokens = [received.firstTokenId];
      while (tokens.length < maxNewTokens)
        tokens.push(sampleGreedy(model.decodeStep(tokens.at(-1)!, received.cache)));
      return tokens;
    },
    close: () => receiver.close(),
  };
}
