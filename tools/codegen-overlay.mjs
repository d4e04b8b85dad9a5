// Where OPAL's domain deliberately differs from the wire, for tools/codegen-domain.mjs. Everything not
// listed here follows the default rules: camelCase readonly fields; enums as the lower-case value
// names without their prefix; bytes as Uint8Array; 64-bit integers as numbers; repeated fields as
// readonly arrays; message fields optional (`?`); a missing scalar decodes to its zero value; a scalar
// the proto marks optional (the `optional` keyword, or a comment starting `OPTIONAL`) is `?` and a
// zero on the wire decodes to absent (`optional: "omitZero"`), so a new optional field needs no line.

/**
 * The messages with a domain type, keyed by proto name. Per message:
 * - `name`: the domain name (default: the proto name).
 * - `owner: "kv"`: @opal/kv declares the type; the generated code checks it equals the wire shape.
 * - `mapper`: the suffix of its `toWire*`/`fromWire*` mappers (default: the domain name).
 * - `field`: the default field path its `fromWire*` names in errors.
 * - `received`: its `fromWire*` decodes without judging into `Received<Name>` (enums of this
 *   version or `UnknownEnumValue`), for a validator to judge; otherwise unknown enums throw.
 * - `check: { name, module }`: a hand-written function (`module` relative to protocol/src/gen)
 *   called as `name(domain, wire, field)` after decoding, for a rule that spans fields.
 * - `oneofs`: a oneof of messages as a discriminated union: `{ type, tag, required }` where
 *   `required: "throw"` rejects a message with no case set (INVALID_FIELD), otherwise the first
 *   case with zero values stands in.
 * - `fields`, per camelCase field name:
 *   - `omit`: not in the domain (`toWire` may still compute it);
 *   - `optional: "keep" | "omitZero"`: `?` in the domain; a decoded zero value is kept, or omitted
 *     (default for a scalar the proto marks optional: "omitZero");
 *   - `required: "default" | "throw"`: a field that is not `?`; when missing a message field
 *     decodes from an empty message (a scalar to its zero value), or is rejected (INVALID_FIELD);
 *   - `emptyIsAbsent`: a message field whose decoded value with no fields set counts as absent;
 *   - `enum: "known" | { default }`: a repeated enum drops values this version does not know; a
 *     scalar enum decodes UNSPECIFIED to `default`;
 *   - `type`, `receivedType`, `toWire`, `fromWire`, `imports`: a hand-written domain type (and its
 *     received form) and the expressions that convert it (`d` is the domain value, `w` the wire
 *     message, `field` the path), with what they import.
 */
export const MESSAGES = {
  Capabilities: {
    name: "DeviceCapabilities",
    mapper: "Capabilities",
    field: "capabilities",
    fields: {
      dtypes: { enum: "known" },
      layouts: { enum: "known" },
      scaleSchemes: { enum: "known" },
      dataPlanes: { enum: "known" },
      retention: { required: "default" },
      features: { required: "default" },
      // A device that does not say how it computes is "digital".
      numerics: {
        required: "default",
        fromWire:
          'fromWireKvNumerics({ ...w.numerics, deviceKind: w.numerics?.deviceKind || deviceKindEnum.toWire("digital") }, path(field, "numerics"))',
      },
    },
  },
  DecoderPrefix: {
    fields: { numTokens: { optional: "omitZero" }, blockHashes: { optional: "omitZero" } },
  },
  Features: { name: "DeviceFeatures" },
  FetchKvAccepted: { field: "accepted", fields: { descriptor: { required: "default" } } },
  FetchKvCompleted: {},
  FetchKvRequest: { mapper: "FetchRequest" },
  GetInfoResponse: { name: "DeviceInfo", mapper: "Info" },
  HeadRange: { name: "KvHeadRange", owner: "kv" },
  HealthCondition: { fields: { severity: { enum: { default: "info" } } } },
  KvChunk: {
    owner: "kv",
    mapper: "Chunk",
    field: "chunk",
    fields: { dataRef: { omit: true }, alignmentPadding: { omit: true } },
  },
  KvDescriptor: {
    owner: "kv",
    mapper: "Descriptor",
    field: "descriptor",
    check: { name: "checkTotalBytes", module: "../check-total-bytes" },
    oneofs: { attention: { type: "KvAttention", tag: "kind", required: "throw" } },
    fields: {
      headRange: { required: "default" },
      numerics: { required: "throw" },
      totalBytes: {
        omit: true,
        toWire: "cacheByteLength(d)",
        imports: { "@opal/kv": ["cacheByteLength"] },
      },
    },
  },
  KvFormat: { received: true },
  KvPosition: {
    mapper: "Position",
    field: "resume_from",
    fields: { part: { optional: "omitZero" } },
  },
  // 0 (absent) when the weights are device-local.
  LoadModelHeader: { fields: { weightsByteLength: { optional: "omitZero" } } },
  LoadModelResponse: {
    name: "LoadModelResult",
    mapper: "LoadResult",
    fields: { model: { required: "default" } },
  },
  MhaShape: {},
  MlaShape: {},
  ModelInfo: { mapper: "Model", oneofs: { attention: { type: "KvAttention", tag: "kind" } } },
  // @opal/kv's KvNumerics always has a precision path, "" when the device gives none.
  Numerics: { name: "KvNumerics", owner: "kv", fields: { precisionPath: { required: "default" } } },
  PrefillAccepted: { field: "accepted", fields: { descriptor: { required: "default" } } },
  PrefillCompleted: { name: "PrefillStats" },
  PrefillRequest: {
    received: true,
    fields: {
      promptTokenIds: {
        type: "Uint32Array",
        toWire: "Array.from(d.promptTokenIds)",
        fromWire: "Uint32Array.from(w.promptTokenIds ?? [])",
      },
      kvFormat: { required: "default" },
      decoderPrefix: { emptyIsAbsent: true },
      sampling: {
        type: "Sampling",
        receivedType: "ReceivedSampling",
        toWire: "toWireSampling(d.sampling)",
        fromWire: "fromWireSampling(w.sampling)",
        imports: { "../sampling-wire": ["fromWireSampling", "toWireSampling"] },
      },
      // Not part of the domain request: whoever serves the call carries the bytes (the server
      // host for shared memory) and reads it from the wire message.
      dataPlane: { omit: true },
    },
  },
  PushProgress: {},
  PushReceipt: {},
  PushTarget: {
    fields: { useTls: { optional: "keep" } },
  },
  RetentionLimits: {},
  TelemetrySnapshot: { mapper: "Telemetry" },
};

/** Enums with a domain union, keyed by proto name. */
export const ENUMS = {
  DataPlaneKind: { map: "dataPlaneEnum" },
  DeviceKind: { map: "deviceKindEnum" },
  HealthSeverity: { map: "severityEnum" },
  KvDtype: { map: "dtypeEnum", owner: "kv", unknownReason: "UNSUPPORTED_DTYPE" },
  KvLayout: { map: "layoutEnum", owner: "kv", unknownReason: "UNSUPPORTED_LAYOUT" },
  KvPart: { map: "partEnum", owner: "kv" },
  KvScaleScheme: { map: "scaleSchemeEnum", owner: "kv", unknownReason: "UNSUPPORTED_SCALE_SCHEME" },
  ProbeState: { map: "probeStateEnum" },
  SamplingMode: { map: "samplingModeEnum" },
};

/** Hand-written domain types the generated ones refer to, by the module that declares them. */
export const HAND_WRITTEN_TYPES = {
  "../sampling": ["ReceivedSampling", "Sampling"],
  "../unknown-enum-value": ["UnknownEnumValue"],
};
