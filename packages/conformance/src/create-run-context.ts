import { opal } from "@opal/protocol";
import { collectKvStream } from "./collect-kv-stream";
import type { createConformanceModel } from "./conformance-model";
import type { ConformanceOptions } from "./conformance-options";
import {
  type ConformanceContext,
  type ConformanceFeature,
  type ConformanceModelRef,
  notApplicable,
  skipTest,
} from "./conformance-test";
import { createWireClient, type WireClient, type WireClientOptions } from "./wire-client";

const v1 = opal.device.v1;

/** What every test of one run shares; `make` builds one test's context. */
export interface RunContext {
  readonly make: (signal: AbortSignal, notes: string[], opened: WireClient[]) => ConformanceContext;
  readonly features: ReadonlySet<ConformanceFeature>;
  readonly model: ConformanceModelRef | undefined;
  readonly tenantsReason: string;
}

/**
 * The run's shared state: the features the device declares (which optional suites run), the KV
 * format tests prefill in (f32 when offered, the device's own choices otherwise), unique request
 * ids, and the per-test {@link ConformanceContext} factory.
 */
export function createRunContext(
  options: ConformanceOptions,
  a: WireClient,
  b: WireClient | undefined,
  base: WireClientOptions,
  info: opal.device.v1.GetInfoResponse,
  capabilities: opal.device.v1.ICapabilities,
  model: ConformanceModelRef | undefined,
  conformanceModel: ReturnType<typeof createConformanceModel>,
  shared: Map<string, unknown>,
): RunContext {
  const f = capabilities.features ?? {};
  const features = new Set<ConformanceFeature>();
  if (Number(capabilities.maxModelBytes ?? 0) > 0) features.add("model-upload");
  if ((capabilities.retention?.maxRetentionSeconds ?? 0) > 0) features.add("retention");
  if (f.resume) features.add("resume");
  if (f.push) features.add("push");
  if (f.prefixCache) features.add("prefix-cache");
  if (f.decoderPrefix) features.add("decoder-prefix");
  if (f.seededSampling) features.add("seeded-sampling");
  const planes = capabilities.dataPlanes ?? [];
  if (planes.includes(opal.device.v1.DataPlaneKind.DATA_PLANE_KIND_SHARED_MEMORY)) {
    features.add("shared-memory");
  }
  if (options.token) features.add("auth");
  if (options.token && options.tokenB) features.add("tenants");
  const runId = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  let counter = 0;
  const vocab = model?.info.vocabSize ?? 256;
  const prefillTimeoutMs = options.prefillTimeoutMs ?? 30_000;
  const dtypes = capabilities.dtypes ?? [];
  const layouts = capabilities.layouts ?? [];
  const blocks = capabilities.blockSizesTokens ?? [];
  const pick = <T>(list: readonly T[], preferred: readonly T[]): T | undefined =>
    preferred.find((p) => list.includes(p)) ?? list[0];
  const dtype =
    pick(dtypes, [v1.KvDtype.KV_DTYPE_F32, v1.KvDtype.KV_DTYPE_BF16, v1.KvDtype.KV_DTYPE_F16]) ??
    v1.KvDtype.KV_DTYPE_F32;
  const scaleScheme =
    dtype === v1.KvDtype.KV_DTYPE_INT8
      ? ((capabilities.scaleSchemes ?? []).find(
          (s) => s !== v1.KvScaleScheme.KV_SCALE_SCHEME_NONE,
        ) ?? v1.KvScaleScheme.KV_SCALE_SCHEME_PER_TOKEN)
      : v1.KvScaleScheme.KV_SCALE_SCHEME_NONE;
  return {
    features,
    model,
    tenantsReason:
      !options.token || !options.tokenB ? "needs two tenants' tokens (--token and --token-b)" : "",
    make(signal, notes, opened) {
      const context: ConformanceContext = {
        target: options.target,
        a,
        b,
        tls: options.tls,
        token: options.token,
        receiverHost: options.receiverHost ?? "127.0.0.1",
        connect(extra = {}) {
          const client = createWireClient(options.target, { ...base, ...extra });
          opened.push(client);
          return client;
        },
        info,
        capabilities,
        model,
        conformanceModel,
        prefillTimeoutMs,
        signal,
        shared,
        requestId: (label) => `conformance-${runId}-${label}-${++counter}`,
        prompt(n, seed = 0) {
          const range = Math.min(vocab, 256);
          return Array.from(
            { length: n },
            (_, i) => (i * 37 + 11 + seed * 101 + ((i * i) % 13)) % range,
          );
        },
        prefillRequest(overrides = {}) {
          return {
            requestId: context.requestId("prefill"),
            modelId: model?.modelId ?? "",
            promptTokenIds: context.prompt(40),
            kvFormat: {
              dtype,
              layout: pick(layouts, [v1.KvLayout.KV_LAYOUT_NHD]) ?? v1.KvLayout.KV_LAYOUT_NHD,
              scaleScheme,
              blockSizeTokens: pick(blocks, [16]) ?? 16,
            },
            ...overrides,
          };
        },
        async prefill(request, call = {}) {
          const client = call.client ?? a;
          const chunkBytes = request.maxChunkBytes || capabilities.preferredChunkBytes || 1;
          const stream = client.stream("prefill", request, {
            timeoutMs: call.timeoutMs ?? prefillTimeoutMs,
            signal: call.signal ?? signal,
            ...(call.token !== undefined ? { token: call.token } : {}),
          });
          return collectKvStream(stream, {
            chunkBytes,
            ...(call.region ? { region: call.region } : {}),
          });
        },
        note: (text) => notes.push(text),
        skip: skipTest,
        notApplicable,
      };
      return context;
    },
  };
}
