import type { opal } from "@opal/protocol";
import { toWeightChunks } from "../conformance-model";
import type { ConformanceContext } from "../conformance-test";

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * The ways `info` (named `where` in messages) breaks the ModelInfo rules (`MD-1`); empty when it
 * conforms.
 */
export function checkModelInfo(info: opal.device.v1.IModelInfo, where: string): string[] {
  const problems: string[] = [];
  if (!HEX64.test(info.fingerprint ?? ""))
    problems.push(
      `MD-1: ${where} fingerprint ${JSON.stringify(info.fingerprint)} is not 64 lower-case hex digits`,
    );
  if (!info.mha === !info.mla) problems.push(`${where}: exactly one of mha / mla must be set`);
  if (!info.numLayers) problems.push(`${where}: num_layers is 0`);
  if (!info.vocabSize) problems.push(`${where}: vocab_size is 0`);
  return problems;
}

/**
 * The header message of a LoadModel upload of the conformance model under `modelId`, with `extra`
 * fields overriding its own.
 */
export function toUploadHeader(
  ctx: ConformanceContext,
  modelId: string,
  extra: Partial<opal.device.v1.LoadModelHeader.$Properties> = {},
) {
  const m = ctx.conformanceModel;
  return {
    header: {
      modelId,
      configJson: m.configJson,
      weightsByteLength: m.safetensors.byteLength,
      weightsSha256: m.weightsSha256,
      ...extra,
    },
  };
}

/** `bytes` as LoadModel weight messages of at most 1 MiB (and the device's `max_chunk_bytes`). */
export function toWeightMessages(ctx: ConformanceContext, bytes: Uint8Array) {
  const size = Math.min(ctx.capabilities.maxChunkBytes || 1 << 20, 1 << 20);
  return toWeightChunks(bytes, size).map((weightsChunk) => ({ weightsChunk }));
}

/** The device's ListModels row of `modelId`, if it lists it. */
export async function readListedModel(ctx: ConformanceContext, modelId: string) {
  const { models } = await ctx.a.unary("listModels", {});
  return models.find((m) => m.modelId === modelId);
}

/**
 * The id of the conformance model the suite uploaded in this run; skips the test when it did not
 * (a preloaded model is configured).
 */
export function uploadedModelId(ctx: ConformanceContext): string {
  if (!ctx.model?.conformanceWeights || !ctx.shared.has("upload")) {
    ctx.skip(
      "the suite did not upload the conformance model in this run (a preloaded model is configured)",
    );
  }
  return ctx.model.modelId;
}
