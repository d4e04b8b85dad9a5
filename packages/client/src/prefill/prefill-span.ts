import type { OpalError } from "@opal/core";
import type { PrefillRequest, PrefillStats } from "@opal/driver";
import { type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";

const tracer = () => trace.getTracer("@opal/client", "0.1.0");

/**
 * Starts the `opal.prefill` span of one prefill (a no-op unless the host application registered an
 * OpenTelemetry SDK). Attributes follow the `opal.*` namespace; see docs/guides/integrator.md.
 */
export function startPrefillSpan(request: PrefillRequest, mode: "pull" | "push"): Span {
  return tracer().startSpan("opal.prefill", {
    kind: SpanKind.CLIENT,
    attributes: {
      "opal.request_id": request.requestId,
      "opal.model_id": request.modelId,
      "opal.prompt_tokens": request.promptTokenIds.length,
      "opal.kv.dtype": request.kvFormat.dtype,
      "opal.kv.layout": request.kvFormat.layout,
      "opal.handoff": mode,
    },
  });
}

/** Records a failed attempt (the run may still succeed after it). */
export function recordAttemptFailure(
  span: Span,
  attempt: number,
  error: OpalError,
  action: "resume" | "retry" | "fail",
): void {
  span.addEvent("opal.attempt_failed", {
    "opal.attempt": attempt,
    "rpc.grpc.status_code": error.code,
    "opal.error.reason": error.reason,
    "opal.recovery": action,
  });
}

/** Ends the span with the device's statistics and the client's transfer figures. */
export function endPrefillSpan(
  span: Span,
  stats: PrefillStats,
  transfer: {
    kvBytes: number;
    gigabytesPerSecond?: number;
    timeToFirstLayerMs?: number;
    attempts: number;
    resumes?: number;
  },
): void {
  span.setAttributes({
    "opal.kv.bytes": transfer.kvBytes,
    "opal.device_time_us": stats.deviceTimeUs,
    "opal.queue_time_us": stats.queueTimeUs,
    "opal.energy_joules": stats.energyJoules,
    "opal.prefix_cache_hit_tokens": stats.prefixCacheHitTokens,
    "opal.decoder_prefix_tokens": stats.decoderPrefixTokens,
    "opal.attempts": transfer.attempts,
    "opal.resumes": transfer.resumes ?? 0,
    ...(transfer.gigabytesPerSecond !== undefined
      ? { "opal.transfer.gigabytes_per_second": transfer.gigabytesPerSecond }
      : {}),
    ...(transfer.timeToFirstLayerMs !== undefined
      ? { "opal.time_to_first_layer_ms": transfer.timeToFirstLayerMs }
      : {}),
  });
  span.setStatus({ code: SpanStatusCode.OK });
  span.end();
}

/** Ends the span as failed. */
export function failPrefillSpan(span: Span, error: OpalError): void {
  span.setAttributes({ "rpc.grpc.status_code": error.code, "opal.error.reason": error.reason });
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  span.end();
}
