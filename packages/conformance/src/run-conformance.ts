import { setMaxListeners } from "node:events";
import { Code, OpalError } from "@opal/core";
import { opal, PROTOCOL_VERSION } from "@opal/protocol";
import { collectKvStream } from "./collect-kv-stream";
import { createConformanceModel, toWeightChunks } from "./conformance-model";
import type { ConformanceReport, ConformanceResult } from "./conformance-report";
import {
  type ConformanceContext,
  type ConformanceFeature,
  type ConformanceModelRef,
  type ConformanceTest,
  FAILURE_REASON,
  formatTag,
  SKIP_REASON,
  skipTest,
} from "./conformance-test";
import { toConformanceTests } from "./suites/index";
import { toCapabilitiesJson, toInfoJson } from "./to-capabilities-json";
import {
  createWireClient,
  type WireClient,
  type WireClientOptions,
  type WireTlsOptions,
} from "./wire-client";
import { describeWireStatus, toWireStatus } from "./wire-status";

const v1 = opal.device.v1;

/** Version of this suite. */
export const SUITE_VERSION = "0.1.0";

/** Options of {@link runConformance}; only `target` is required. */
export interface ConformanceOptions {
  /** `host:port` of the device under test. */
  readonly target: string;
  /** Bearer token of tenant A; default none. */
  readonly token?: string;
  /** Bearer token of a second tenant, for the isolation tests; default none (they are skipped). */
  readonly tokenB?: string;
  /** TLS towards the device; default plaintext. */
  readonly tls?: WireTlsOptions;
  /** A model already on the device to prefill with, instead of uploading the conformance model. */
  readonly modelId?: string;
  /** `modelId` holds the conformance weights (seeded `opal-tiny`); default false. */
  readonly conformanceWeights?: boolean;
  /** Run only tests whose id matches; default all. */
  readonly focus?: RegExp;
  /** Leave out tests whose id matches; default none. */
  readonly skip?: RegExp;
  /** Ids expected to fail (see docs/guides/conformance.md); default none. */
  readonly knownFailing?: readonly string[];
  /** Time limit of one test, in ms; default 60,000. */
  readonly testTimeoutMs?: number;
  /** Deadline of one prefill, in ms; default 30,000. */
  readonly prefillTimeoutMs?: number;
  /**
   * Interface the suite's push receiver binds to; the device must reach it there. Default
   * 127.0.0.1 (a device on the same machine); use an address of this machine for a remote device.
   */
  readonly receiverHost?: string;
  /** The tests; default every suite of `toConformanceTests()`. */
  readonly tests?: readonly ConformanceTest[];
  /** Called after each test, e.g. to print progress. */
  readonly onResult?: (result: ConformanceResult) => void;
}

/**
 * Runs the conformance suite against the device at `options.target`, test by test, sequentially,
 * and resolves with the report (it rejects only for invalid options). The device is seen only
 * through the wire. The suite uploads the conformance model when the device accepts uploads and
 * unloads it at the end.
 */
export async function runConformance(options: ConformanceOptions): Promise<ConformanceReport> {
  const started = Date.now();
  const all = options.tests ?? toConformanceTests();
  const ids = new Set(all.map((t) => t.id));
  if (ids.size !== all.length) throw new OpalError(Code.INVALID_ARGUMENT, "duplicate test ids");
  const known = new Set(options.knownFailing ?? []);
  const problems: string[] = [];
  for (const id of known) {
    if (!ids.has(id))
      problems.push(
        `known-failing list names ${JSON.stringify(id)}, which is not a test id (stale entry?)`,
      );
  }
  const selected = all.filter(
    (t) => (!options.focus || options.focus.test(t.id)) && !options.skip?.test(t.id),
  );
  const base: WireClientOptions = {
    ...(options.token ? { token: options.token } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
  };
  const a = createWireClient(options.target, base);
  const b = options.tokenB
    ? createWireClient(options.target, { ...base, token: options.tokenB })
    : undefined;
  const results: ConformanceResult[] = [];
  let info: opal.device.v1.GetInfoResponse | undefined;
  let capabilities: opal.device.v1.ICapabilities | undefined;
  let model: ConformanceModelRef | undefined;
  try {
    try {
      info = await a.unary("getInfo", {}, { timeoutMs: 10_000 });
      capabilities =
        (await a.unary("getCapabilities", {}, { timeoutMs: 10_000 })).capabilities ?? {};
    } catch (error) {
      const status = toWireStatus(error);
      problems.push(
        `cannot read the device's GetInfo/GetCapabilities: ${status ? describeWireStatus(status) : (error as Error).message}`,
      );
    }
    if (info && capabilities) {
      const conformanceModel = createConformanceModel();
      const shared = new Map<string, unknown>();
      // Only runs that need a model upload one (a focused run of identity tests stays light).
      const needsModel = selected.some(
        (t) => (t.needs?.length ?? 0) > 0 || t.id.startsWith("models."),
      );
      const setup = needsModel
        ? await setupModel(a, capabilities, conformanceModel, options, shared)
        : { problem: "no selected test needs a model" };
      model = setup.model;
      const run = makeRunContext(
        options,
        a,
        b,
        base,
        info,
        capabilities,
        model,
        conformanceModel,
        shared,
      );
      for (const test of selected) {
        const result = await runOne(test, run, known.has(test.id), setup.problem, options);
        results.push(result);
        options.onResult?.(result);
      }
      if (model?.uploaded) {
        await a
          .unary("unloadModel", { modelId: model.modelId }, { timeoutMs: 10_000 })
          .catch(() => {});
      }
    }
  } finally {
    a.close();
    b?.close();
  }
  const failed = results.filter((r) => r.status === "failed" && !r.knownFailing).length;
  const knownFailing = results.filter((r) => r.status === "failed" && r.knownFailing).length;
  const unexpected = results.filter((r) => r.status === "passed" && r.knownFailing);
  for (const r of unexpected) {
    problems.push(`${r.id} is listed as known-failing but passed: remove it from the list`);
  }
  return {
    suiteVersion: SUITE_VERSION,
    protocolVersion: PROTOCOL_VERSION,
    target: options.target,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    ...(info ? { info: toInfoJson(info) } : {}),
    ...(capabilities ? { capabilities: toCapabilitiesJson(capabilities) } : {}),
    ...(model
      ? {
          model: {
            modelId: model.modelId,
            conformanceWeights: model.conformanceWeights,
            uploaded: model.uploaded,
          },
        }
      : {}),
    results,
    summary: {
      total: results.length,
      passed: results.filter((r) => r.status === "passed").length,
      failed,
      skipped: results.filter((r) => r.status === "skipped").length,
      knownFailing,
      unexpectedPasses: unexpected.length,
    },
    problems,
    ok: failed === 0 && problems.length === 0,
  };
}

/** The model id the suite uploads the conformance weights under. */
export function toConformanceModelId(weightsSha256: string): string {
  return `opal-conformance/opal-tiny-${weightsSha256.slice(0, 12)}`;
}

interface RunContext {
  readonly make: (signal: AbortSignal, notes: string[], opened: WireClient[]) => ConformanceContext;
  readonly features: ReadonlySet<ConformanceFeature>;
  readonly model: ConformanceModelRef | undefined;
  readonly tenantsReason: string;
}

function makeRunContext(
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
      };
      return context;
    },
  };
}

