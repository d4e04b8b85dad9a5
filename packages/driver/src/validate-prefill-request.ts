import { Code, invalidField, OpalError, Reason } from "@opal/core";
import type { KvHeadRange } from "@opal/kv";
import { assertKvFormat } from "./assert-kv-format";
import type {
  DecoderPrefix,
  DeviceCapabilities,
  KvFormat,
  ModelInfo,
  PrefillRequest,
  ReceivedKvFormat,
  ReceivedPrefillRequest,
} from "./gen/messages";
import { negotiateChunkBytes } from "./negotiate-chunk-bytes";
import { quote } from "./quote";
import type { Sampling } from "./sampling";

/** A prefill request checked against a device and model, with its defaults resolved. */
export interface ValidatedPrefill {
  /**
   * The request that was checked, as a `PrefillRequest` (the same object, its `kv_format` present
   * and every enum known).
   */
  readonly request: PrefillRequest;
  /** The chunk size to produce, in bytes. */
  readonly chunkBytes: number;
  /** The heads to produce ({start: 0, count: 1} for MLA). */
  readonly headRange: KvHeadRange;
  /** Tokens the decoder holds (from `decoderPrefix.numTokens`; block hashes are resolved by the device). */
  readonly decoderPrefixTokens: number;
  readonly retentionSeconds: number;
}

/** The device a request is checked against: its capabilities and the model (undefined when not loaded). */
interface Device {
  readonly capabilities: DeviceCapabilities;
  readonly model: ModelInfo | undefined;
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * Checks `request` as received (its enums may be UNSPECIFIED or unknown, its `kv_format` absent;
 * a `PrefillRequest` is one too) against the device's capabilities and the model (undefined when
 * not loaded), in the order the protocol specifies (`PF-1`), and resolves defaults; the result
 * carries the request as a `PrefillRequest` for the driver to work with. Throws an `OpalError`:
 * INVALID_ARGUMENT with a BadRequest field violation and the matching reason (INVALID_FIELD,
 * PROMPT_EMPTY, PROMPT_TOO_LONG, TOKEN_OUT_OF_RANGE, UNSUPPORTED_DTYPE, UNSUPPORTED_LAYOUT,
 * UNSUPPORTED_SCALE_SCHEME, UNSUPPORTED_BLOCK_SIZE, HEAD_RANGE_INVALID), FAILED_PRECONDITION
 * MODEL_NOT_LOADED, UNIMPLEMENTED UNSUPPORTED_FEATURE, or RESOURCE_EXHAUSTED
 * RETENTION_LIMIT_EXCEEDED.
 */
export function validatePrefillRequest(
  request: ReceivedPrefillRequest,
  device: Device,
): ValidatedPrefill {
  const { capabilities: caps } = device;
  assertRequestShape(request);
  const model = requireModel(request.modelId, device.model);
  const tokens = request.promptTokenIds;
  assertPrompt(tokens, caps, model);
  assertFormat(request, caps, model);
  const headRange = resolveHeadRange(request.kvFormat.headRange, model);
  const chunkBytes = negotiateChunkBytes(request.maxChunkBytes, caps);
  const decoderPrefixTokens = request.decoderPrefix
    ? checkDecoderPrefix(request.decoderPrefix, tokens.length, caps)
    : 0;
  const retentionSeconds = checkRetention(request.retentionSeconds ?? 0, caps);
  assertPushTarget(request, caps);
  assertSampling(request, caps);
  const saltBytes = new TextEncoder().encode(request.cacheSalt ?? "").byteLength;
  if (saltBytes > 256)
    throw invalidField("cache_salt", `expected at most 256 bytes of UTF-8, got ${saltBytes}`);
  const priority = request.priority ?? 0;
  if (!Number.isSafeInteger(priority) || priority < INT32_MIN || priority > INT32_MAX) {
    throw invalidField("priority", `expected a whole number in the int32 range, got ${priority}`);
  }
  return { request, chunkBytes, headRange, decoderPrefixTokens, retentionSeconds };
}

/** The checks before the model: `request_id`, `model_id`, a non-empty prompt, `kv_format` present. */
function assertRequestShape(
  request: ReceivedPrefillRequest,
): asserts request is ReceivedPrefillRequest & Required<Pick<ReceivedPrefillRequest, "kvFormat">> {
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
  if (!request.kvFormat) throw invalidField("kv_format", "required, got nothing");
}

/** `kv_format` holds values of this version only (see `assertKvFormat`). */
function assertFormat(
  request: { readonly kvFormat: ReceivedKvFormat },
  caps: DeviceCapabilities,
  model: ModelInfo,
): asserts request is { readonly kvFormat: KvFormat } {
  assertKvFormat(request.kvFormat, caps, model);
}

/** The loaded model; throws FAILED_PRECONDITION MODEL_NOT_LOADED when there is none. */
function requireModel(modelId: string, model: ModelInfo | undefined): ModelInfo {
  if (model) return model;
  throw new OpalError(Code.FAILED_PRECONDITION, `model ${quote(modelId)} is not loaded`, {
    reason: Reason.MODEL_NOT_LOADED,
    resource: { resourceType: "opal.device.v1.Model", resourceName: modelId },
  });
}

/** The prompt fits the device and the model (PROMPT_TOO_LONG) and every token is in the vocabulary. */
function assertPrompt(tokens: Uint32Array, caps: DeviceCapabilities, model: ModelInfo): void {
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
}

/**
 * The heads to produce: all of them when `range` is absent, {start: 0, count: 1} for MLA; throws
 * INVALID_ARGUMENT HEAD_RANGE_INVALID for a range outside the model's KV heads.
 */
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

/** Tokens the decoder holds per `decoder_prefix` (a feature the device must declare). */
function checkDecoderPrefix(
  prefix: DecoderPrefix,
  promptTokens: number,
  caps: DeviceCapabilities,
): number {
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
  if (hasTokens && prefix.numTokens! >= promptTokens) {
    throw invalidField(
      "decoder_prefix.num_tokens",
      `expected fewer than the ${promptTokens} prompt tokens, got ${prefix.numTokens}`,
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
  return prefix.numTokens ?? 0;
}

/** `retention_seconds`, whole and within the device's limit (RESOURCE_EXHAUSTED beyond it). */
function checkRetention(retentionSeconds: number, caps: DeviceCapabilities): number {
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
  return retentionSeconds;
}

/** A push target needs the push feature, an address and a transfer id. */
function assertPushTarget(request: ReceivedPrefillRequest, caps: DeviceCapabilities): void {
  if (request.pushTarget && !caps.features.push) throw unsupported("push_target");
  if (request.pushTarget && !request.pushTarget.address) {
    throw invalidField("push_target.address", "required, got an empty string");
  }
  if (request.pushTarget && !request.pushTarget.transferId) {
    throw invalidField("push_target.transfer_id", "required, got an empty string");
  }
}

/** The sampling mode is known (`GEN-3`); seeded sampling needs its feature and a temperature > 0. */
function assertSampling(
  request: ReceivedPrefillRequest,
  caps: DeviceCapabilities,
): asserts request is ReceivedPrefillRequest & { readonly sampling?: Sampling } {
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
