import { Code } from "@opal/core";
import {
  createHealthClient,
  createReflectionClient,
  opal,
  parseProtocolVersion,
  type ReflectionVersion,
} from "@opal/protocol";
import {
  assertConformance,
  assertNoViolations,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { expectFailure } from "../expect-status";
import { firstWatchedStatus } from "../first-watched-status";
import { unlessReflectionError } from "../unless-reflection-error";
import { checkCapabilities } from "./check-capabilities";

const v1 = opal.device.v1;
const DEVICE_SERVICE = "opal.device.v1.DeviceService";

const encodeInfo = (m: opal.device.v1.GetInfoResponse) =>
  Buffer.from(v1.GetInfoResponse.encode(m).finish()).toString("hex");
const encodeCaps = (m: opal.device.v1.GetCapabilitiesResponse) =>
  Buffer.from(v1.GetCapabilitiesResponse.encode(m).finish()).toString("hex");

function reflectionTest(version: ReflectionVersion): ConformanceTest {
  return {
    id: `reflection.${version}`,
    title: `grpc.reflection.${version}.ServerReflection lists the device's services and describes DeviceService`,
    tag: CORE,
    spec: ["GEN-9"],
    async run(ctx) {
      const client = createReflectionClient(ctx.target, { tls: ctx.tls, version });
      try {
        const services = await unlessReflectionError(client.listServices(), []);
        const required = [
          DEVICE_SERVICE,
          "grpc.health.v1.Health",
          "grpc.reflection.v1.ServerReflection",
          "grpc.reflection.v1alpha.ServerReflection",
        ];
        const missing = required.filter((s) => !services.includes(s));
        assertConformance(
          missing.length === 0,
          `GEN-9: list_services lacks ${missing.join(", ")} (got ${services.join(", ")})`,
        );
        const files = (await unlessReflectionError(client.fileContainingSymbol(DEVICE_SERVICE), []))
          .length;
        assertConformance(
          files > 0,
          `GEN-9: file_containing_symbol(${DEVICE_SERVICE}) returned no descriptor`,
        );
      } finally {
        client.close();
      }
    },
  };
}

/** Identity, health, reflection and authentication. */
export function toIdentitySuite(): ConformanceTest[] {
  return [
    {
      id: "identity.get-info",
      title: "GetInfo reports a semantic protocol version of major 1 and a device id",
      tag: CORE,
      spec: ["VER-1", "ID-1", "ID-2"],
      run: runIdentityGetInfo,
    },
    {
      id: "identity.capabilities",
      title: "GetCapabilities is complete and within the documented bounds",
      tag: CORE,
      spec: ["ID-4", "ID-6", "TR-2", "PF-35", "PF-36", "GEN-3"],
      run: runIdentityCapabilities,
    },
    {
      id: "identity.stable-across-calls",
      title: "GetInfo and GetCapabilities answer identically on repeated calls",
      tag: CORE,
      spec: ["ID-5"],
      run: runIdentityStableAcrossCalls,
    },
    {
      id: "identity.stable-across-connections",
      title: "GetInfo and GetCapabilities answer identically on a new connection",
      tag: CORE,
      spec: ["ID-5"],
      run: runIdentityStableAcrossConnections,
    },
    {
      id: "identity.probe",
      title: "Probe answers READY or INITIALIZING within 1 s",
      tag: CORE,
      spec: ["ID-9", "ID-10", "GEN-3"],
      run: runIdentityProbe,
    },
    {
      id: "health.check",
      title: 'Health.Check of "" and DeviceService agrees with Probe',
      tag: CORE,
      spec: ["GEN-9", "GEN-10", "ID-12"],
      run: runHealthCheck,
    },
    {
      id: "health.watch",
      title: "Health.Watch sends the current status first",
      tag: CORE,
      spec: ["GEN-9", "ID-12"],
      run: runHealthWatch,
    },
    reflectionTest("v1"),
    reflectionTest("v1alpha"),
    {
      id: "auth.token-required",
      title: "Calls without a token or with an unknown token fail UNAUTHENTICATED TOKEN_INVALID",
      tag: optional("auth"),
      spec: ["SEC-4", "SEC-5"],
      run: runAuthTokenRequired,
    },
  ];
}

/** `identity.get-info`: GetInfo reports a semantic protocol version of major 1 and a device id. */
async function runIdentityGetInfo(ctx: ConformanceContext): Promise<void> {
  const info = await ctx.a.unary("getInfo", {});
  let major = -1;
  try {
    major = parseProtocolVersion(info.protocolVersion).major;
  } catch {
    assertConformance(
      false,
      `VER-1: protocol_version ${JSON.stringify(info.protocolVersion)} is not MAJOR.MINOR.PATCH`,
    );
  }
  assertConformance(major === 1, `VER-2: protocol_version ${info.protocolVersion} is not 1.x`);
  assertConformance(
    /^[\x20-\x7e]{1,128}$/.test(info.deviceId),
    `ID-2: device_id ${JSON.stringify(info.deviceId)} must be 1-128 printable ASCII characters`,
  );
  for (const field of ["vendor", "product", "firmwareVersion", "driverVersion"] as const) {
    assertConformance(info[field].length <= 128, `${field} is longer than 128 characters`);
  }
  assertConformance(
    info.extensions.length <= 64,
    `GetInfo lists ${info.extensions.length} extensions (max 64)`,
  );
  ctx.note(
    `${info.vendor} ${info.product}, protocol ${info.protocolVersion}, device ${info.deviceId}`,
  );
}

/** `identity.capabilities`: GetCapabilities is complete and within the documented bounds. */
async function runIdentityCapabilities(ctx: ConformanceContext): Promise<void> {
  const { capabilities } = await ctx.a.unary("getCapabilities", {});
  assertConformance(capabilities, "ID-4: GetCapabilitiesResponse.capabilities is missing");
  assertNoViolations(checkCapabilities(capabilities));
}

/**
 * `identity.stable-across-calls`: GetInfo and GetCapabilities answer identically on repeated calls.
 */
async function runIdentityStableAcrossCalls(ctx: ConformanceContext): Promise<void> {
  const info = encodeInfo(await ctx.a.unary("getInfo", {}));
  const caps = encodeCaps(await ctx.a.unary("getCapabilities", {}));
  for (let i = 0; i < 3; i++) {
    assertConformance(
      encodeInfo(await ctx.a.unary("getInfo", {})) === info,
      "ID-5: GetInfo changed between calls",
    );
    assertConformance(
      encodeCaps(await ctx.a.unary("getCapabilities", {})) === caps,
      "ID-5: GetCapabilities changed between calls",
    );
  }
}

/**
 * `identity.stable-across-connections`: GetInfo and GetCapabilities answer identically on a new
 * connection.
 */
async function runIdentityStableAcrossConnections(ctx: ConformanceContext): Promise<void> {
  const other = ctx.connect();
  assertConformance(
    encodeInfo(await other.unary("getInfo", {})) === encodeInfo(await ctx.a.unary("getInfo", {})),
    "ID-5: GetInfo differs between connections",
  );
  assertConformance(
    encodeCaps(await other.unary("getCapabilities", {})) ===
      encodeCaps(await ctx.a.unary("getCapabilities", {})),
    "ID-5: GetCapabilities differs between connections",
  );
}

/** `identity.probe`: Probe answers READY or INITIALIZING within 1 s. */
async function runIdentityProbe(ctx: ConformanceContext): Promise<void> {
  const started = performance.now();
  const { state } = await ctx.a.unary("probe", {}, { timeoutMs: 5_000 });
  const ms = performance.now() - started;
  assertConformance(
    state === v1.ProbeState.PROBE_STATE_READY || state === v1.ProbeState.PROBE_STATE_INITIALIZING,
    `ID-9: Probe answered state ${state} (expected READY or INITIALIZING)`,
  );
  assertConformance(ms <= 1_000, `ID-9: Probe took ${ms.toFixed(0)} ms (limit 1,000 ms)`);
  ctx.note(`probe: ${v1.ProbeState[state]} in ${ms.toFixed(1)} ms`);
}

/** `health.check`: Health.Check of "" and DeviceService agrees with Probe. */
async function runHealthCheck(ctx: ConformanceContext): Promise<void> {
  const { state } = await ctx.a.unary("probe", {}, { timeoutMs: 5_000 });
  const expected = state === v1.ProbeState.PROBE_STATE_READY ? "SERVING" : "NOT_SERVING";
  const health = createHealthClient(ctx.target, { tls: ctx.tls });
  try {
    for (const service of ["", DEVICE_SERVICE]) {
      const status = await health.check(service);
      assertConformance(
        status === expected,
        `ID-12: Health.Check(${JSON.stringify(service)}) = ${status}, Probe says ${expected}`,
      );
    }
  } finally {
    health.close();
  }
}

/** `health.watch`: Health.Watch sends the current status first. */
async function runHealthWatch(ctx: ConformanceContext): Promise<void> {
  const { state } = await ctx.a.unary("probe", {}, { timeoutMs: 5_000 });
  const expected = state === v1.ProbeState.PROBE_STATE_READY ? "SERVING" : "NOT_SERVING";
  const health = createHealthClient(ctx.target, { tls: ctx.tls });
  try {
    const status = await firstWatchedStatus(health, DEVICE_SERVICE);
    assertConformance(
      status === expected,
      `ID-12: Health.Watch first sent ${status}, Probe says ${expected}`,
    );
  } finally {
    health.close();
  }
}

/**
 * `auth.token-required`: Calls without a token or with an unknown token fail UNAUTHENTICATED
 * TOKEN_INVALID.
 */
async function runAuthTokenRequired(ctx: ConformanceContext): Promise<void> {
  for (const [what, token] of [
    ["no token", null],
    ["an unknown token", `not-${ctx.token}-conformance`],
  ] as const) {
    for (const method of ["getCapabilities", "listModels"] as const) {
      await expectFailure(
        () => ctx.a.unary(method, {}, { token }),
        { code: Code.UNAUTHENTICATED, reasons: ["TOKEN_INVALID"], spec: "SEC-4" },
        `${method} with ${what}`,
      );
    }
  }
}
