import { Code, OpalError } from "@opal/core";
import { describe, expect, it } from "vitest";
import type { DeviceCapabilities, ModelInfo, PrefillRequest } from "./gen/messages";
import { MIN_CHUNK_BYTES } from "./negotiate-chunk-bytes";
import { validatePrefillRequest } from "./validate-prefill-request";

const capabilities: DeviceCapabilities = {
  dtypes: ["bf16", "f32", "fp8_e4m3fn"],
  layouts: ["nhd", "hnd"],
  scaleSchemes: ["per_tensor"],
  blockSizesTokens: [16, 32],
  maxPromptTokens: 8,
  maxConcurrentPrefills: 1,
  maxQueuedPrefills: 1,
  preferredChunkBytes: 1024,
  maxChunkBytes: 4096,
  maxMessageBytes: 8192,
  retention: { maxRetentionSeconds: 60, maxRetainedBytes: 1 << 20 },
  features: {
    resume: true,
    push: false,
    prefixCache: false,
    decoderPrefix: true,
    seededSampling: false,
    compressionCodecs: [],
  },
  numerics: {
    deviceKind: "reference",
    precisionPath: "f32",
    bitExact: true,
    maxAbsError: 0,
    maxRelError: 0,
  },
  dataPlanes: ["inline"],
  maxModelBytes: 0,
  transports: [],
};

const model: ModelInfo = {
  modelId: "m",
  fingerprint: "ab",
  architecture: "LlamaForCausalLM",
  numLayers: 2,
  attention: { kind: "mha", numKvHeads: 4, headDim: 8 },
  vocabSize: 10,
  maxPositionEmbeddings: 64,
};

const request: PrefillRequest = {
  requestId: "r-1",
  modelId: "m",
  promptTokenIds: Uint32Array.of(1, 2, 3),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
};

function failure(patch: Partial<PrefillRequest>, loaded: ModelInfo | null = model): OpalError {
  try {
    validatePrefillRequest({ ...request, ...patch }, { capabilities, model: loaded ?? undefined });
  } catch (error) {
    return error as OpalError;
  }
  throw new Error("expected validation to fail");
}

const format = request.kvFormat;

