/**
 * Foundations shared by every OPAL package: gRPC-aligned status codes, the one error class, call
 * options with cancellation and deadlines, and a bounded channel for streams. No I/O.
 *
 * @packageDocumentation
 */
export { OpalError, isOpalError } from "./opal-error";
export type { FieldViolation, OpalErrorOptions, ResourceInfo } from "./opal-error";
export { Code, codeName, isCode } from "./code";
export { createCallSignal, sleep, throwIfAborted, toAbortError } from "./call-options";
export type { CallOptions, CallSignal } from "./call-options";
export { createChannel } from "./channel";
export type { Channel, ChannelOptions } from "./channel";
