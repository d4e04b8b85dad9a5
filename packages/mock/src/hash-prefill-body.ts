import { createHash } from "node:crypto";
import type { PrefillRequest } from "@opal/driver";

/** The request without its id, canonically: equal bodies hash equal. */
export function hashBody(request: PrefillRequest): string {
  const { requestId: _, promptTokenIds, ...rest } = request;
  return createHash("sha256")
    .update(canonicalJson({ ...rest, promptTokenIds: Array.from(promptTokenIds) }))
    .digest("hex");
}

/** JSON with object keys sorted at every depth and byte arrays as hex, for hashing. */
function canonicalJson(value: unknown): string {
  if (value instanceof Uint8Array) return JSON.stringify(Buffer.from(value).toString("hex"));
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
