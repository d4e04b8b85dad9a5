/**
 * An enum value this version does not know, as decoded without judging (`GEN-3`): "" for
 * UNSPECIFIED, `Name(n)` for the number `n` of the enum `Name` (e.g. `KvDtype(99)`).
 */
export type UnknownEnumValue<Name extends string> = "" | `${Name}(${number})`;
