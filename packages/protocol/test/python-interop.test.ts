import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, OpalError } from "@opal/core";
import { createPythonPeer, type PythonPeer } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { google, opal } from "../src/gen/pb.js";
import { decodeStatus, encodeStatus } from "../src/status-codec";

const here = fileURLToPath(new URL(".", import.meta.url));
const script = (name: string) => join(here, "python", name);

let peer: PythonPeer | string;
beforeAll(async () => {
  peer = await createPythonPeer();
}, 120_000);
afterAll(() => {
  if (typeof peer !== "string") peer.dispose();
});

interface Codec {
  decode(bytes: Uint8Array): unknown;
  encode(message: never): { finish(): Uint8Array };
}

function codecFor(fullName: string): Codec {
  let node: unknown = fullName.startsWith("google.") ? { google } : { opal };
  for (const part of fullName.split(".")) node = (node as Record<string, unknown>)[part];
  if (!node) throw new Error(`no generated type ${fullName}`);
  return node as Codec;
}

describe("Python grpcio/protobuf interop (Debian packages)", () => {
  it("imports, fills and serializes every message; TypeScript decodes and re-encodes each identically", async (ctx) => {
    if (typeof peer === "string") return ctx.skip(peer);
    const lines = (await peer.run(script("fill_messages.py"), ["fill"])).trim().split("\n");
    const reencoded = lines.map((line) => {
      const { type, hex } = JSON.parse(line) as { type: string; hex: string };
      const codec = codecFor(type);
      const message = codec.decode(Buffer.from(hex, "hex"));
      return JSON.stringify({
        type,
        hex: Buffer.from(codec.encode(message as never).finish()).toString("hex"),
      });
    });
    const file = join(peer.stubsDir, "reencoded.jsonl");
    writeFileSync(file, `${reencoded.join("\n")}\n`);
    const result = JSON.parse(await peer.run(script("fill_messages.py"), ["compare", file]));
    expect(result.checked).toBe(lines.length);
    expect(result.checked).toBe(result.types);
    expect(result.checked).toBeGreaterThan(50);
  });

  it("decodes a google.rpc.Status produced by Python's protobuf", async (ctx) => {
    if (typeof peer === "string") return ctx.skip(peer);
    const hex = (await peer.run(script("status_peer.py"), ["encode"])).trim();
    const error = decodeStatus(Buffer.from(hex, "hex"));
    expect(error.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(error.reason).toBe("DEVICE_BUSY");
    expect(error.metadata).toEqual({ queue_depth: "16" });
    expect(error.retryDelayMs).toBe(1250);
    expect(error.fieldViolations).toEqual([
      { field: "kv_format.block_size_tokens", description: "expected one of [16, 32], got 7" },
    ]);
    expect(error.resource).toEqual({
      resourceType: "opal.device.v1.Model",
      resourceName: "opal-tiny",
      owner: "tenant-a",
      description: "x",
    });
  });

  it("produces a Status that Python's protobuf decodes", async (ctx) => {
    if (typeof peer === "string") return ctx.skip(peer);
    const error = new OpalError(Code.INVALID_ARGUMENT, "token 300 out of range", {
      reason: "TOKEN_OUT_OF_RANGE",
      retryDelayMs: 20,
      fieldViolations: [{ field: "prompt_token_ids[3]", description: "expected < 259, got 300" }],
      resource: { resourceType: "opal.device.v1.Model", resourceName: "opal-small" },
    });
    const hex = Buffer.from(encodeStatus(error)).toString("hex");
    const decoded = JSON.parse(await peer.run(script("status_peer.py"), ["decode", hex]));
    expect(decoded).toEqual({
      code: 3,
      message: "token 300 out of range",
      errorInfo: { reason: "TOKEN_OUT_OF_RANGE", domain: "opal.device", metadata: {} },
      retryInfo: { ms: 20 },
      badRequest: [{ field: "prompt_token_ids[3]", description: "expected < 259, got 300" }],
      resourceInfo: { type: "opal.device.v1.Model", name: "opal-small", owner: "" },
    });
  });
});