async function setupModel(
  a: WireClient,
  capabilities: opal.device.v1.ICapabilities,
  conformanceModel: ReturnType<typeof createConformanceModel>,
  options: ConformanceOptions,
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
          conformanceWeights: options.conformanceWeights ?? false,
          uploaded: false,
        },
        problem: "",
      };
    }
    const maxModelBytes = Number(capabilities.maxModelBytes ?? 0);
    if (maxModelBytes === 0) {
      return {
        problem:
          "the device accepts no model uploads (max_model_bytes = 0) and no preloaded model is configured (--config: model)",
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

async function runOne(
  test: ConformanceTest,
  run: RunContext,
  knownFailing: boolean,
  modelProblem: string,
  options: ConformanceOptions,
): Promise<ConformanceResult> {
  const started = Date.now();
  const notes: string[] = [];
  const result = (status: ConformanceResult["status"], message?: string): ConformanceResult => ({
    id: test.id,
    title: test.title,
    tag: formatTag(test.tag),
    spec: test.spec,
    status,
    ...(message ? { message } : {}),
    notes,
    durationMs: Date.now() - started,
    knownFailing,
  });
  if (test.tag.kind === "optional" && !run.features.has(test.tag.feature)) {
    const why =
      test.tag.feature === "tenants" || test.tag.feature === "auth"
        ? run.tenantsReason || "needs --token"
        : `the device does not declare ${test.tag.feature}`;
    return result("skipped", why);
  }
  if (test.needs?.includes("model") && !run.model) return result("skipped", modelProblem);
  if (test.needs?.includes("conformance-weights") && !run.model?.conformanceWeights) {
    return result(
      "skipped",
      run.model
        ? `model ${run.model.modelId} is not declared to hold the conformance weights (--config: conformanceWeights)`
        : modelProblem,
    );
  }
  const controller = new AbortController();
  // Saturation tests pass the test's signal to dozens of calls.
  setMaxListeners(0, controller.signal);
  const opened: WireClient[] = [];
  const timeoutMs = test.timeoutMs ?? options.testTimeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    const context = run.make(controller.signal, notes, opened);
    await Promise.race([
      test.run(context),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          controller.abort();
          reject(
            new OpalError(Code.DEADLINE_EXCEEDED, `timed out after ${timeoutMs} ms`, {
              reason: FAILURE_REASON,
            }),
          );
        }, timeoutMs);
      }),
    ]);
    return result("passed");
  } catch (error) {
    if (error instanceof OpalError && error.reason === SKIP_REASON)
      return result("skipped", error.rawMessage);
    if (error instanceof OpalError && error.reason === FAILURE_REASON)
      return result("failed", error.rawMessage);
    const status = toWireStatus(error);
    return result(
      "failed",
      status
        ? `unexpected device error: ${describeWireStatus(status)}`
        : `unexpected error: ${(error as Error)?.message ?? String(error)}`,
    );
  } finally {
    clearTimeout(timer);
    controller.abort();
    for (const client of opened) client.close();
  }
}
