import { Code, OpalError, Reason } from "@opal/core";
import type {
  FetchEvent,
  FetchKvRequest,
  PrefillEvent,
  PrefillRequest,
  PrefillStats,
} from "@opal/driver";
import { opal } from "./gen/pb.js";
import {
  fromWireChunk,
  fromWireDescriptor,
  fromWirePosition,
  toWireChunk,
  toWireDescriptor,
  toWirePosition,
} from "./kv-wire";
import { dtypeEnum, layoutEnum, scaleSchemeEnum } from "./wire-enums";

const v1 = opal.device.v1;
type P<T extends keyof typeof opal.device.v1> = (typeof opal.device.v1)[T] extends {
  prototype: infer I;
}
  ? { [K in keyof I]?: I[K] | null }
  : never;

/** A prefill request as its wire message. */
export function toWirePrefillRequest(r: PrefillRequest): opal.device.v1.PrefillRequest.$Properties {
  const f = r.kvFormat;
  return {
    requestId: r.requestId,
    modelId: r.modelId,
    promptTokenIds: Array.from(r.promptTokenIds),
    kvFormat: {
      dtype: dtypeEnum.toWire(f.dtype),
      scaleScheme: scaleSchemeEnum.toWire(f.scaleScheme),
      layout: layoutEnum.toWire(f.layout),
      blockSizeTokens: f.blockSizeTokens,
      ...(f.headRange ? { headRange: { ...f.headRange } } : {}),
    },
    cacheSalt: r.cacheSalt ?? "",
    ...(r.decoderPrefix
      ? {
          decoderPrefix: {
            numTokens: r.decoderPrefix.numTokens ?? 0,
            blockHashes: [...(r.decoderPrefix.blockHashes ?? [])],
          },
        }
      : {}),
    retentionSeconds: r.retentionSeconds ?? 0,
    ...(r.pushTarget
      ? {
          pushTarget: {
            address: r.pushTarget.address,
            authorizationToken: r.pushTarget.authorizationToken ?? "",
            transferId: r.pushTarget.transferId,
            useTls: r.pushTarget.useTls ?? false,
          },
        }
      : {}),
    ...(r.sampling
      ? {
          sampling:
            r.sampling.mode === "greedy"
              ? { mode: v1.SamplingMode.SAMPLING_MODE_GREEDY }
              : {
                  mode: v1.SamplingMode.SAMPLING_MODE_SEEDED,
                  seed: r.sampling.seed,
                  temperature: r.sampling.temperature,
                  topK: r.sampling.topK ?? 0,
                },
        }
      : {}),
    maxChunkBytes: r.maxChunkBytes ?? 0,
  };
}

/**
 * A wire prefill request as a domain request, decoded without judging it: a missing `kv_format`
 * stays absent, and an UNSPECIFIED or unknown enum (dtype, layout, scale scheme, sampling mode)
 * decodes to "" or a `Name(n)` string outside its type. `validatePrefillRequest` (`@opal/driver`)
 * then reports each of them at its place in the `PF-1` order (`GEN-3`): INVALID_FIELD for
 * UNSPECIFIED and unknown sampling modes, the field's own reason (`UNSUPPORTED_DTYPE`, ...) for
 * unknown values. `data_plane` is not part of the domain request: whoever serves the call carries
 * the bytes (the server host for shared memory) and reads it from the wire message.
 */
