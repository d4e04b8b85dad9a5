import { Code, OpalError } from "@opal/core";
import { PROTOCOL_VERSION } from "@opal/driver";

// Defined in @opal/driver, below both this package and @opal/mock, so a device reports the very
// version a client checks; re-exported here as the protocol's own constant.
export { PROTOCOL_VERSION };

/** A parsed semantic version. */
export interface ProtocolVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
}

/** Parses `MAJOR.MINOR.PATCH` (pre-release and build suffixes are accepted and ignored). */
export function parseProtocolVersion(text: string): ProtocolVersion {
  const match = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+].*)?$/.exec(text);
  if (!match) {
    throw new OpalError(
      Code.FAILED_PRECONDITION,
      `protocol_version "${text}" is not a semantic version (expected MAJOR.MINOR.PATCH)`,
      { reason: "PROTOCOL_VERSION_UNSUPPORTED" },
    );
  }
  return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]) };
}

/**
 * Throws FAILED_PRECONDITION (reason PROTOCOL_VERSION_UNSUPPORTED) unless `deviceVersion` has the
 * same major version as {@link PROTOCOL_VERSION}. Minor versions only add features, which callers
 * gate on capabilities.
 */
export function assertCompatibleVersion(deviceVersion: string): void {
  const ours = parseProtocolVersion(PROTOCOL_VERSION);
  const theirs = parseProtocolVersion(deviceVersion);
  if (theirs.major !== ours.major) {
    throw new OpalError(
      Code.FAILED_PRECONDITION,
      `device speaks protocol ${deviceVersion}, this client speaks ${PROTOCOL_VERSION} (major versions differ)`,
      { reason: "PROTOCOL_VERSION_UNSUPPORTED" },
    );
  }
}
