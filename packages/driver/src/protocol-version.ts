/**
 * The OPAL protocol version (semver) this release implements: what a driver reports as
 * `DeviceInfo.protocolVersion` and what `@opal/protocol` checks a device's against.
 */
export const PROTOCOL_VERSION = "1.0.0";