export function fromWirePrefillRequest(w: P<"PrefillRequest">): PrefillRequest {
  const f = w.kvFormat;
  let sampling: PrefillRequest["sampling"];
  if (w.sampling) {
    const mode = w.sampling.mode ?? 0;
    if (mode === v1.SamplingMode.SAMPLING_MODE_GREEDY) sampling = { mode: "greedy" };
    else if (mode === v1.SamplingMode.SAMPLING_MODE_SEEDED) {
      sampling = {
        mode: "seeded",
        seed: Number(w.sampling.seed ?? 0),
        temperature: w.sampling.temperature ?? 0,
        topK: w.sampling.topK ?? 0,
      };
    } else {
      sampling = { mode: (mode ? `SamplingMode(${mode})` : "") as "greedy" };
    }
  }
  const prefix = w.decoderPrefix;
  return {
    requestId: w.requestId ?? "",
    modelId: w.modelId ?? "",
    promptTokenIds: Uint32Array.from(w.promptTokenIds ?? []),
    kvFormat: (f
      ? {
          dtype: dtypeEnum.decode(f.dtype),
          scaleScheme: scaleSchemeEnum.decode(f.scaleScheme),
          layout: layoutEnum.decode(f.layout),
          blockSizeTokens: f.blockSizeTokens ?? 0,
          ...(f.headRange
            ? { headRange: { start: f.headRange.start ?? 0, count: f.headRange.count ?? 0 } }
            : {}),
        }
      : undefined) as PrefillRequest["kvFormat"],
    ...(w.cacheSalt ? { cacheSalt: w.cacheSalt } : {}),
    ...(prefix && ((prefix.numTokens ?? 0) > 0 || (prefix.blockHashes?.length ?? 0) > 0)
      ? {
          decoderPrefix: {
            ...(prefix.numTokens ? { numTokens: prefix.numTokens } : {}),
            ...(prefix.blockHashes?.length ? { blockHashes: [...prefix.blockHashes] } : {}),
          },
        }
      : {}),
    retentionSeconds: w.retentionSeconds ?? 0,
    ...(w.pushTarget
      ? {
          pushTarget: {
            address: w.pushTarget.address ?? "",
            transferId: w.pushTarget.transferId ?? "",
            useTls: w.pushTarget.useTls ?? false,
            ...(w.pushTarget.authorizationToken
              ? { authorizationToken: w.pushTarget.authorizationToken }
              : {}),
          },
        }
      : {}),
    ...(sampling ? { sampling } : {}),
    maxChunkBytes: w.maxChunkBytes ?? 0,
  };
}

/** A prefill event as a `PrefillResponse` message. */
export function toWirePrefillEvent(e: PrefillEvent): opal.device.v1.PrefillResponse.$Properties {
  switch (e.type) {
    case "accepted":
      return {
        accepted: {
          kvHandle: e.kvHandle,
          descriptor: toWireDescriptor(e.descriptor),
          leaseExpiryUnixMs: e.leaseExpiryUnixMs,
          queueTimeUs: e.queueTimeUs,
        },
      };
    case "chunk":
      return { chunk: toWireChunk(e.chunk) };
    case "push_progress":
      return { pushProgress: { bytesPushed: e.bytesPushed, layersPushed: e.layersPushed } };
    case "completed":
      return {
        completed: {
          ...e.stats,
          ...(e.stats.pushReceipt ? { pushReceipt: { ...e.stats.pushReceipt } } : {}),
        },
      };
  }
}

/** A `PrefillResponse` message as a prefill event; a message with no event set is a protocol error. */
export function fromWirePrefillEvent(w: P<"PrefillResponse">): PrefillEvent {
  if (w.chunk) return { type: "chunk", chunk: fromWireChunk(w.chunk) };
  if (w.accepted) {
    if (!w.accepted.descriptor) throw protocolError("accepted.descriptor is missing");
    return {
      type: "accepted",
      kvHandle: w.accepted.kvHandle ?? "",
      descriptor: fromWireDescriptor(w.accepted.descriptor, "accepted.descriptor"),
      leaseExpiryUnixMs: Number(w.accepted.leaseExpiryUnixMs ?? 0),
      queueTimeUs: Number(w.accepted.queueTimeUs ?? 0),
    };
  }
  if (w.pushProgress) {
    return {
      type: "push_progress",
      bytesPushed: Number(w.pushProgress.bytesPushed ?? 0),
      layersPushed: w.pushProgress.layersPushed ?? 0,
    };
  }
  if (w.completed) return { type: "completed", stats: fromWireStats(w.completed) };
  throw protocolError("a PrefillResponse carried no event");
}

