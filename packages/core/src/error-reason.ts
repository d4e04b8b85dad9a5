import { Reason } from "./reason";

/**
 * Reasons that an error class outside the protocol adds to {@link ErrorReason}, as the keys of this
 * interface by declaration merging (`declare module "@opal/core" { interface LocalReasons … }`):
 * `@opal/kv` adds its `KvFormatReason`s for bytes and descriptors checked locally. Such a reason
 * names a local check; a device answers with a protocol {@link Reason} only.
 */
// biome-ignore lint/suspicious/noEmptyInterface: filled by declaration merging in other packages
export interface LocalReasons {}

/** What `OpalError.reason` holds: a protocol {@link Reason} or a {@link LocalReasons} key. */
export type ErrorReason = Reason | keyof LocalReasons;

const protocolReasons: ReadonlySet<string> = new Set(Object.values(Reason));

/** True when `value` is one of the protocol's reasons (errors.proto's `ErrorReason` names). */
export function isReason(value: string): value is Reason {
  return protocolReasons.has(value);
}
