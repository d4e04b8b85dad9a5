import { Code, invalidField, OpalError, Reason } from "@opal/core";
import type { KvHeadRange } from "@opal/kv";
import type { DeviceCapabilities, ModelInfo, PrefillRequest } from "./gen/messages";
import { negotiateChunkBytes } from "./negotiate-chunk-bytes";

/** A prefill request checked against a device and model, with its defaults resolved. */
export interface ValidatedPrefill {
  /** The chunk size to produce, in bytes. */
  readonly chunkBytes: number;
  /** The heads to produce ({start: 0, count: 1} for MLA). */
  readonly headRange: KvHeadRange;
  /** Tokens the decoder holds (from `decoderPrefix.numTokens`; block hashes are resolved by the device). */
  readonly decoderPrefixTokens: number;
  readonly retentionSeconds: number;
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * Checks `request` against the device's capabilities and the model (undefined when not loaded),
 * in the order the protocol specifies, and resolves defaults. Throws an `OpalError`:
 * INVALID_ARGUMENT with a BadRequest field violation and the matching reason (INVALID_FIELD,
 * PROMPT_EMPTY, PROMPT_TOO_LONG, TOKEN_OUT_OF_RANGE, UNSUPPORTED_DTYPE, UNSUPPORTED_LAYOUT,
 * UNSUPPORTED_SCALE_SCHEME, UNSUPPORTED_BLOCK_SIZE, HEAD_RANGE_INVALID), FAILED_PRECONDITION
 * MODEL_NOT_LOADED, UNIMPLEMENTED UNSUPPORTED_FEATURE, or RESOURCE_EXHAUSTED
 * RETENTION_LIMIT_EXCEEDED.
 */
export function validatePrefillRequest(
  request: PrefillRequest,
  device: { readonly capabilities: DeviceCapabilities; readonly model: ModelInfo | undefined },
): ValidatedPrefill {
  const { capabilities: caps, model } = device;
  if (!REQUEST_ID.test(request.requestId ?? "")) {
    throw invalidField(
      "request_id",
      `expected 1-128 printable ASCII characters, got ${quote(request.requestId)}`,
    );
  }
  if (!request.modelId) throw invalidField("model_id", "required, got an empty string");
  const tokens = request.promptTokenIds;
  if (!tokens || tokens.length === 0) {
    throw invalidField("prompt_token_ids", "expected at least 1 token, got 0", Reason.PROMPT_EMPTY);
  }
  const format = request.kvFormat;
  if (!format) throw invalidField("kv_format", "required, got nothing");
  if (!model) {
    throw new OpalError(Code.FAILED_PRECONDITION, `model ${quote(request.modelId)} is not loaded`, {
      reason: Reason.MODEL_NOT_LOADED,
      resource: { resourceType: "opal.device.v1.Model", resourceName: request.modelId },
    });
  }
  const maxTokens = Math.min(caps.maxPromptTokens, model.maxPositionEmbeddings);
  if (tokens.length > maxTokens) {
    throw invalidField(
      "prompt_token_ids",
      `expected at most ${maxTokens} tokens, got ${tokens.length}`,
      Reason.PROMPT_TOO_LONG,
    );
  }
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i]! >= model.vocabSize) {
      throw invalidField(
        `prompt_token_ids[${i}]`,
        `token ${tokens[i]} out of range (vocabulary has ${model.vocabSize} tokens)`,
        Reason.TOKEN_OUT_OF_RANGE,
      );
    }
  }
  // GEN-3: an UNSPECIFIED enum ("" from fromWirePrefillRequest, or absent) is INVALID_FIELD; an
  // unknown or unsupported value gets the field's own reason below.
  if (!format.dtype) throw invalidField("kv_format.dtype", "required, got UNSPECIFIED");
  if (!caps.dtypes.includes(format.dtype)) {
    throw invalidField(
      "kv_format.dtype",
      `expected one of [${caps.dtypes}], got ${quote(format.dtype)}`,
      Reason.UNSUPPORTED_DTYPE,
    );
  }
  const validLayouts =
    model.attention.kind === "mla" ? caps.layouts.filter((l) => l === "nhd") : caps.layouts;
  if (!format.layout) throw invalidField("kv_format.layout", "required, got UNSPECIFIED");
  if (!validLayouts.includes(format.layout)) {
    throw invalidField(
      "kv_format.layout",
      `expected one of [${validLayouts}], got ${quote(format.layout)}`,
      Reason.UNSUPPORTED_LAYOUT,
    );
  }
  const quantized = format.dtype.startsWith("fp8") || format.dtype === "int8";
  const schemes = quantized ? ["none", ...caps.scaleSchemes] : ["none"];
  if (format.dtype === "int8") schemes.splice(schemes.indexOf("none"), 1);
  if (!format.scaleScheme)
    throw invalidField("kv_format.scale_scheme", "required, got UNSPECIFIED");
  if (!schemes.includes(format.scaleScheme)) {
    throw invalidField(
      "kv_format.scale_scheme",
      `expected one of [${schemes}] for ${format.dtype}, got ${quote(format.scaleScheme)}`,
      Reason.UNSUPPORTED_SCALE_SCHEME,
    );
  }
  if (!caps.blockSizesTokens.includes(format.blockSizeTokens)) {
    throw invalidField(
      "kv_format.block_size_tokens",
      `expected one of [${caps.blockSizesTokens}], got ${format.blockSizeTokens}`,
      Reason.UNSUPPORTED_BLOCK_SIZE,
    );
  }
  const headRange = resolveHeadRange(format.headRange, model);
  const chunkBytes = negotiateChunkBytes(request.maxChunkBytes, caps);
  const prefix = request.decoderPrefix;
  let decoderPrefixTokens = 0;
  if (prefix) {
    if (!caps.features.decoderPrefix) throw unsupported("decoder_prefix");
    if (prefix.numTokens !== undefined && !isCount(prefix.numTokens, 0)) {
      throw invalidField(
        "decoder_prefix.num_tokens",
        `expected a whole number of tokens, got ${prefix.numTokens}`,
      );
    }
    const hasTokens = (prefix.numTokens ?? 0) > 0;
    const hasHashes = (prefix.blockHashes?.length ?? 0) > 0;
    if (hasTokens && hasHashes) {
      throw invalidField("decoder_prefix", "set num_tokens or block_hashes, not both");
    }
    if (hasTokens && prefix.numTokens! >= tokens.length) {
      throw invalidField(
        "decoder_prefix.num_tokens",
        `expected fewer than the ${tokens.length} prompt tokens, got ${prefix.numTokens}`,
      );
    }
    for (const [i, hash] of (prefix.blockHashes ?? []).entries()) {
      if (hash.byteLength !== 32) {
        throw invalidField(
          `decoder_prefix.block_hashes[${i}]`,
          `expected 32 bytes, got ${hash.byteLength}`,
        );
      }
    }
    decoderPrefixTokens = prefix.numTokens ?? 0;
  }
  const retentionSeconds = request.retentionSeconds ?? 0;
  if (!isCount(retentionSeconds, 0)) {
    throw invalidField(
      "retention_seconds",
      `expected a whole number of seconds, got ${retentionSeconds}`,
    );
  }
  if (retentionSeconds > 0 && caps.retention.maxRetentionSeconds === 0)
    throw unsupported("retention_seconds");
  if (retentionSeconds > caps.retention.maxRetentionSeconds) {
    throw new OpalError(
      Code.RESOURCE_EXHAUSTED,
      `retention of ${retentionSeconds} s exceeds the device limit of ${caps.retention.maxRetentionSeconds} s`,
      { reason: Reason.RETENTION_LIMIT_EXCEEDED },
    );
  }
  if (request.pushTarget && !caps.features.push) throw unsupported("push_target");
  if (request.pushTarget && !request.pushTarget.address) {
    throw invalidField("push_target.address", "required, got an empty string");
  }
  if (request.pushTarget && !request.pushTarget.transferId) {
    throw invalidField("push_target.transfer_id", "required, got an empty string");
  }
  const mode = request.sampling?.mode;
  if (mode !== undefined && mode !== "greedy" && mode !== "seeded") {
    throw invalidField(
      "sampling.mode",
      mode ? `expected greedy or seeded, got ${quote(mode)}` : "required, got UNSPECIFIED",
    );
  }
  if (request.sampling?.mode === "seeded") {
    if (!caps.features.seededSampling) throw unsupported("sampling");
    const t = request.sampling.temperature;
    if (!(t > 0) || !Number.isFinite(t)) {
      throw invalidField(
        "sampling.temperature",
        `expected a finite number > 0 for seeded sampling, got ${t}`,
      );
    }
  }
  const saltBytes = new TextEncoder().encode(request.cacheSalt ?? "").byteLength;
  if (saltBytes > 256)
    throw invalidField("cache_salt", `expected at most 256 bytes of UTF-8, got ${saltBytes}`);
  return { chunkBytes, headRange, decoderPrefixTokens, retentionSeconds };
}

function resolveHeadRange(range: KvHeadRange | undefined, model: ModelInfo): KvHeadRange {
  if (model.attention.kind === "mla") return { start: 0, count: 1 };
  const heads = model.attention.numKvHeads;
  if (!range) return { start: 0, count: heads };
  if (!isCount(range.count, 1) || !isCount(range.start, 0) || range.start + range.count > heads) {
    throw invalidField(
      "kv_format.head_range",
      `expected a range inside heads 0..${heads - 1}, got start ${range.start} count ${range.count}`,
      Reason.HEAD_RANGE_INVALID,
    );
  }
  return range;
}

/** An integer of at least `min` (not NaN, not fractional, not infinite). */
function isCount(value: number, min: number): boolean {
  return Number.isSafeInteger(value) && value >= min;
}

function unsupported(field: string): OpalError {
  return new OpalError(Code.UNIMPLEMENTED, `${field} is not supported by this device`, {
    reason: Reason.UNSUPPORTED_FEATURE,
    fieldViolations: [{ field, description: "the device does not declare this feature" }],
  });
}

function quote(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}
