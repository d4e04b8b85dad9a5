import { Code, OpalError, Reason } from "@opal/core";

/** INVALID_ARGUMENT INVALID_FIELD with a BadRequest violation naming `field`. */
export function invalidField(field: string, description: string): OpalError {
  return new OpalError(Code.INVALID_ARGUMENT, `${field}: ${description}`, {
    reason: Reason.INVALID_FIELD,
    fieldViolations: [{ field, description }],
  });
}
