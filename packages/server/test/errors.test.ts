import {
  Client,
  type ClientReadableStream,
  credentials as grpcCredentials,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import { createDeviceClient } from "@opal/client";
import { Code, type OpalError } from "@opal/core";
import type { PrefillDriver } from "@opal/driver";
import { createMockDevice } from "@opal/mock";
import {
  DeviceServiceDefinition,
  decodeStatus,
  fromGrpcStatus,
  opal,
  STATUS_DETAILS_TRAILER,
} from "@opal/protocol";
import { collectPrefill, expectOpalError } from "@opal/testing";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeviceServer, type DeviceServer } from "../src/index";
import { tinyRequest } from "./fixtures";

const v1 = opal.device.v1;

/** Sends a raw `Prefill` request message and resolves with the status the stream ended with. */
function rawPrefill(
  address: string,
  request: opal.device.v1.PrefillRequest.$Properties,
): Promise<ServiceError> {
  const client = new Client(address, grpcCredentials.createInsecure());
  const method = DeviceServiceDefinition.prefill;
  return new Promise<ServiceError>((resolve, reject) => {
    const stream: ClientReadableStream<unknown> = client.makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      new Metadata(),
      { deadline: Date.now() + 10_000 },
    );
    stream.on("data", () => reject(new Error("expected no response message")));
    stream.on("error", resolve);
    stream.on("end", () => reject(new Error("expected the stream to fail")));
  }).finally(() => client.close());
}

describe("errors over the wire (ERR-)", () => {
  let server: DeviceServer;
  beforeAll(async () => {
    // An operator's allow-list may name an address grpc-js cannot parse: that is INVALID_FIELD.
    server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
      pushTargets: ["dns://a/b"],
    });
  });
  afterAll(async () => {
    await server.shutdown({ graceMs: 0 });
  });

  it("carries reason and field violations of a validation error (UNSUPPORTED_BLOCK_SIZE)", async () => {
    const client = createDeviceClient(server.address);
    try {
      const error = await expectOpalError(
        collectPrefill(
          client.prefill(
            tinyRequest({
              kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 48 },
            }),
          ),
        ),
        Code.INVALID_ARGUMENT,
        "UNSUPPORTED_BLOCK_SIZE",
      );
      expect(error.fieldViolations.map((v) => v.field)).toEqual(["kv_format.block_size_tokens"]);
    } finally {
      await client.close();
    }
  });

  it("rejects an UNSPECIFIED enum on the wire with INVALID_FIELD naming the field (GEN-3)", async () => {
    const status = await rawPrefill(server.address, {
      requestId: "raw-unspecified",
      modelId: "opal-tiny",
      promptTokenIds: [1, 2, 3, 4],
      kvFormat: {
        dtype: v1.KvDtype.KV_DTYPE_UNSPECIFIED,
        scaleScheme: v1.KvScaleScheme.KV_SCALE_SCHEME_NONE,
        layout: v1.KvLayout.KV_LAYOUT_NHD,
        blockSizeTokens: 16,
      },
    });
    expect(status.code).toBe(Code.INVALID_ARGUMENT);
    // The rich status travels in the `grpc-status-details-bin` trailer.
    const trailer = status.metadata.get(STATUS_DETAILS_TRAILER)[0];
    expect(trailer).toBeInstanceOf(Buffer);
    const rich = decodeStatus(trailer as Buffer);
    expect(rich.code).toBe(Code.INVALID_ARGUMENT);
    expect(rich.reason).toBe("INVALID_FIELD");
    expect(rich.fieldViolations.map((v) => v.field)).toEqual(["kv_format.dtype"]);
    expect(status.details).toContain("kv_format.dtype");
  });

  it("rejects a request without kv_format with INVALID_FIELD naming it", async () => {
    const status = await rawPrefill(server.address, {
      requestId: "raw-no-format",
      modelId: "opal-tiny",
      promptTokenIds: [1, 2, 3, 4],
    });
    const error = fromGrpcStatus(status);
    expect({ code: error.code, reason: error.reason }).toEqual({
      code: Code.INVALID_ARGUMENT,
      reason: "INVALID_FIELD",
    });
    expect(error.fieldViolations.map((v) => v.field)).toEqual(["kv_format"]);
  });

  it("fails a host push to an empty or unparseable push_target.address with INVALID_FIELD, not INTERNAL", async () => {
    const client = createDeviceClient(server.address);
    try {
      for (const address of ["", "dns://a/b"]) {
        const error = await expectOpalError(
          collectPrefill(client.prefill(tinyRequest({ pushTarget: { address, transferId: "t" } }))),
          Code.INVALID_ARGUMENT,
          "INVALID_FIELD",
        );
        expect(error.fieldViolations.map((v) => v.field)).toEqual(["push_target.address"]);
      }
      // PF-1: the push target comes after the prompt and the model in stage 4.
      const push = { address: "", transferId: "" };
      await expectOpalError(
        collectPrefill(
          client.prefill(tinyRequest({ pushTarget: push, promptTokenIds: new Uint32Array() })),
        ),
        Code.INVALID_ARGUMENT,
        "PROMPT_EMPTY",
      );
      await expectOpalError(
        collectPrefill(client.prefill(tinyRequest({ pushTarget: push, modelId: "no-such-model" }))),
        Code.FAILED_PRECONDITION,
        "MODEL_NOT_LOADED",
      );
    } finally {
      await client.close();
    }
  });

  it("turns a driver's plain Error into INTERNAL 'internal error' without leaking its message", async () => {
    const secret = "db password hunter2 for tenant-b";
    const device = createMockDevice({ models: ["opal-tiny"] });
    const broken = new Proxy(device, {
      get(target, key, receiver) {
        if (key === "prefill") {
          // biome-ignore lint/correctness/useYield: fails before its first event, like a broken driver
          return async function* () {
            throw new Error(secret);
          };
        }
        if (key === "listModels") return async () => Promise.reject(new TypeError(secret));
        return Reflect.get(target, key, receiver);
      },
    }) as PrefillDriver;
    const logged: string[] = [];
    const brokenServer = await createDeviceServer(broken, {
      logger: pino({ level: "error" }, { write: (line: string) => logged.push(line) }),
    });
    const client = createDeviceClient(brokenServer.address);
    try {
      const failures: OpalError[] = [
        await expectOpalError(
          collectPrefill(client.prefill(tinyRequest())),
          Code.INTERNAL,
          "INTERNAL",
        ),
        await expectOpalError(client.listModels(), Code.INTERNAL, "INTERNAL"),
      ];
      for (const error of failures) {
        expect(error.rawMessage).toBe("internal error");
        expect(JSON.stringify({ ...error, message: error.message })).not.toContain("hunter2");
      }
      // The operator's log keeps the cause.
      expect(logged.filter((line) => line.includes("hunter2"))).toHaveLength(2);
    } finally {
      await client.close();
      await brokenServer.shutdown({ graceMs: 0 });
    }
  });
});
