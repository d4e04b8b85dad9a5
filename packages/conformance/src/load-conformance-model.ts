import type { opal } from "@opal/protocol";
import { type createConformanceModel, toWeightChunks } from "./conformance-model";
import type { ConformanceOptions } from "./conformance-options";
import type { ConformanceModelRef } from "./conformance-test";
import type { WireClient } from "./wire-client";
import { describeWireStatus, toWireStatus } from "./wire-status";

/** The model id the suite uploads the conformance weights under. */
export function toConformanceModelId(weightsSha256: string): string {
  return `opal-conformance/opal-tiny-${weightsSha256.slice(0, 12)}`;
}

/**
 * The model the suite prefills with: `options.modelId` when configured (it must be in ListModels),
 * else the conformance model, uploaded with LoadModel (the response is kept in `shared` as
 * `upload`, a failure as `uploadError`). Resolves with a `problem` instead of a model when neither
 * is possible; the tests that need a model are then skipped with it.
 */
export async function loadConformanceModel(
  a: WireClient,
  capabilities: opal.device.v1.ICapabilities,
  conformanceModel: ReturnType<typeof createConformanceModel>,
  options: Pick<ConformanceOptions, "modelId" | "conformanceWeights" | "checkpoint">,
  shared: Map<string, unknown>,
): Promise<{ model?: ConformanceModelRef; problem: string }> {
  try {
    if (options.modelId) {
      const { models } = await a.unary("listModels", {}, { timeoutMs: 10_000 });
      const info = models.find((m) => m.modelId === options.modelId);
      if (!info)
        return {
          problem: `the configured model ${JSON.stringify(options.modelId)} is not in ListModels`,
        };
      return {
        model: {
          modelId: options.modelId,
          info,
          // A named checkpoint is the reference the KV is checked against.
          conformanceWeights: (options.conformanceWeights ?? false) || !!options.checkpoint,
          uploaded: false,
        },
        problem: "",
      };
    }
    const maxModelBytes = Number(capabilities.maxModelBytes ?? 0);
    if (maxModelBytes === 0) {
      return {
        problem:
          "the device accepts no model uploads (max_model_bytes = 0), so it cannot load the conformance model, and no preloaded model is configured (--config: model, with its checkpoint: --checkpoint): the device cannot be certified",
      };
    }
    const modelId = toConformanceModelId(conformanceModel.weightsSha256);
    const chunkBytes = Math.min(capabilities.maxChunkBytes || 1 << 20, 1 << 20);
    const response = await a.loadModel(
      [
        {
          header: {
            modelId,
            configJson: conformanceModel.configJson,
            weightsByteLength: conformanceModel.safetensors.byteLength,
            weightsSha256: conformanceModel.weightsSha256,
          },
        },
        ...toWeightChunks(conformanceModel.safetensors, chunkBytes).map((weightsChunk) => ({
          weightsChunk,
        })),
      ],
      { timeoutMs: 120_000 },
    );
    shared.set("upload", response);
    return {
      model: {
        modelId,
        info: response.model ?? { modelId },
        conformanceWeights: true,
        uploaded: !response.alreadyLoaded,
      },
      problem: "",
    };
  } catch (error) {
    shared.set("uploadError", error);
    const status = toWireStatus(error);
    return {
      problem: `the conformance model could not be loaded: ${status ? describeWireStatus(status) : (error as Error).message}`,
    };
  }
}
