import { type Code, OpalError } from "@opal/core";
import { expect } from "vitest";

/** Expects `promise` to reject with an OpalError of `code` and `reason`. */
export async function expectOpalError(
  promise: Promise<unknown>,
  code: Code,
  reason?: string,
): Promise<OpalError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, "expected the call to fail").toBeInstanceOf(OpalError);
  const error = caught as OpalError;
  expect({ code: error.code, reason: reason === undefined ? undefined : error.reason }).toEqual({
    code,
    reason,
  });
  return error;
}
