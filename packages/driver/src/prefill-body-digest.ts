import { createHash } from "node:crypto";
import type { ReceivedPrefillRequest } from "./gen/messages";

/**
 * The identity of a prefill request's body (`PF-5`..`PF-7`, docs/protocol/prefill.md §3): SHA-256
 * (lower-case hex) of the request without `request_id` and `priority` (which orders admission,
 * not what is computed; nor `data_plane`, which a driver request never carries), in a canonical form where a field equal to its zero value counts as
 * absent (0, "", false, an empty list, an empty sub-message). Takes a request as received (a
 * `PrefillRequest` is one too). Two requests have the same digest
 * exactly when the spec calls their bodies the same. The server host and the mock both use this
 * one definition.
 */
export function prefillBodyDigest(request: ReceivedPrefillRequest): string {
  const { requestId: _id, priority: _priority, ...body } = request;
  return createHash("sha256")
    .update(canonicalJson(body) ?? "{}")
    .digest("hex");
}

/**
 * JSON with object keys sorted at every depth, byte arrays as hex strings, typed number arrays as
 * lists, and zero values dropped; undefined for a zero value itself.
 */
function canonicalJson(value: unknown): string | undefined {
  if (value === undefined || value === null || value === 0 || value === "" || value === false)
    return undefined;
  if (value instanceof Uint8Array)
    return value.byteLength === 0 ? undefined : JSON.stringify(Buffer.from(value).toString("hex"));
  if (ArrayBuffer.isView(value)) return canonicalJson(Array.from(value as Uint32Array));
  if (Array.isArray(value)) {
    if (value.length === 0) return undefined;
    // A list element keeps its place even when it is a zero value.
    return `[${value.map((v) => canonicalJson(v) ?? zeroOf(v)).join(",")}]`;
  }
  if (typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => [k, canonicalJson(v)] as const)
      .filter((e): e is readonly [string, string] => e[1] !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (entries.length === 0) return undefined;
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The canonical form of a zero value inside a list. */
function zeroOf(value: unknown): string {
  if (value instanceof Uint8Array) return '""';
  if (value !== null && typeof value === "object") return "{}";
  return JSON.stringify(value ?? 0);
}
