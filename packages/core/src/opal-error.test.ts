import { describe, expect, it } from "vitest";
import { Code, codeName, isCode } from "./code";
import { isOpalError, OpalError } from "./opal-error";

describe("OpalError", () => {
  it("leads its message with the code name and keeps the details", () => {
    const error = new OpalError(
      Code.INVALID_ARGUMENT,
      "layer 33 out of range (model has 32 layers)",
      {
        reason: "TOKEN_OUT_OF_RANGE",
        fieldViolations: [{ field: "layer", description: "expected < 32, got 33" }],
      },
    );
    expect(error.message).toBe("[invalid_argument] layer 33 out of range (model has 32 layers)");
    expect(error.rawMessage).toBe("layer 33 out of range (model has 32 layers)");
    expect(error.reason).toBe("TOKEN_OUT_OF_RANGE");
    expect(error.fieldViolations).toHaveLength(1);
    expect(isOpalError(error, Code.INVALID_ARGUMENT)).toBe(true);
    expect(isOpalError(error, Code.INTERNAL)).toBe(false);
  });

  it("converts foreign errors by their kind", () => {
    expect(OpalError.from(new DOMException("stop", "AbortError")).code).toBe(Code.CANCELLED);
    expect(OpalError.from(new DOMException("late", "TimeoutError")).code).toBe(
      Code.DEADLINE_EXCEEDED,
    );
    expect(OpalError.from(Object.assign(new Error("gone"), { code: 14 })).code).toBe(
      Code.UNAVAILABLE,
    );
    const plain = OpalError.from("boom", Code.INTERNAL);
    expect(plain.code).toBe(Code.INTERNAL);
    expect(plain.cause).toBe("boom");
    const same = new OpalError(Code.NOT_FOUND, "x");
    expect(OpalError.from(same)).toBe(same);
  });

  it("names codes the way gRPC does", () => {
    expect(codeName(Code.RESOURCE_EXHAUSTED)).toBe("resource_exhausted");
    expect(codeName(99)).toBe("code_99");
    expect(isCode(16)).toBe(true);
    expect(isCode(17)).toBe(false);
  });
});
