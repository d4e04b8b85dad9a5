import { readFile } from "node:fs/promises";
import { Code, OpalError } from "@opal/core";
import { parse as parseYaml } from "yaml";

/** A vendor's `--config` file (YAML or JSON); every field is optional. */
export interface VendorConfig {
  /** A model already loaded on the device to prefill with (for devices without uploads). */
  readonly model?: string;
  /** True when `model` holds the conformance weights (seeded `opal-tiny`), so KV is checked against the reference. */
  readonly conformanceWeights?: boolean;
  /**
   * A local Hugging Face checkpoint folder with the weights of `model` (the `--checkpoint` flag
   * wins): the suite checks the device's KV against the reference computed from it.
   */
  readonly checkpoint?: string;
  /** Tenant A's bearer token (the `--token` flag wins). */
  readonly token?: string;
  /** Tenant B's bearer token (the `--token-b` flag wins). */
  readonly tokenB?: string;
  /** Deadline of one prefill, in ms. */
  readonly prefillTimeoutMs?: number;
  /** Time limit of one test, in ms. */
  readonly testTimeoutMs?: number;
  /** Known-failing test ids (added to `--known-failing`). */
  readonly knownFailing?: readonly string[];
}

const FIELDS: Readonly<Record<keyof VendorConfig, string>> = {
  model: "string",
  conformanceWeights: "boolean",
  checkpoint: "string",
  token: "string",
  tokenB: "string",
  prefillTimeoutMs: "number",
  testTimeoutMs: "number",
  knownFailing: "array",
};

/** Validates a parsed vendor config; INVALID_ARGUMENT naming the first bad key. */
export function toVendorConfig(value: unknown, source = "config"): VendorConfig {
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `${source} must be a mapping (got ${JSON.stringify(value)})`,
    );
  }
  for (const [key, v] of Object.entries(value)) {
    const type = FIELDS[key as keyof VendorConfig];
    if (!type)
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `${source}: unknown key ${JSON.stringify(key)} (expected one of ${Object.keys(FIELDS).join(", ")})`,
      );
    const ok =
      type === "array"
        ? Array.isArray(v) && v.every((x) => typeof x === "string")
        : typeof v === type;
    if (!ok)
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `${source}: ${key} must be a ${type === "array" ? "list of strings" : type} (got ${JSON.stringify(v)})`,
      );
  }
  return value as VendorConfig;
}

/** Reads and validates a vendor config file. */
export async function readVendorConfig(path: string): Promise<VendorConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `cannot read config ${path}: ${(error as Error).message}`,
    );
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (error) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `config ${path} is not valid YAML/JSON: ${(error as Error).message}`,
    );
  }
  return toVendorConfig(value, path);
}
