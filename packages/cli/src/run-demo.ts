import { randomUUID } from "node:crypto";
import { createDeviceClient, pushPrefill, startPrefill } from "@opal/client";
import { Code, OpalError } from "@opal/core";
import type { KvDtype } from "@opal/kv";
import { mockModelFlops, mockProfile, serveMockDevice, simulatedTimeUs } from "@opal/mock";
import {
  createByteTokenizer,
  createPresetWeights,
  createReferenceModel,
  type PresetName,
  prefillFlops,
  toPresetConfig,
} from "@opal/reference";
import { createDecodeAgent, type DecodeAgent } from "./create-decode-agent";

/** Options of {@link runDemo}; every field has a default. */
export interface DemoOptions {
  /** The prompt text; default a sentence about OPAL. */
  readonly prompt?: string;
  /** Reference preset to prefill and decode; default "opal-small". */
  readonly model?: PresetName;
  /** Mock device profile; default "iris-nova". */
  readonly profile?: string;
  /**
   * Tokens to generate after the prefill, a whole number >= 1 that fits the model's context with
   * the prompt; default 24.
   */
  readonly maxNewTokens?: number;
  /** KV dtype on the wire; default "f32" (bit-exact continuation). */
  readonly dtype?: KvDtype;
  /** Called with a line of progress (a layer arrived, …). */
  readonly onProgress?: (line: string) => void;
}

/** What the demo measured. */
export interface DemoReport {
  readonly deviceAddress: string;
  readonly device: string;
  readonly model: string;
  readonly promptTokens: number;
  readonly kvDtype: KvDtype;
  readonly kvBytes: number;
  readonly layersStreamed: number;
  readonly timeToFirstLayerMs: number;
  readonly transferGigabytesPerSecond: number;
  readonly deviceTimeUs: number;
  readonly energyJoules: number;
  readonly h100TimeUs: number;
  readonly h100EnergyJoules: number;
  readonly generatedText: string;
  readonly generatedTokens: readonly number[];
  readonly monolithicTokens: readonly number[];
  readonly match: boolean;
  /** The same prompt at a real model's shape (synthetic KV), to show realistic sizes and times. */
  readonly projection: DemoProjection;
}

/** Figures of the prompt prefilled at Llama-3-8B's shape on the same device. */
export interface DemoProjection {
  readonly model: string;
  readonly kvBytes: number;
  readonly transferGigabytesPerSecond: number;
  readonly deviceTimeUs: number;
  readonly energyJoules: number;
  readonly h100TimeUs: number;
  readonly h100EnergyJoules: number;
}

const PROJECTION_MODEL = "llama-3-8b";

/** The default prompt of `opal demo`. */
export const DEFAULT_DEMO_PROMPT =
  "Prefill reads the whole prompt at once and is bound by compute; decode emits one token at a time and is bound by memory bandwidth.";

