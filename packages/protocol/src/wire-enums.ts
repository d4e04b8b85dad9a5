import { Code, invalidField, OpalError, Reason } from "@opal/core";
import type { DataPlaneKind } from "@opal/driver";
import type { KvDtype, KvLayout, KvPart, KvScaleScheme } from "@opal/kv";
import { opal } from "./gen/pb.js";

const v1 = opal.device.v1;

/** A two-way map between a domain string union and a wire enum. */
interface EnumMap<T extends string> {
  toWire(value: T): number;
  /** Throws INVALID_ARGUMENT naming `field` for UNSPECIFIED or unknown values. */
  fromWire(value: number | null | undefined, field: string): T;
  /**
   * Decodes without judging, for a request validated later in `PF-1` order: UNSPECIFIED becomes ""
   * and an unknown number `Name(n)` (e.g. `KvDtype(99)`). Neither is a member of `T`, so the
   * validation rejects them (`GEN-3`).
   */
  decode(value: number | null | undefined): T;
}

function enumMap<T extends string>(
  name: string,
  pairs: readonly (readonly [T, number])[],
  /** Reason for a value this version does not know (e.g. UNSUPPORTED_DTYPE); default INVALID_FIELD. */
  unknownReason: Reason = Reason.INVALID_FIELD,
): EnumMap<T> {
  const toWire = new Map<T, number>(pairs);
  const fromWire = new Map<number, T>(pairs.map(([domain, wire]) => [wire, domain]));
  return {
    toWire(value) {
      const wire = toWire.get(value);
      if (wire === undefined) {
        throw new OpalError(
          Code.INVALID_ARGUMENT,
          `${name} ${JSON.stringify(value)} is not one of ${[...toWire.keys()]}`,
          {
            reason: Reason.INVALID_FIELD,
          },
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
      return fromWire.get(value ?? 0) ?? ((value ? `${name}(${value})` : "") as T);
    },
  };
}

/** kv dtype ↔ `opal.device.v1.KvDtype`. */
export const dtypeEnum = enumMap<KvDtype>(
  "KvDtype",
  [
    ["f32", v1.KvDtype.KV_DTYPE_F32],
    ["f16", v1.KvDtype.KV_DTYPE_F16],
    ["bf16", v1.KvDtype.KV_DTYPE_BF16],
    ["fp8_e4m3fn", v1.KvDtype.KV_DTYPE_FP8_E4M3FN],
    ["fp8_e5m2", v1.KvDtype.KV_DTYPE_FP8_E5M2],
    ["int8", v1.KvDtype.KV_DTYPE_INT8],
  ],
  Reason.UNSUPPORTED_DTYPE,
);

/** kv scale scheme ↔ `opal.device.v1.KvScaleScheme`. */
export const scaleSchemeEnum = enumMap<KvScaleScheme>(
  "KvScaleScheme",
  [
    ["none", v1.KvScaleScheme.KV_SCALE_SCHEME_NONE],
    ["per_tensor", v1.KvScaleScheme.KV_SCALE_SCHEME_PER_TENSOR],
    ["per_token", v1.KvScaleScheme.KV_SCALE_SCHEME_PER_TOKEN],
    ["per_head", v1.KvScaleScheme.KV_SCALE_SCHEME_PER_HEAD],
  ],
  Reason.UNSUPPORTED_SCALE_SCHEME,
);

/** kv layout ↔ `opal.device.v1.KvLayout`. */
export const layoutEnum = enumMap<KvLayout>(
  "KvLayout",
  [
    ["nhd", v1.KvLayout.KV_LAYOUT_NHD],
    ["hnd", v1.KvLayout.KV_LAYOUT_HND],
  ],
  Reason.UNSUPPORTED_LAYOUT,
);

/** kv part ↔ `opal.device.v1.KvPart`. */
export const partEnum = enumMap<KvPart>("KvPart", [
  ["k", v1.KvPart.KV_PART_K],
  ["v", v1.KvPart.KV_PART_V],
  ["latent", v1.KvPart.KV_PART_LATENT],
  ["k_scale", v1.KvPart.KV_PART_K_SCALE],
  ["v_scale", v1.KvPart.KV_PART_V_SCALE],
  ["latent_scale", v1.KvPart.KV_PART_LATENT_SCALE],
]);

/** Numerics device kind ↔ `opal.device.v1.DeviceKind`. */
export const deviceKindEnum = enumMap<"reference" | "digital" | "optical" | "analog">(
  "DeviceKind",
  [
    ["reference", v1.DeviceKind.DEVICE_KIND_REFERENCE],
    ["digital", v1.DeviceKind.DEVICE_KIND_DIGITAL],
    ["optical", v1.DeviceKind.DEVICE_KIND_OPTICAL],
    ["analog", v1.DeviceKind.DEVICE_KIND_ANALOG],
  ],
);

/** Data plane ↔ `opal.device.v1.DataPlaneKind`. */
export const dataPlaneEnum = enumMap<DataPlaneKind>("DataPlaneKind", [
  ["inline", v1.DataPlaneKind.DATA_PLANE_KIND_INLINE],
  ["shared_memory", v1.DataPlaneKind.DATA_PLANE_KIND_SHARED_MEMORY],
  ["transport", v1.DataPlaneKind.DATA_PLANE_KIND_TRANSPORT],
]);

/** Probe state ↔ `opal.device.v1.ProbeState`. */
export const probeStateEnum = enumMap<"ready" | "initializing">("ProbeState", [
  ["ready", v1.ProbeState.PROBE_STATE_READY],
  ["initializing", v1.ProbeState.PROBE_STATE_INITIALIZING],
]);

/** Health severity ↔ `opal.device.v1.HealthSeverity`. */
export const severityEnum = enumMap<"info" | "warning" | "critical">("HealthSeverity", [
  ["info", v1.HealthSeverity.HEALTH_SEVERITY_INFO],
  ["warning", v1.HealthSeverity.HEALTH_SEVERITY_WARNING],
  ["critical", v1.HealthSeverity.HEALTH_SEVERITY_CRITICAL],
]);
