import { Metadata } from "@grpc/grpc-js";
import { Code, OpalError, Reason } from "@opal/core";
import { google, STATUS_DETAILS_TRAILER } from "@opal/protocol";
import { type Mutant, mapPrefill, mapPrefillErrors, optionsOf } from "./mutant";
import { overrideDriver } from "./mutant-device";

const MIB = 1024 * 1024;

const invalid = (field: string, reason: Reason, description: string) =>
  new OpalError(Code.INVALID_ARGUMENT, `${field}: ${description}`, {
    reason,
    fieldViolations: [{ field, description }],
  });

/** Mutants of error statuses, validation order and declared capabilities. */
export const ERROR_MUTANTS: readonly Mutant[] = [
  {
    name: "uses its own reason names (IRIS_…) in ErrorInfo",
    mutation: (mock) =>
      mapPrefillErrors(mock, (e) => ({
        ...optionsOf(e),
        // A broken device's own names: deliberately outside the typed reasons.
        reason: `IRIS_${e.reason}` as Reason,
      })),
    fails: ["validation.prompt-empty", "validation.token-out-of-range"],
    cites: /ERR-3/,
  },
  {
    name: "sends INVALID_ARGUMENT without a BadRequest",
    mutation: (mock) =>
      mapPrefillErrors(mock, (e) =>
        e.code === Code.INVALID_ARGUMENT ? { ...optionsOf(e), fieldViolations: [] } : undefined,
      ),
    fails: ["validation.prompt-empty", "validation.block-size-unsupported"],
    cites: /ERR-5/,
  },
  {
    name: "sends PROMPT_TOO_LONG as OUT_OF_RANGE",
    mutation: (mock) =>
      mapPrefillErrors(mock, (e) =>
        e.reason === Reason.PROMPT_TOO_LONG
          ? { ...optionsOf(e), code: Code.OUT_OF_RANGE }
          : undefined,
      ),
    fails: ["validation.prompt-too-long"],
    cites: /PF-1/,
  },
  {
    name: "sends DEVICE_BUSY without RetryInfo",
    mutation: (mock) =>
      mapPrefillErrors(mock, (e) => {
        if (e.reason !== Reason.DEVICE_BUSY) return undefined;
        const { retryDelayMs: _, ...options } = optionsOf(e);
        return options;
      }),
    fails: ["concurrency.device-busy"],
    cites: /ERR-4/,
  },
  {
    name: "sends RetryInfo with RETENTION_LIMIT_EXCEEDED for a value above the maximum",
    mutation: (mock) =>
      mapPrefillErrors(mock, (e) =>
        e.reason === Reason.RETENTION_LIMIT_EXCEEDED
          ? { ...optionsOf(e), retryDelayMs: 1000 }
          : undefined,
      ),
    fails: ["validation.retention-limit"],
    cites: /ERR-4/,
  },
  {
    name: "sends plain statuses without grpc-status-details-bin (wire proxy strips it)",
    proxy: () => ({ status: ({ code, details }) => ({ code, details, metadata: new Metadata() }) }),
    fails: ["validation.prompt-empty", "errors.other-rpcs"],
    cites: /ERR-2/,
  },
  {
    name: "sends ErrorInfo with its own domain (wire proxy rewrites it)",
    proxy: () => ({
      status(status) {
        const bytes = status.metadata.get(STATUS_DETAILS_TRAILER)[0];
        if (!(bytes instanceof Uint8Array)) return status;
        const rpc = google.rpc.Status.decode(bytes);
        for (const detail of rpc.details) {
          if (detail.type_url !== "type.googleapis.com/google.rpc.ErrorInfo") continue;
          const info = google.rpc.ErrorInfo.decode(detail.value ?? new Uint8Array());
          detail.value = google.rpc.ErrorInfo.encode({
            ...info,
            domain: "iris.example.com",
          }).finish();
        }
        const metadata = new Metadata();
        metadata.set(STATUS_DETAILS_TRAILER, Buffer.from(google.rpc.Status.encode(rpc).finish()));
        return { ...status, metadata };
      },
    }),
    fails: ["validation.prompt-empty", "validation.model-not-loaded"],
    cites: /ERR-3: ErrorInfo.domain/,
  },
  {
    name: "checks the block size before the prompt's tokens",
    mutation: (mock) =>
      mapPrefill(mock, async function* (events, r) {
        const { blockSizesTokens } = await mock.getCapabilities();
        if (r.kvFormat && !blockSizesTokens.includes(r.kvFormat.blockSizeTokens)) {
          throw invalid("kv_format.block_size_tokens", Reason.UNSUPPORTED_BLOCK_SIZE, "undeclared");
        }
        yield* events;
      }),
    fails: ["validation.order"],
    cites: /PF-1/,
  },
  {
    name: "declares fp8_e5m2 but rejects it",
    mutation: (mock) =>
      mapPrefill(mock, async function* (events, r) {
        if (r.kvFormat?.dtype === "fp8_e5m2")
          throw invalid("kv_format.dtype", Reason.UNSUPPORTED_DTYPE, "fp8_e5m2 is not supported");
        yield* events;
      }),
    fails: ["prefill.formats"],
    cites: /UNSUPPORTED_DTYPE/,
  },
  {
    name: "declares resume but rejects resume_from",
    mutation: (mock) =>
      overrideDriver(mock, {
        fetchKv: async function* (r, o) {
          if (r.resumeFrom) {
            throw new OpalError(Code.UNIMPLEMENTED, "resume is not supported", {
              reason: Reason.UNSUPPORTED_FEATURE,
              fieldViolations: [{ field: "resume_from", description: "not supported" }],
            });
          }
          yield* mock.fetchKv(r, o);
        },
      }),
    fails: ["retention.resume"],
    cites: /UNSUPPORTED_FEATURE/,
  },
  {
    name: "declares max_chunk_bytes 4 MiB but rejects more than 1 MiB",
    mutation: (mock) =>
      mapPrefill(mock, async function* (events, r) {
        if ((r.maxChunkBytes ?? 0) > MIB)
          throw invalid(
            "max_chunk_bytes",
            Reason.INVALID_FIELD,
            `at most ${MIB}, got ${r.maxChunkBytes}`,
          );
        yield* events;
      }),
    fails: ["stream.max-chunk-size"],
    cites: /ID-7/,
  },
];
