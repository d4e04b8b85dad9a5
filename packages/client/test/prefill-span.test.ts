import { Code, OpalError } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import { createMockDevice } from "@opal/mock";
import { trace } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { pushPrefill } from "../src/prefill/push-prefill";
import { startPrefill } from "../src/prefill/start-prefill";

const exporter = new InMemorySpanExporter();

const request = (requestId: string): PrefillRequest => ({
  requestId,
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.from({ length: 33 }, (_, i) => i + 1),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 400,
  retentionSeconds: 10,
});

describe("OpenTelemetry spans of a prefill", () => {
  // The global provider is registered for these tests only and removed after them, so no other
  // test (here or in this worker) sees it.
  let provider: BasicTracerProvider;
  beforeAll(() => {
    provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    expect(trace.setGlobalTracerProvider(provider)).toBe(true);
  });
  afterAll(async () => {
    trace.disable();
    await provider.shutdown();
    exporter.reset();
  });

  it("records the request, transfer and device figures on an `opal.prefill` span", async () => {
    const device = createMockDevice({ models: ["opal-tiny"], profile: "iris-nova" });
    const outcome = await startPrefill(device, request("span-1")).result;
    const span = exporter
      .getFinishedSpans()
      .find((s) => s.attributes["opal.request_id"] === "span-1")!;
    expect(span.name).toBe("opal.prefill");
    expect(span.attributes).toMatchObject({
      "opal.model_id": "opal-tiny",
      "opal.prompt_tokens": 33,
      "opal.kv.bytes": outcome.transfer.kvBytes,
      "opal.attempts": 1,
      "opal.energy_joules": outcome.stats.energyJoules,
    });
    expect(span.attributes["opal.transfer.gigabytes_per_second"]).toBeGreaterThan(0);
    expect(span.status.code).toBe(1);
  });

  it("records a resume as an event and a final failure as an error status", async () => {
    const flaky = createMockDevice({ models: ["opal-tiny"], faults: { abortAfterChunks: 2 } });
    await startPrefill(flaky, request("span-2")).result;
    const resumed = exporter
      .getFinishedSpans()
      .find((s) => s.attributes["opal.request_id"] === "span-2")!;
    expect(resumed.events.map((e) => [e.name, e.attributes?.["opal.recovery"]])).toEqual([
      ["opal.attempt_failed", "resume"],
    ]);
    const broken = createMockDevice({
      models: ["opal-tiny"],
      faults: { errors: { Prefill: { rate: 1 } } },
    });
    await startPrefill(broken, request("span-3"), {
      retry: { maxAttempts: 2, initialBackoffMs: 1 },
    }).result.catch(() => {});
    const failed = exporter
      .getFinishedSpans()
      .find((s) => s.attributes["opal.request_id"] === "span-3")!;
    expect(failed.status.code).toBe(2);
    expect(failed.attributes["opal.error.reason"]).toBe("DEVICE_FAULT");
    expect(failed.events).toHaveLength(1);
  });

  it("ends the span of a push whose deadline passes during a backoff", async () => {
    const broken = createMockDevice({
      models: ["opal-tiny"],
      faults: { errors: { Prefill: { rate: 1 } } },
    });
    const random = vi.spyOn(Math, "random").mockReturnValue(1);
    try {
      const push = pushPrefill(
        broken,
        {
          ...request("span-4"),
          pushTarget: { address: "127.0.0.1:1", transferId: "t-4", authorizationToken: "" },
        },
        { timeoutMs: 200, retry: { initialBackoffMs: 10_000, maxBackoffMs: 10_000 } },
      );
      await expect(push).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    } finally {
      random.mockRestore();
    }
    const span = exporter
      .getFinishedSpans()
      .find((s) => s.attributes["opal.request_id"] === "span-4");
    expect(span?.status.code).toBe(2);
    expect(span?.attributes["rpc.grpc.status_code"]).toBe(Code.DEADLINE_EXCEEDED);
    await broken.close();
  });
});

describe("without an OpenTelemetry provider (the @opentelemetry/api global is a no-op)", () => {
  beforeAll(() => trace.disable());

  it("the global tracer records nothing", () => {
    const span = trace.getTracer("@opal/client").startSpan("probe");
    expect(span.isRecording()).toBe(false);
    expect(span.spanContext().traceId).toBe("00000000000000000000000000000000");
    span.end();
  });

  it("a prefill completes, a failed one fails with the device's error, and no span is exported", async () => {
    const spansBefore = exporter.getFinishedSpans().length;
    const device = createMockDevice({ models: ["opal-tiny"], profile: "iris-nova" });
    const run = startPrefill(device, request("no-otel-1"));
    const layers: number[] = [];
    for await (const ready of run) layers.push(ready.layer);
    const outcome = await run.result;
    expect(layers).toEqual(Array.from({ length: outcome.descriptor.numLayers }, (_, i) => i));
    expect(outcome.transfer.attempts).toBe(1);
    expect(outcome.stats.promptTokens).toBe(33);

    // A resumed stream records an attempt failure on the (no-op) span.
    const flaky = createMockDevice({ models: ["opal-tiny"], faults: { abortAfterChunks: 2 } });
    const resumed = await startPrefill(flaky, request("no-otel-2")).result;
    expect(resumed.transfer.resumes).toBe(1);

    const broken = createMockDevice({
      models: ["opal-tiny"],
      faults: { errors: { Prefill: { rate: 1 } } },
    });
    const error = await startPrefill(broken, request("no-otel-3"), {
      retry: { maxAttempts: 2, initialBackoffMs: 1 },
    }).result.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OpalError);
    expect({
      code: (error as OpalError).code,
      reason: (error as OpalError).reason,
      message: (error as OpalError).rawMessage,
    }).toEqual({
      code: Code.UNAVAILABLE,
      reason: "DEVICE_FAULT",
      message: "injected fault: Prefill failed",
    });
    expect(exporter.getFinishedSpans()).toHaveLength(spansBefore);
    await Promise.all([device.close(), flaky.close(), broken.close()]);
  });
});
