import { KvFormatError } from "./kv-format-error";

/**
 * A value as vLLM's block hashing serializes it, in Python terms: a safe integer (`int`), a string
 * (`str`), bytes (`bytes`), `null` (`None`) or an array (a `tuple`). The hashed object of a block
 * is `[parentHash, [token ids], extraKeys | null]`.
 */
export type BlockHashValue = number | string | Uint8Array | null | readonly BlockHashValue[];

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Checks that `value` is a {@link BlockHashValue} every serializer encodes exactly as Python
 * does: integers must be safe integers and strings well-formed UTF-16 (no lone surrogates, which
 * Python would encode differently from JavaScript).
 *
 * @throws KvFormatError OUT_OF_RANGE naming the offending path.
 */
export function checkBlockHashValue(value: BlockHashValue, path = "value"): void {
  if (value === null || value instanceof Uint8Array) return;
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value))
      throw new KvFormatError("OUT_OF_RANGE", `${path} is ${value}, expected a safe integer`, {
        field: path,
      });
    return;
  }
  if (typeof value === "string") {
    if (LONE_SURROGATE.test(value))
      throw new KvFormatError(
        "OUT_OF_RANGE",
        `${path} has a lone surrogate, expected a well-formed string`,
        { field: path },
      );
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      checkBlockHashValue(item, `${path}[${i}]`);
    });
    return;
  }
  throw new KvFormatError(
    "OUT_OF_RANGE",
    `${path} is ${typeof value}, expected an integer, string, Uint8Array, null or array`,
    { field: path },
  );
}
