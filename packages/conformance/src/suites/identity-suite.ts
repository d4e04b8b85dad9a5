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
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { expectFailure } from "../expect-status";
import { firstWatchedStatus } from "../first-watched-status";
import { unlessReflectionError } from "../unless-reflection-error";

const v1 = opal.device.v1;
const DEVICE_SERVICE = "opal.device.v1.DeviceService";

const encodeInfo = (m: opal.device.v1.GetInfoResponse) =>
  Buffer.from(v1.GetInfoResponse.encode(m).finish()).toString("hex");
const encodeCaps = (m: opal.device.v1.GetCapabilitiesResponse) =>
  Buffer.from(v1.GetCapabilitiesResponse.encode(m).finish()).toString("hex");

/** Checks the capability table of identity.md (`ID-4`, `ID-6`, `TR-2`, `PF-36`). */
export function checkCapabilities(c: opal.device.v1.ICapabilities): string[] {
  const problems: string[] = [];
  const enumList = (
    name: string,
    values: readonly number[] | null | undefined,
    table: object,
    nonEmpty: boolean,
  ) => {
    const list = values ?? [];
    if (nonEmpty && list.length === 0) problems.push(`ID-4: ${name} is empty`);
    if (list.includes(0)) problems.push(`GEN-3: ${name} lists an UNSPECIFIED value`);
    if (new Set(list).size !== list.length) problems.push(`ID-4: ${name} has duplicates`);
    for (const v of list)
      if (!(v in table)) problems.push(`ID-4: ${name} lists unknown value ${v}`);
  };
  enumList("dtypes", c.dtypes, v1.KvDtype, true);
  enumList("layouts", c.layouts, v1.KvLayout, true);
  enumList("scale_schemes", c.scaleSchemes, v1.KvScaleScheme, false);
  enumList("data_planes", c.dataPlanes, v1.DataPlaneKind, false);
  const blocks = c.blockSizesTokens ?? [];
  if (blocks.length === 0) problems.push("ID-4: block_sizes_tokens is empty");
  if (blocks.some((b) => b < 1)) problems.push("ID-4: a block size is 0");
  if ((c.maxPromptTokens ?? 0) < 1) problems.push("ID-4: max_prompt_tokens < 1");
  if ((c.maxConcurrentPrefills ?? 0) < 1) problems.push("ID-4: max_concurrent_prefills < 1");
  const maxChunk = c.maxChunkBytes ?? 0;
  const preferred = c.preferredChunkBytes ?? 0;
  if (maxChunk < 1 || maxChunk > 67_108_864)
    problems.push(`ID-4: max_chunk_bytes ${maxChunk} outside 1..67108864`);
  if (preferred < 1 || preferred > maxChunk)
    problems.push(
      `ID-4: preferred_chunk_bytes ${preferred} outside 1..max_chunk_bytes (${maxChunk})`,
    );
  const maxMessage = c.maxMessageBytes ?? 0;
  if (maxMessage < maxChunk + 4096 || maxMessage > 67_174_400) {
    problems.push(
      `ID-4/TR-2: max_message_bytes ${maxMessage} outside max_chunk_bytes + 4096 (${maxChunk + 4096})..67174400`,
    );
  }
  const retention = c.retention?.maxRetentionSeconds ?? 0;
  if (c.features?.resume && retention === 0)
    problems.push("ID-6: features.resume without retention");
  if (retention === 0 && Number(c.retention?.maxRetainedBytes ?? 0) !== 0) {
    problems.push("ID-4: max_retained_bytes set although retention is unsupported");
  }
  const n = c.numerics;
  if (!n) problems.push("ID-4: numerics missing");
  else {
    if (!n.deviceKind) problems.push("ID-4: numerics.device_kind is UNSPECIFIED");
    const abs = n.maxAbsError ?? 0;
    const rel = n.maxRelError ?? 0;
    if (!(Number.isFinite(abs) && abs >= 0 && Number.isFinite(rel) && rel >= 0)) {
      problems.push(`PF-35: numerics bounds must be finite and >= 0 (abs ${abs}, rel ${rel})`);
    }
    if (n.bitExact && (abs !== 0 || rel !== 0))
      problems.push("PF-35: bit_exact with non-zero error bounds");
    if (
      n.bitExact &&
      (n.deviceKind === v1.DeviceKind.DEVICE_KIND_OPTICAL ||
        n.deviceKind === v1.DeviceKind.DEVICE_KIND_ANALOG)
    ) {
      problems.push("PF-36: optical and analog devices must not claim bit_exact");
    }
  }
  const transport = (c.dataPlanes ?? []).includes(v1.DataPlaneKind.DATA_PLANE_KIND_TRANSPORT);
  if (transport !== (c.transports ?? []).length > 0)
    problems.push("ID-4: transports must be non-empty iff DATA_PLANE_KIND_TRANSPORT is listed");
  if ((c.features?.compressionCodecs ?? []).length > 0)
    problems.push("TR-7: compression_codecs must be empty in 1.0");
  return problems;
}

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
      async run(ctx) {
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
        assertConformance(
          major === 1,
          `VER-2: protocol_version ${info.protocolVersion} is not 1.x`,
        );
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
      },
    },
    {
      id: "identity.capabilities",
      title: "GetCapabilities is complete and within the documented bounds",
      tag: CORE,
      spec: ["ID-4", "ID-6", "TR-2", "PF-35", "PF-36", "GEN-3"],
      async run(ctx) {
        const { capabilities } = await ctx.a.unary("getCapabilities", {});
        assertConformance(capabilities, "ID-4: GetCapabilitiesResponse.capabilities is missing");
        assertNoViolations(checkCapabilities(capabilities));
      },
    },
    {
      id: "identity.stable-across-calls",
      title: "GetInfo and GetCapabilities answer identically on repeated calls",
      tag: CORE,
      spec: ["ID-5"],
      async run(ctx) {
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
      },
    },
    {
      id: "identity.stable-across-connections",
      title: "GetInfo and GetCapabilities answer identically on a new connection",
      tag: CORE,
      spec: ["ID-5"],
      async run(ctx) {
        const other = ctx.connect();
        assertConformance(
          encodeInfo(await other.unary("getInfo", {})) ===
            encodeInfo(await ctx.a.unary("getInfo", {})),
          "ID-5: GetInfo differs between connections",
        );
        assertConformance(
          encodeCaps(await other.unary("getCapabilities", {})) ===
            encodeCaps(await ctx.a.unary("getCapabilities", {})),
          "ID-5: GetCapabilities differs between connections",
        );
      },
    },
    {
      id: "identity.probe",
      title: "Probe answers READY or INITIALIZING within 1 s",
      tag: CORE,
      spec: ["ID-9", "ID-10", "GEN-3"],
      async run(ctx) {
        const started = performance.now();
        const { state } = await ctx.a.unary("probe", {}, { timeoutMs: 5_000 });
        const ms = performance.now() - started;
        assertConformance(
          state === v1.ProbeState.PROBE_STATE_READY ||
            state === v1.ProbeState.PROBE_STATE_INITIALIZING,
          `ID-9: Probe answered state ${state} (expected READY or INITIALIZING)`,
        );
        assertConformance(ms <= 1_000, `ID-9: Probe took ${ms.toFixed(0)} ms (limit 1,000 ms)`);
        ctx.note(`probe: ${v1.ProbeState[state]} in ${ms.toFixed(1)} ms`);
      },
    },
    {
      id: "health.check",
      title: 'Health.Check of "" and DeviceService agrees with Probe',
      tag: CORE,
      spec: ["GEN-9", "GEN-10", "ID-12"],
      async run(ctx) {
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
      },
    },
    {
      id: "health.watch",
      title: "Health.Watch sends the current status first",
      tag: CORE,
      spec: ["GEN-9", "ID-12"],
      async run(ctx) {
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
      },
    },
    reflectionTest("v1"),
    reflectionTest("v1alpha"),
    {
      id: "auth.token-required",
      title: "Calls without a token or with an unknown token fail UNAUTHENTICATED TOKEN_INVALID",
      tag: optional("auth"),
      spec: ["SEC-4", "SEC-5"],
      async run(ctx) {
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
      },
    },
  ];
}