function toWireStats(stats: PrefillStats): opal.device.v1.PrefillCompleted.$Properties {
  return { ...stats, ...(stats.pushReceipt ? { pushReceipt: { ...stats.pushReceipt } } : {}) };
}

function fromWireStats(c: opal.device.v1.PrefillCompleted.$Properties): PrefillStats {
  return {
    promptTokens: c.promptTokens ?? 0,
    prefixCacheHitTokens: c.prefixCacheHitTokens ?? 0,
    decoderPrefixTokens: c.decoderPrefixTokens ?? 0,
    firstTokenId: c.firstTokenId ?? 0,
    firstTokenLogprob: c.firstTokenLogprob ?? 0,
    kvTotalBytes: Number(c.kvTotalBytes ?? 0),
    kvDigest: c.kvDigest ?? new Uint8Array(),
    deviceTimeUs: Number(c.deviceTimeUs ?? 0),
    queueTimeUs: Number(c.queueTimeUs ?? 0),
    energyJoules: c.energyJoules ?? 0,
    leaseExpiryUnixMs: Number(c.leaseExpiryUnixMs ?? 0),
    timeToFirstChunkUs: Number(c.timeToFirstChunkUs ?? 0),
    ...(c.pushReceipt
      ? {
          pushReceipt: {
            committed: c.pushReceipt.committed ?? false,
            cacheId: c.pushReceipt.cacheId ?? "",
          },
        }
      : {}),
  };
}

/** A fetch request as its wire message. */
export function toWireFetchRequest(r: FetchKvRequest): opal.device.v1.FetchKvRequest.$Properties {
  return {
    kvHandle: r.kvHandle,
    ...(r.resumeFrom ? { resumeFrom: toWirePosition(r.resumeFrom) } : {}),
    maxChunkBytes: r.maxChunkBytes ?? 0,
  };
}

/** A wire fetch request as a domain request. */
export function fromWireFetchRequest(w: P<"FetchKvRequest">): FetchKvRequest {
  return {
    kvHandle: w.kvHandle ?? "",
    ...(w.resumeFrom ? { resumeFrom: fromWirePosition(w.resumeFrom) } : {}),
    maxChunkBytes: w.maxChunkBytes ?? 0,
  };
}

/** A fetch event as a `FetchKvResponse` message. */
export function toWireFetchEvent(e: FetchEvent): opal.device.v1.FetchKvResponse.$Properties {
  switch (e.type) {
    case "accepted":
      return {
        accepted: {
          descriptor: toWireDescriptor(e.descriptor),
          leaseExpiryUnixMs: e.leaseExpiryUnixMs,
        },
      };
    case "chunk":
      return { chunk: toWireChunk(e.chunk) };
    case "completed":
      return {
        completed: {
          kvTotalBytes: e.kvTotalBytes,
          kvDigest: e.kvDigest,
          ...(e.prefill ? { prefill: toWireStats(e.prefill) } : {}),
        },
      };
  }
}

/** A `FetchKvResponse` message as a fetch event. */
export function fromWireFetchEvent(w: P<"FetchKvResponse">): FetchEvent {
  if (w.chunk) return { type: "chunk", chunk: fromWireChunk(w.chunk) };
  if (w.accepted) {
    if (!w.accepted.descriptor) throw protocolError("accepted.descriptor is missing");
    return {
      type: "accepted",
      descriptor: fromWireDescriptor(w.accepted.descriptor, "accepted.descriptor"),
      leaseExpiryUnixMs: Number(w.accepted.leaseExpiryUnixMs ?? 0),
    };
  }
  if (w.completed) {
    return {
      type: "completed",
      kvTotalBytes: Number(w.completed.kvTotalBytes ?? 0),
      kvDigest: w.completed.kvDigest ?? new Uint8Array(),
      ...(w.completed.prefill ? { prefill: fromWireStats(w.completed.prefill) } : {}),
    };
  }
  throw protocolError("a FetchKvResponse carried no event");
}

function protocolError(message: string): OpalError {
  return new OpalError(Code.INTERNAL, `protocol violation: ${message}`, {
    reason: Reason.STREAM_INCOMPLETE,
  });
}
