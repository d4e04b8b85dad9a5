/**
 * Foundations shared by every OPAL package: gRPC-aligned status codes, the one error class, call
 * options with cancellation and deadlines, and a bounded channel for streams. No I/O.
 *
 * @packageDocumentation
 */

export { assertTimerMs } from "./assert-timer-ms";
export type { CallOptions, CallSignal } from "./call-options";
export {
  createCallSignal,
  MAX_TIMER_MS,
  sleep,
  throwIfAborted,
  toAbortError,
} from "./call-options";
export type { CallRegistry } from "./call-registry";
export { createCallRegistry } from "./call-registry";
export type { Channel, ChannelOptions } from "./channel";
export { createChannel } from "./channel";
export { Code, codeName, isCode } from "./code";
export type { ErrorReason, LocalReasons } from "./error-reason";
export { isReason } from "./error-reason";
export type { ErrorReport } from "./exit-code";
export { ExitCode, exitCodeOf, formatErrorReport, toErrorReport } from "./exit-code";
export { invalidField } from "./invalid-field";
export type { FieldViolation, OpalErrorOptions, ResourceInfo } from "./opal-error";
export { isOpalError, OpalError } from "./opal-error";
export { Reason } from "./reason";
export { untilAborted } from "./until-aborted";
