import { describe, expect, it } from "vitest";
import { Code } from "./code";
import { invalidField } from "./invalid-field";
import { Reason } from "./reason";

describe("invalidField", () => {
  it("is INVALID_ARGUMENT INVALID_FIELD naming the field in the message and its one violation", () => {
    const error = invalidField("kv_format.block_size_tokens", "expected one of [16], got 17");
    expect(error.code).toBe(Code.INVALID_ARGUMENT);
    expect(error.reason).toBe(Reason.INVALID_FIELD);
    expect(error.message).toBe(
      "[invalid_argument] kv_format.block_size_tokens: expected one of [16], got 17",
    );
    expect(error.fieldViolations).toEqual([
      { field: "kv_format.block_size_tokens", description: "expected one of [16], got 17" },
    ]);
  });

  it("takes a more precise reason", () => {
    const error = invalidField(
      "prompt_token_ids",
      "expected at least 1 token, got 0",
      Reason.PROMPT_EMPTY,
    );
    expect(error.reason).toBe(Reason.PROMPT_EMPTY);
    expect(error.code).toBe(Code.INVALID_ARGUMENT);
  });
});
