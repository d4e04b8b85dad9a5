import { Code } from "./code";
import { OpalError } from "./opal-error";
import { Reason } from "./reason";

/**
 * INVALID_ARGUMENT for one bad field: the message is `<field>: <description>`, the reason
 * INVALID_FIELD (or a more precise one such as PROMPT_TOO_LONG) and the one `BadRequest` violation
 * names `field` with `description`, which should say what was expected and what arrived.
 */
export function invalidField(
  field: string,
  description: string,
  reason: Reason = Reason.INVALID_FIELD,
): OpalError {
  return new OpalError(Code.INVALID_ARGUMENT, `${field}: ${description}`, {
    reason,
    fieldViolations: [{ field, description }],
  });
}
