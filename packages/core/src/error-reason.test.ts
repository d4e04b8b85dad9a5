import { describe, expect, it } from "vitest";
import { isReason } from "./error-reason";
import { Reason } from "./reason";

describe("isReason", () => {
  it("accepts every reason of errors.proto and nothing else", () => {
    for (const reason of Object.values(Reason)) expect(isReason(reason)).toBe(true);
    for (const other of ["", "UNSPECIFIED", "ERROR_REASON_INTERNAL", "BAD_MAGIC", "internal"])
      expect(isReason(other)).toBe(false);
  });
});
