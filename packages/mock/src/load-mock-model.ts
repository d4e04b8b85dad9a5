import { Code, OpalError, Reason } from "@opal/core";
import type { LoadModelRequest, LoadModelResult } from "@opal/driver";
import { decodeHfCheckpoint, type ModelWeights } from "@opal/reference";
import {
  createNamedMockModel,
  createReferenceMockModel,
  type MockModel,
  parseHfConfig,
} from "./mock-model";

/**
 * LoadModel on the mock: a device-local reference names a built-in model; otherwise the uploaded
 * HF config and safetensors become a reference model. Idempotent on the fingerprint (same id, same
 * model: `alreadyLoaded`); another model under a taken id is ALREADY_EXISTS MODEL_ID_CONFLICT; a new
 * id when `maxModels` are loaded is RESOURCE_EXHAUSTED DEVICE_BUSY (MD-15).
 */
export async function loadMockModel(
  models: Map<string, MockModel>,
  request: LoadModelRequest,
  maxModels: number,
): Promise<LoadModelResult> {
  if (!/^[A-Za-z0-9._:/-]{1,128}$/.test(request.modelId)) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `model_id: expected 1-128 characters of [A-Za-z0-9._:/-], got ${JSON.stringify(request.modelId)}`,
      {
        reason: Reason.INVALID_FIELD,
        fieldViolations: [
          { field: "model_id", description: "expected 1-128 characters of [A-Za-z0-9._:/-]" },
        ],
      },
    );
  }
  // MD-15: a new id beyond the model limit is refused before any weight byte is read.
  if (!models.has(request.modelId) && models.size >= maxModels) {
    throw new OpalError(
      Code.RESOURCE_EXHAUSTED,
      `the device holds ${models.size} of its ${maxModels} models: unload one first`,
      {
        reason: Reason.DEVICE_BUSY,
        resource: { resourceType: "opal.device/model-memory", resourceName: "" },
      },
    );
  }
  let model: MockModel;
  if (request.deviceLocalRef) {
    const named = createNamedMockModel(request.deviceLocalRef);
    model = { ...named, info: { ...named.info, modelId: request.modelId } };
  } else {
    parseHfConfig(request.configJson);
    const pieces: Uint8Array[] = [];
    for await (const piece of request.weights ?? []) pieces.push(piece);
    let weights: ModelWeights;
    try {
      weights = decodeHfCheckpoint({
        configJson: request.configJson,
        safetensors: Buffer.concat(pieces),
      });
    } catch (error) {
      const description = (error as Error).message;
      throw new OpalError(Code.INVALID_ARGUMENT, `weights: ${description}`, {
        reason: Reason.MODEL_WEIGHTS_INVALID,
        fieldViolations: [{ field: "weights_chunk", description }],
        cause: error,
      });
    }
    model = createReferenceMockModel(request.modelId, weights);
  }
  const existing = models.get(request.modelId);
  if (existing) {
    if (existing.info.fingerprint === model.info.fingerprint)
      return { model: existing.info, alreadyLoaded: true };
    throw new OpalError(
      Code.ALREADY_EXISTS,
      `model_id ${JSON.stringify(request.modelId)} holds a different model`,
      {
        reason: Reason.MODEL_ID_CONFLICT,
      },
    );
  }
  models.set(request.modelId, model);
  return { model: model.info, alreadyLoaded: false };
}
