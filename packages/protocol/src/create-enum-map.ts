import { Code, invalidField, OpalError, Reason } from "@opal/core";
import type { UnknownEnumValue } from "@opal/driver";

/** A two-way map between a domain string union `T` and the wire enum `Name`. */
export interface EnumMap<T extends string, Name extends string> {
  /** The wire number of `value`; throws INVALID_ARGUMENT INVALID_FIELD for a name outside `T`. */
  toWire(value: T): number;
  /**
   * The domain name of `value`. Throws INVALID_ARGUMENT naming `field`: INVALID_FIELD for
   * UNSPECIFIED, the enum's own reason (e.g. UNSUPPORTED_DTYPE, else INVALID_FIELD) for a number
   * this version does not know.
   */
  fromWire(value: number | null | undefined, field: string): T;
  /**
   * Decodes without judging, for a request validated later in `PF-1` order (`GEN-3`): UNSPECIFIED
   * becomes "" and an unknown number `Name(n)` (e.g. `KvDtype(99)`).
   */
  decode(value: number | null | undefined): T | UnknownEnumValue<Name>;
}

/**
 * Creates the {@link EnumMap} of the wire enum `name` from its `[domain name, number]` pairs
 * (UNSPECIFIED, 0, excluded); `unknownReason` is the reason for a number outside them.
 */
export function createEnumMap<T extends string, Name extends string>(
  name: Name,
  pairs: readonly (readonly [T, number])[],
  unknownReason: Reason = Reason.INVALID_FIELD,
): EnumMap<T, Name> {
  const toWire = new Map<T, number>(pairs);
  const fromWire = new Map<number, T>(pairs.map(([domain, wire]) => [wire, domain]));
  return {
    toWire(value) {
      const wire = toWire.get(value);
      if (wire === undefined) {
        throw new OpalError(
          Code.INVALID_ARGUMENT,
          `${name} ${JSON.stringify(value)} is not one of ${[...toWire.keys()]}`,
          { reason: Reason.INVALID_FIELD },
        );
      }
      return wire;
    },
    fromWire(value, field) {
      const domain = fromWire.get(value ?? 0);
      if (domain === undefined) {
        const description = value
          ? `unknown ${name} value ${value}`
          : `${name} is required (got UNSPECIFIED)`;
        throw invalidField(field, description, value ? unknownReason : Reason.INVALID_FIELD);
      }
      return domain;
    },
    decode(value) {
      return fromWire.get(value ?? 0) ?? (value ? `${name}(${value})` : "");
    },
  };
}
