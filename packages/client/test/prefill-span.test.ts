import type { PrefillRequest } from "@opal/driver";
import { createMockDevice } from "@opal/mock";
import { trace } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPrefill } from "../src/start-prefill";

const exporter = new InMemorySpanExporter();
beforeAll(() => {
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
});
afterAll(() => trace.disable());

const request = (requestId: string): PrefillRequest => ({
  requestId,
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.from({ length: 33 }, (_, i) => i + 1),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 400,
  retentionSeconds: 10,
});

describe("OpenTelemetry spans of a prefill", () => {
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
});
