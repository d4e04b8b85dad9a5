import { Code } from "@opal/core";
import type { opal } from "@opal/protocol";
import { createConformanceModel } from "../conformance-model";
import {
  assertConformance,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { drain, expectFailure } from "../expect-status";
import {
  checkModelInfo,
  readListedModel,
  toUploadHeader,
  toWeightMessages,
  uploadedModelId,
} from "./model-checks";

/** Model listing, upload, idempotent load, conflicts, unload (`MD-`). */
export function toModelsSuite(): ConformanceTest[] {
  const upload = optional("model-upload");
  return [
    {
      id: "models.list",
      title: "ListModels answers with well-formed, distinct models",
      tag: CORE,
      spec: ["MD-4", "MD-1"],
      run: runModelsList,
    },
    {
      id: "models.upload",
      title:
        "LoadModel uploads the conformance model (safetensors + config) and ListModels shows it",
      tag: upload,
      spec: ["MD-2", "MD-4", "MD-5", "MD-8", "MD-10", "MD-12"],
      run: runModelsUpload,
    },
    {
      id: "models.load-idempotent",
      title:
        "Loading the same model again under its id answers already_loaded with the same fingerprint",
      tag: upload,
      spec: ["MD-12"],
      run: runModelsLoadIdempotent,
    },
    {
      id: "models.id-conflict",
      title:
        "Loading different weights under a taken id fails ALREADY_EXISTS MODEL_ID_CONFLICT and changes nothing",
      tag: upload,
      spec: ["MD-12", "MD-1"],
      run: runModelsIdConflict,
    },
    {
      id: "models.unload",
      title: "UnloadModel removes a model at once and is idempotent",
      tag: upload,
      spec: ["MD-14", "MD-16"],
      needs: ["model"],
      run: runModelsUnload,
    },
    {
      id: "models.truncated-upload",
      title:
        "An upload with fewer bytes than weights_byte_length fails MODEL_WEIGHTS_INVALID and leaves nothing behind",
      tag: upload,
      spec: ["MD-7", "MD-11"],
      run: runModelsTruncatedUpload,
    },
    {
      id: "models.sha256-mismatch",
      title: "An upload whose weights_sha256 does not match fails MODEL_WEIGHTS_INVALID",
      tag: upload,
      spec: ["MD-10", "MD-11"],
      run: runModelsSha256Mismatch,
    },
    {
      id: "models.upload-too-large",
      title:
        "weights_byte_length above max_model_bytes fails RESOURCE_EXHAUSTED MESSAGE_TOO_LARGE from the header alone",
      tag: upload,
      spec: ["MD-6", "ERR-4"],
      run: runModelsUploadTooLarge,
    },
    {
      id: "models.uploads-unsupported",
      title:
        "A device without uploads (max_model_bytes = 0) refuses one with UNIMPLEMENTED UNSUPPORTED_FEATURE",
      tag: CORE,
      spec: ["MD-6"],
      run: runModelsUploadsUnsupported,
    },
  ];
}

/** `models.list`: ListModels answers with well-formed, distinct models. */
async function runModelsList(ctx: ConformanceContext): Promise<void> {
  const { models } = await ctx.a.unary("listModels", {});
  const ids = models.map((m) => m.modelId);
  assertConformance(
    new Set(ids).size === ids.length,
    `MD-4: ListModels repeats a model id (${ids.join(", ")})`,
  );
  const problems = models.flatMap((m) => checkModelInfo(m, `model ${m.modelId}`));
  assertConformance(problems.length === 0, problems.join("; "));
  ctx.note(`models: ${ids.join(", ") || "(none)"}`);
}

/**
 * `models.upload`: LoadModel uploads the conformance model (safetensors + config) and ListModels
 * shows it.
 */
async function runModelsUpload(ctx: ConformanceContext): Promise<void> {
  const error = ctx.shared.get("uploadError");
  if (error) throw error;
  const modelId = uploadedModelId(ctx);
  const response = ctx.shared.get("upload") as opal.device.v1.LoadModelResponse;
  const info = response.model;
  assertConformance(info, "LoadModelResponse.model is missing");
  const problems = checkModelInfo(info, "LoadModelResponse.model");
  assertConformance(
    info.modelId === modelId,
    `LoadModelResponse.model.model_id ${info.modelId}, loaded as ${modelId}`,
  );
  const config = ctx.conformanceModel.reference.config;
  const shape = `${info.numLayers} layers, ${info.mha?.numKvHeads}x${info.mha?.headDim} KV heads, vocab ${info.vocabSize}, ${info.maxPositionEmbeddings} positions`;
  const expected = `${config.numHiddenLayers} layers, ${config.numKeyValueHeads}x${config.headDim} KV heads, vocab ${config.vocabSize}, ${config.maxPositionEmbeddings} positions`;
  if (shape !== expected) problems.push(`ModelInfo says ${shape}, the config says ${expected}`);
  const row = await readListedModel(ctx, modelId);
  if (!row) problems.push(`MD-4: ListModels does not list ${modelId}`);
  else if (row.fingerprint !== info.fingerprint)
    problems.push("MD-2: ListModels and LoadModel report different fingerprints");
  assertConformance(problems.length === 0, problems.join("; "));
  ctx.note(`fingerprint ${info.fingerprint}`);
}

/**
 * `models.load-idempotent`: Loading the same model again under its id answers already_loaded with
 * the same fingerprint.
 */
async function runModelsLoadIdempotent(ctx: ConformanceContext): Promise<void> {
  const modelId = uploadedModelId(ctx);
  const again = await ctx.a.loadModel([
    toUploadHeader(ctx, modelId),
    ...toWeightMessages(ctx, ctx.conformanceModel.safetensors),
  ]);
  assertConformance(
    again.alreadyLoaded,
    "MD-12: a repeated load of the same weights did not answer already_loaded = true",
  );
  assertConformance(
    again.model?.fingerprint === ctx.model?.info.fingerprint,
    `MD-12: fingerprint changed on reload (${again.model?.fingerprint} vs ${ctx.model?.info.fingerprint})`,
  );
}

/**
 * `models.id-conflict`: Loading different weights under a taken id fails ALREADY_EXISTS
 * MODEL_ID_CONFLICT and changes nothing.
 */
async function runModelsIdConflict(ctx: ConformanceContext): Promise<void> {
  const modelId = uploadedModelId(ctx);
  const other = createConformanceModel({ seed: 1 });
  await expectFailure(
    () =>
      ctx.a.loadModel([
        {
          header: {
            modelId,
            configJson: other.configJson,
            weightsByteLength: other.safetensors.byteLength,
          },
        },
        ...toWeightMessages(ctx, other.safetensors),
      ]),
    { code: Code.ALREADY_EXISTS, reasons: ["MODEL_ID_CONFLICT"], spec: "MD-12" },
    "LoadModel of different weights under a taken id",
  );
  const row = await readListedModel(ctx, modelId);
  assertConformance(
    row?.fingerprint === ctx.model?.info.fingerprint,
    "MD-12: the loaded model changed after a conflicting load",
  );
}

/** `models.unload`: UnloadModel removes a model at once and is idempotent. */
async function runModelsUnload(ctx: ConformanceContext): Promise<void> {
  uploadedModelId(ctx);
  const modelId = `${ctx.model?.modelId}-unload`;
  await ctx.a.loadModel([
    toUploadHeader(ctx, modelId),
    ...toWeightMessages(ctx, ctx.conformanceModel.safetensors),
  ]);
  assertConformance(
    await readListedModel(ctx, modelId),
    `MD-4: ${modelId} not listed after loading`,
  );
  const first = await ctx.a.unary("unloadModel", { modelId });
  assertConformance(
    first.wasLoaded,
    "MD-16: UnloadModel of a loaded model answered was_loaded = false",
  );
  assertConformance(
    !(await readListedModel(ctx, modelId)),
    "MD-16: the model is still listed after UnloadModel returned",
  );
  await expectFailure(
    () =>
      drain(
        ctx.a.stream("prefill", ctx.prefillRequest({ modelId }), {
          timeoutMs: ctx.prefillTimeoutMs,
        }),
      ),
    { code: Code.FAILED_PRECONDITION, reasons: ["MODEL_NOT_LOADED"], spec: "MD-16" },
    "a prefill of the unloaded model",
  );
  const second = await ctx.a.unary("unloadModel", { modelId });
  assertConformance(!second.wasLoaded, "MD-16: a second UnloadModel answered was_loaded = true");
}

/**
 * `models.truncated-upload`: An upload with fewer bytes than weights_byte_length fails
 * MODEL_WEIGHTS_INVALID and leaves nothing behind.
 */
async function runModelsTruncatedUpload(ctx: ConformanceContext): Promise<void> {
  const modelId = `opal-conformance/truncated-${Date.now().toString(36)}`;
  const bytes = ctx.conformanceModel.safetensors;
  await expectFailure(
    () =>
      ctx.a.loadModel([
        toUploadHeader(ctx, modelId, { weightsSha256: "" }),
        ...toWeightMessages(ctx, bytes.subarray(0, bytes.byteLength - 1)),
      ]),
    { code: Code.INVALID_ARGUMENT, reasons: ["MODEL_WEIGHTS_INVALID"], spec: "MD-7" },
    "a truncated upload",
  );
  assertConformance(!(await readListedModel(ctx, modelId)), "MD-11: a failed load is listed");
}

/**
 * `models.sha256-mismatch`: An upload whose weights_sha256 does not match fails
 * MODEL_WEIGHTS_INVALID.
 */
async function runModelsSha256Mismatch(ctx: ConformanceContext): Promise<void> {
  const modelId = `opal-conformance/sha-${Date.now().toString(36)}`;
  await expectFailure(
    () =>
      ctx.a.loadModel([
        toUploadHeader(ctx, modelId, { weightsSha256: "0".repeat(64) }),
        ...toWeightMessages(ctx, ctx.conformanceModel.safetensors),
      ]),
    { code: Code.INVALID_ARGUMENT, reasons: ["MODEL_WEIGHTS_INVALID"], spec: "MD-10" },
    "an upload with a wrong weights_sha256",
  );
  assertConformance(!(await readListedModel(ctx, modelId)), "MD-11: a failed load is listed");
}

/**
 * `models.upload-too-large`: weights_byte_length above max_model_bytes fails RESOURCE_EXHAUSTED
 * MESSAGE_TOO_LARGE from the header alone.
 */
async function runModelsUploadTooLarge(ctx: ConformanceContext): Promise<void> {
  const max = Number(ctx.capabilities.maxModelBytes ?? 0);
  await expectFailure(
    () =>
      ctx.a.loadModel(
        [
          toUploadHeader(ctx, "opal-conformance/too-large", {
            weightsByteLength: max + 1,
            weightsSha256: "",
          }),
        ],
        { timeoutMs: 10_000 },
      ),
    {
      code: Code.RESOURCE_EXHAUSTED,
      reasons: ["MESSAGE_TOO_LARGE"],
      noRetryInfo: true,
      spec: "MD-6",
    },
    "an upload announcing max_model_bytes + 1 bytes",
  );
}

/**
 * `models.uploads-unsupported`: A device without uploads (max_model_bytes = 0) refuses one with
 * UNIMPLEMENTED UNSUPPORTED_FEATURE.
 */
async function runModelsUploadsUnsupported(ctx: ConformanceContext): Promise<void> {
  if (Number(ctx.capabilities.maxModelBytes ?? 0) > 0)
    ctx.notApplicable("the device accepts uploads (max_model_bytes > 0)");
  await expectFailure(
    () =>
      ctx.a.loadModel([toUploadHeader(ctx, "opal-conformance/no-uploads")], { timeoutMs: 10_000 }),
    {
      code: Code.UNIMPLEMENTED,
      reasons: ["UNSUPPORTED_FEATURE"],
      field: "header.weights_byte_length",
      spec: "MD-6",
    },
    "an upload to a device without uploads",
  );
}