/**
 * The main job: starts the mock device on a loopback port, offloads the prompt's prefill through
 * the SDK over real gRPC, has the device push the KV cache layer by layer into a decode agent (a
 * KvReceiver in front of the reference model), continues decoding from the committed cache, and
 * compares the tokens with a monolithic run. The H100 figures are the same FLOPs under the `h100`
 * profile, whatever profile the device runs. INVALID_ARGUMENT, before anything starts, when
 * `maxNewTokens` is not a whole number >= 1 or the prompt and the tokens to generate do not fit the
 * model's context; the device's error when it refuses the prompt. Every server it starts is closed
 * when it returns or throws.
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoReport> {
  const modelName = options.model ?? "opal-small";
  const profile = options.profile ?? "iris-nova";
  const dtype = options.dtype ?? "f32";
  const maxNewTokens = options.maxNewTokens ?? 24;
  const progress = options.onProgress ?? (() => {});
  const tokenizer = createByteTokenizer();
  const prompt = tokenizer.encode(options.prompt ?? DEFAULT_DEMO_PROMPT);
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 1) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `maxNewTokens: expected a whole number >= 1, got ${maxNewTokens}`,
    );
  }
  // The decode agent feeds maxNewTokens - 1 generated tokens after the prompt (a prompt that is
  // itself too long is the device's to refuse).
  const context = toPresetConfig(modelName).maxPositionEmbeddings;
  const most = context - prompt.length + 1;
  if (prompt.length <= context && maxNewTokens > most) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `maxNewTokens: expected at most ${most} (a ${prompt.length}-token prompt in ${modelName}'s context of ${context} tokens), got ${maxNewTokens}`,
    );
  }

  const mock = await serveMockDevice({
    profile: profile as never,
    models: [modelName, PROJECTION_MODEL],
  });
  const device = createDeviceClient(mock.address);
  let agent: DecodeAgent | undefined;
  try {
    const info = await device.getInfo();
    progress(`device ${info.product} at ${mock.address}, protocol ${info.protocolVersion}`);
    // The decode side: an agent holding the same weights, receiving pushed caches.
    const decoder = createReferenceModel(createPresetWeights(modelName));
    const config = decoder.config;
    let started = 0;
    let firstLayerAt = 0;
    agent = await createDecodeAgent(decoder, {
      onLayer: (layer, numLayers) => {
        const now = performance.now();
        firstLayerAt ||= now;
        progress(
          `layer ${layer + 1}/${numLayers} pushed, verified and loaded by the decode agent at ${(now - started).toFixed(1)} ms`,
        );
      },
    });
    const transferId = randomUUID();
    started = performance.now();
    const pushed = await pushPrefill(device, {
      requestId: randomUUID(),
      modelId: modelName,
      promptTokenIds: prompt,
      kvFormat: { dtype, scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
      maxChunkBytes: 64 * 1024,
      pushTarget: { address: agent.address, transferId },
    });
    const received = await agent.received(transferId, { timeoutMs: 10_000 });
    const handoffMs = performance.now() - started;
    progress(
      `cache committed by the agent (${received.kvBytes} bytes) ${handoffMs.toFixed(1)} ms after the request`,
    );
    const generated = agent.generate(received, maxNewTokens);
    const monolithic = Array.from(decoder.generate(prompt, { maxNewTokens, stopOnEos: false }));
    const flops = prefillFlops(config, prompt.length);
    const h100 = mockProfile("h100");
    const h100TimeUs = simulatedTimeUs(h100, flops);
    progress(`projecting the same prompt at ${PROJECTION_MODEL} shape (synthetic KV, bf16)`);
    const projected = await startPrefill(device, {
      requestId: randomUUID(),
      modelId: PROJECTION_MODEL,
      promptTokenIds: prompt,
      kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
    }).result;
    const projectedH100Us = simulatedTimeUs(h100, mockModelFlops(PROJECTION_MODEL, prompt.length));
    return {
      deviceAddress: mock.address,
      device: info.product,
      model: modelName,
      promptTokens: prompt.length,
      kvDtype: dtype,
      kvBytes: received.kvBytes,
      layersStreamed: pushed.layersPushed,
      timeToFirstLayerMs: firstLayerAt - started,
      transferGigabytesPerSecond: received.kvBytes / received.receiveSeconds / 1e9,
      deviceTimeUs: pushed.stats.deviceTimeUs,
      energyJoules: pushed.stats.energyJoules,
      h100TimeUs,
      h100EnergyJoules: (h100.activePowerWatts * h100TimeUs) / 1e6,
      generatedText: tokenizer.decode(generated),
      generatedTokens: generated,
      monolithicTokens: monolithic,
      match:
        generated.length === monolithic.length && generated.every((t, i) => t === monolithic[i]),
      projection: {
        model: PROJECTION_MODEL,
        kvBytes: projected.transfer.kvBytes,
        transferGigabytesPerSecond: projected.transfer.gigabytesPerSecond,
        deviceTimeUs: projected.stats.deviceTimeUs,
        energyJoules: projected.stats.energyJoules,
        h100TimeUs: projectedH100Us,
        h100EnergyJoules: (h100.activePowerWatts * projectedH100Us) / 1e6,
      },
    };
  } finally {
    await agent?.close();
    await device.close();
    await mock.close({ graceMs: 1_000 });
  }
}
