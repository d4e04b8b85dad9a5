import { Code, OpalError, Reason } from "@opal/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fromGrpcStatus, toGrpcStatus } from "./grpc-status";
import { decodeStatus, ERROR_DOMAIN, encodeStatus } from "./status-codec";

const full = new OpalError(Code.RESOURCE_EXHAUSTED, "all 4 slots busy", {
  reason: Reason.DEVICE_BUSY,
  retryDelayMs: 1250,
  metadata: { queue_depth: "16" },
  fieldViolations: [{ field: "kv_format.dtype", description: "expected one of [bf16], got fp8" }],
  resource: { resourceType: "opal.device.v1.Model", resourceName: "opal-tiny", owner: "tenant-a" },
});

describe("status codec", () => {
  it("round-trips every detail type", () => {
    const back = decodeStatus(encodeStatus(full));
    expect(back.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(back.rawMessage).toBe("all 4 slots busy");
    expect(back.reason).toBe("DEVICE_BUSY");
    expect(back.metadata).toEqual({ queue_depth: "16" });
    expect(back.retryDelayMs).toBe(1250);
    expect(back.fieldViolations).toEqual(full.fieldViolations);
    expect(back.resource).toEqual(full.resource);
  });

  it("round-trips arbitrary errors", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 16 }),
        fc.string(),
        fc.option(fc.constantFrom(...Object.values(Reason)), { nil: undefined }),
        fc.option(fc.integer({ min: 0, max: 86_400_000 }), { nil: undefined }),
        (code, message, reason, retryDelayMs) => {
          const error = new OpalError(code as Code, message, {
            ...(reason ? { reason } : {}),
            ...(retryDelayMs !== undefined ? { retryDelayMs } : {}),
          });
          const back = decodeStatus(encodeStatus(error));
          expect([back.code, back.rawMessage, back.reason, back.retryDelayMs]).toEqual([
            code,
            message,
            reason ?? "",
            retryDelayMs,
          ]);
        },
      ),
    );
  });

  it("decodes only the protocol's reasons: another one (a broken or newer device) is dropped, the code and details stay", () => {
    const foreign = new OpalError(Code.INVALID_ARGUMENT, "bad", {
      // What a device outside errors.proto sends; OPAL's own code cannot produce it.
      reason: "IRIS_PROMPT_EMPTY" as Reason,
      fieldViolations: [{ field: "prompt_token_ids", description: "empty" }],
    });
    const back = decodeStatus(encodeStatus(foreign));
    expect(back.reason).toBe("");
    expect(back.code).toBe(Code.INVALID_ARGUMENT);
    expect(back.fieldViolations).toEqual(foreign.fieldViolations);
  });

  it("rejects bytes that are not a Status with a typed error, never a crash", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        try {
          decodeStatus(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(OpalError);
          expect((error as OpalError).reason).toBe("INVALID_STATUS_DETAILS");
        }
      }),
    );
    expect(() => decodeStatus(new Uint8Array(70_000))).toThrow(/exceed the 65536-byte limit/);
  });

  it("carries the domain and the details through grpc-js metadata", () => {
    const status = toGrpcStatus(full);
    expect(status.code).toBe(Code.RESOURCE_EXHAUSTED);
    const back = fromGrpcStatus(status);
    expect(back.reason).toBe("DEVICE_BUSY");
    expect(back.retryDelayMs).toBe(1250);
    expect(ERROR_DOMAIN).toBe("opal.device");
  });

  it("hides the message of unexpected errors and keeps plain statuses", () => {
    const status = toGrpcStatus(new Error("secret path /etc/shadow"));
    expect(status.code).toBe(Code.INTERNAL);
    expect(status.details).toBe("internal error");
    const plain = fromGrpcStatus({ code: Code.UNAVAILABLE, details: "connection refused" });
    expect(plain.message).toBe("[unavailable] connection refused");
  });
});