describe("validatePrefillRequest", () => {
  it("checks decoder_prefix block hashes at decoder_prefix's PF-1 place, before retention", () => {
    const error = failure({
      decoderPrefix: { blockHashes: [new Uint8Array(31)] },
      retentionSeconds: 3600,
    });
    expect(error.reason).toBe("INVALID_FIELD");
    expect(error.fieldViolations.map((v) => v.field)).toEqual(["decoder_prefix.block_hashes[0]"]);
  });

  it("resolves defaults for a valid request", () => {
    const valid = validatePrefillRequest(request, { capabilities, model });
    expect(valid.request).toBe(request);
    expect(valid).toEqual({
      request,
      chunkBytes: 1024,
      headRange: { start: 0, count: 4 },
      decoderPrefixTokens: 0,
      retentionSeconds: 0,
    });
  });

  it.each([
    [{ requestId: "" }, Code.INVALID_ARGUMENT, "INVALID_FIELD", "request_id"],
    [{ requestId: "has space" }, Code.INVALID_ARGUMENT, "INVALID_FIELD", "request_id"],
    [
      { promptTokenIds: new Uint32Array() },
      Code.INVALID_ARGUMENT,
      "PROMPT_EMPTY",
      "prompt_token_ids",
    ],
    [
      { promptTokenIds: new Uint32Array(9) },
      Code.INVALID_ARGUMENT,
      "PROMPT_TOO_LONG",
      "prompt_token_ids",
    ],
    [
      { promptTokenIds: Uint32Array.of(1, 10) },
      Code.INVALID_ARGUMENT,
      "TOKEN_OUT_OF_RANGE",
      "prompt_token_ids[1]",
    ],
    [
      { kvFormat: { ...format, dtype: "f16" } },
      Code.INVALID_ARGUMENT,
      "UNSUPPORTED_DTYPE",
      "kv_format.dtype",
    ],
    // GEN-3: UNSPECIFIED enums (decoded as "" by fromWirePrefillRequest) are INVALID_FIELD, an
    // unknown number the field's own reason; an unknown sampling mode is INVALID_FIELD.
    [
      { kvFormat: { ...format, dtype: "" as "f32" } },
      Code.INVALID_ARGUMENT,
      "INVALID_FIELD",
      "kv_format.dtype",
    ],
    [
      { kvFormat: { ...format, dtype: "KvDtype(99)" as "f32" } },
      Code.INVALID_ARGUMENT,
      "UNSUPPORTED_DTYPE",
      "kv_format.dtype",
    ],
    [
      { kvFormat: { ...format, layout: "" as "nhd" } },
      Code.INVALID_ARGUMENT,
      "INVALID_FIELD",
      "kv_format.layout",
    ],
    [
      { kvFormat: { ...format, scaleScheme: "" as "none" } },
      Code.INVALID_ARGUMENT,
      "INVALID_FIELD",
      "kv_format.scale_scheme",
    ],
    [
      { sampling: { mode: "" as "greedy" } },
      Code.INVALID_ARGUMENT,
      "INVALID_FIELD",
      "sampling.mode",
    ],
    [
      { sampling: { mode: "SamplingMode(7)" as "greedy" } },
      Code.INVALID_ARGUMENT,
      "INVALID_FIELD",
      "sampling.mode",
    ],
    [
      { kvFormat: { ...format, scaleScheme: "per_token" } },
      Code.INVALID_ARGUMENT,
      "UNSUPPORTED_SCALE_SCHEME",
      "kv_format.scale_scheme",
    ],
    [
      { kvFormat: { ...format, blockSizeTokens: 7 } },
      Code.INVALID_ARGUMENT,
      "UNSUPPORTED_BLOCK_SIZE",
      "kv_format.block_size_tokens",
    ],
    [
      { kvFormat: { ...format, headRange: { start: 2, count: 3 } } },
      Code.INVALID_ARGUMENT,
      "HEAD_RANGE_INVALID",
      "kv_format.head_range",
    ],
    [{ maxChunkBytes: 5000 }, Code.INVALID_ARGUMENT, "INVALID_FIELD", "max_chunk_bytes"],
    // Below MIN_CHUNK_BYTES (issue #18 item 1: 2-byte chunks were accepted).
    [{ maxChunkBytes: 2 }, Code.INVALID_ARGUMENT, "INVALID_FIELD", "max_chunk_bytes"],
    [{ maxChunkBytes: 255 }, Code.INVALID_ARGUMENT, "INVALID_FIELD", "max_chunk_bytes"],
    // Numbers an in-process caller can pass but the wire's unsigned integers cannot carry.
    [{ maxChunkBytes: 100.5 }, Code.INVALID_ARGUMENT, "INVALID_FIELD", "max_chunk_bytes"],
    [{ maxChunkBytes: Number.NaN }, Code.INVALID_ARGUMENT, "INVALID_FIELD", "max_chunk_bytes"],
    [
      { kvFormat: { ...format, headRange: { start: 0.5, count: 1 } } },
      Code.INVALID_ARGUMENT,
      "HEAD_RANGE_INVALID",
      "kv_format.head_range",
    ],
    [
      { decoderPrefix: { numTokens: -1 } },
      Code.INVALID_ARGUMENT,
      "INVALID_FIELD",
      "decoder_prefix.num_tokens",
    ],
    [
      { decoderPrefix: { numTokens: 1.5 } },
      Code.INVALID_ARGUMENT,
      "INVALID_FIELD",
      "decoder_prefix.num_tokens",
    ],
    [{ retentionSeconds: -1 }, Code.INVALID_ARGUMENT, "INVALID_FIELD", "retention_seconds"],
    [{ retentionSeconds: 1.5 }, Code.INVALID_ARGUMENT, "INVALID_FIELD", "retention_seconds"],
    [{ retentionSeconds: Number.NaN }, Code.INVALID_ARGUMENT, "INVALID_FIELD", "retention_seconds"],
    [
      { decoderPrefix: { numTokens: 3 } },
      Code.INVALID_ARGUMENT,
      "INVALID_FIELD",
      "decoder_prefix.num_tokens",
    ],
    [
      { pushTarget: { address: "x:1", transferId: "t" } },
      Code.UNIMPLEMENTED,
      "UNSUPPORTED_FEATURE",
      "push_target",
    ],
    [
      { sampling: { mode: "seeded", seed: 1, temperature: 1 } },
      Code.UNIMPLEMENTED,
      "UNSUPPORTED_FEATURE",
      "sampling",
    ],
  ] as const)("rejects %o with its code, reason and field", (patch, code, reason, field) => {
    const error = failure(patch as Partial<PrefillRequest>);
    expect(error).toBeInstanceOf(OpalError);
    expect([error.code, error.reason, error.fieldViolations[0]?.field]).toEqual([
      code,
      reason,
      field,
    ]);
  });

  it("accepts chunks from MIN_CHUNK_BYTES, or from a smaller device maximum, up to the maximum", () => {
    const chunkBytes = (maxChunkBytes: number, caps = capabilities) =>
      validatePrefillRequest({ ...request, maxChunkBytes }, { capabilities: caps, model })
        .chunkBytes;
    expect(chunkBytes(MIN_CHUNK_BYTES)).toBe(256);
    expect(chunkBytes(4096)).toBe(4096);
    const small = { ...capabilities, preferredChunkBytes: 64, maxChunkBytes: 128 };
    expect(chunkBytes(128, small)).toBe(128);
    expect(() => chunkBytes(127, small)).toThrow(
      "expected 0 (the device's preferred size) or 128..128, got 127",
    );
  });

  it("says which model is missing", () => {
    const error = failure({}, null);
    expect(error.code).toBe(Code.FAILED_PRECONDITION);
    expect(error.reason).toBe("MODEL_NOT_LOADED");
    expect(error.resource?.resourceName).toBe("m");
  });

  it("rejects retention on a device without it as an unsupported feature", () => {
    const none = { ...capabilities, retention: { maxRetentionSeconds: 0, maxRetainedBytes: 0 } };
    try {
      validatePrefillRequest({ ...request, retentionSeconds: 5 }, { capabilities: none, model });
      expect.unreachable();
    } catch (error) {
      expect([(error as OpalError).code, (error as OpalError).reason]).toEqual([
        Code.UNIMPLEMENTED,
        "UNSUPPORTED_FEATURE",
      ]);
    }
  });

  it("rejects retention beyond the device limit", () => {
    const error = failure({ retentionSeconds: 61 });
    expect([error.code, error.reason]).toEqual([
      Code.RESOURCE_EXHAUSTED,
      "RETENTION_LIMIT_EXCEEDED",
    ]);
  });

  it("names expected and actual values", () => {
    expect(failure({ kvFormat: { ...format, dtype: "f16" } }).message).toBe(
      '[invalid_argument] kv_format.dtype: expected one of [bf16,f32,fp8_e4m3fn], got "f16"',
    );
  });

  it("accepts fp8 with or without scales but int8 only with scales", () => {
    const fp8 = { ...format, dtype: "fp8_e4m3fn" as const };
    expect(() =>
      validatePrefillRequest({ ...request, kvFormat: fp8 }, { capabilities, model }),
    ).not.toThrow();
    expect(() =>
      validatePrefillRequest(
        { ...request, kvFormat: { ...fp8, scaleScheme: "per_tensor" } },
        { capabilities, model },
      ),
    ).not.toThrow();
  });

  it("accepts any int32 priority and rejects others last in PF-1 stage 4 (PF-50)", () => {
    for (const priority of [-(2 ** 31), -1, 0, 7, 2 ** 31 - 1]) {
      expect(() =>
        validatePrefillRequest({ ...request, priority }, { capabilities, model }),
      ).not.toThrow();
    }
    expect(failure({ priority: 0.5 }).fieldViolations.map((v) => v.field)).toEqual(["priority"]);
    expect(failure({ priority: 2 ** 31 }).reason).toBe("INVALID_FIELD");
    expect(failure({ priority: 0.5, cacheSalt: "x".repeat(300) }).fieldViolations[0]?.field).toBe(
      "cache_salt",
    );
  });
});
