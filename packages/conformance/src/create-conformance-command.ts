import { readFile, writeFile } from "node:fs/promises";
import { ExitCode, exitCodeOf, formatErrorReport } from "@opal/core";
import { Command, InvalidArgumentError } from "commander";
import { formatTag } from "./conformance-test";
import { formatConsoleReport, formatResultLine } from "./format-console-report";
import { readKnownFailing } from "./read-known-failing";
import { readVendorConfig, type VendorConfig } from "./read-vendor-config";
import { runConformance } from "./run-conformance";
import { toConformanceTests } from "./suites/index";
import { toJsonReport } from "./to-json-report";
import { toJunitXml } from "./to-junit-xml";

const regex = (flag: string) => (value: string) => {
  try {
    return new RegExp(value);
  } catch (error) {
    throw new InvalidArgumentError(`${flag}: ${(error as Error).message}`);
  }
};
const positive = (flag: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError(`${flag} must be a whole number >= 1 (got ${value})`);
  return n;
};

/**
 * The conformance command (`opal-conformance`, and `opal conformance`). Sets the exit code: 0 when
 * the run went as expected (`report.ok`: every selected test passed, failed as the known-failing
 * list says, or was an Optional test skipped; the verdict line says whether that certifies the
 * device); 1 when a test failed unexpectedly or the run had problems (not conformant); 2 for a
 * usage error; 3 when nothing failed but a Core test was skipped (incomplete: the device cannot be
 * certified, e.g. it can neither load the conformance model nor name its checkpoint); 64 + the
 * gRPC code for a failure with one (78, UNAVAILABLE, when the device cannot be reached), as
 * `ExitCode` of `@opal/core` lists.
 */
export function createConformanceCommand(name: string): Command {
  return new Command(name)
    .description(
      "Run the OPAL device conformance suite against a device endpoint. Exit code 0: every selected test passed, failed as the known-failing list says, or was an Optional test skipped (the verdict line says whether the device is CONFORMANT: every Core test ran and passed); 1: not conformant; 2: usage error; 3: incomplete, a Core test was skipped; 64 + gRPC code: a failure with that status (78: device unreachable).",
    )
    .option("--target <host:port>", "the device's DeviceService endpoint (required unless --list)")
    .option("--token <token>", "bearer token of tenant A")
    .option("--token-b <token>", "bearer token of a second tenant (enables the isolation tests)")
    .option("--tls-ca <file>", "PEM CA bundle to verify the device (enables TLS)")
    .option("--tls-cert <file>", "PEM client certificate (mutual TLS)")
    .option("--tls-key <file>", "PEM client private key (mutual TLS)")
    .option("--tls-server-name <name>", "expected server name when it differs from the target host")
    .option(
      "--config <file>",
      "vendor config (YAML/JSON): model, conformanceWeights, checkpoint, tokens, timeouts, knownFailing",
    )
    .option(
      "--checkpoint <dir>",
      "Hugging Face checkpoint folder (config.json + safetensors) of the configured model: KV is checked against the reference computed from it",
    )
    .option("--focus <regex>", "run only tests whose id matches", regex("--focus"))
    .option("--skip <regex>", "leave out tests whose id matches", regex("--skip"))
    .option("--known-failing <file>", "test ids expected to fail, one per line (# comments)")
    .option("--junit <file>", "write a JUnit XML report")
    .option("--json <file>", "write a JSON report (device info, capabilities, results)")
    .option("--test-timeout <ms>", "time limit of one test", positive("--test-timeout"))
    .option("--prefill-timeout <ms>", "deadline of one prefill", positive("--prefill-timeout"))
    .option(
      "--receiver-host <host>",
      "interface the suite's KvReceiver binds (the device pushes to it)",
      "127.0.0.1",
    )
    .option("--list", "list the tests and exit")
    .option("--quiet", "print only the summary")
    .showHelpAfterError()
    .action(async (o: Flags) => {
      try {
        process.exitCode = await run(o);
      } catch (error) {
        console.error(formatErrorReport(name, error));
        process.exitCode = exitCodeOf(error);
      }
    });
}

interface Flags {
  target?: string;
  token?: string;
  tokenB?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  receiverHost: string;
  config?: string;
  checkpoint?: string;
  focus?: RegExp;
  skip?: RegExp;
  knownFailing?: string;
  junit?: string;
  json?: string;
  testTimeout?: number;
  prefillTimeout?: number;
  list?: boolean;
  quiet?: boolean;
}

async function run(o: Flags): Promise<number> {
  if (o.list) {
    for (const t of toConformanceTests())
      console.log(`${t.id} [${formatTag(t.tag)}] ${t.spec.join(" ")} — ${t.title}`);
    return 0;
  }
  if (!o.target)
    throw new InvalidArgumentError("--target <host:port> is required (except with --list)");
  const config: VendorConfig = o.config ? await readVendorConfig(o.config) : {};
  const knownFailing = [
    ...(config.knownFailing ?? []),
    ...(o.knownFailing ? await readKnownFailing(o.knownFailing) : []),
  ];
  const pem = async (file: string | undefined) => (file ? await readFile(file, "utf8") : undefined);
  const tls =
    o.tlsCa || o.tlsCert || o.tlsKey
      ? {
          ...(o.tlsCa ? { caPem: await pem(o.tlsCa) } : {}),
          ...(o.tlsCert ? { certChainPem: await pem(o.tlsCert) } : {}),
          ...(o.tlsKey ? { privateKeyPem: await pem(o.tlsKey) } : {}),
          ...(o.tlsServerName ? { serverNameOverride: o.tlsServerName } : {}),
        }
      : undefined;
  const token = o.token ?? config.token;
  const checkpoint = o.checkpoint ?? config.checkpoint;
  const tokenB = o.tokenB ?? config.tokenB;
  const report = await runConformance({
    target: o.target,
    ...(token ? { token } : {}),
    ...(tokenB ? { tokenB } : {}),
    ...(tls ? { tls } : {}),
    receiverHost: o.receiverHost,
    ...(config.model ? { modelId: config.model } : {}),
    ...(checkpoint ? { checkpoint } : {}),
    ...(config.conformanceWeights !== undefined
      ? { conformanceWeights: config.conformanceWeights }
      : {}),
    ...(o.focus ? { focus: o.focus } : {}),
    ...(o.skip ? { skip: o.skip } : {}),
    knownFailing,
    ...((o.testTimeout ?? config.testTimeoutMs)
      ? { testTimeoutMs: o.testTimeout ?? config.testTimeoutMs }
      : {}),
    ...((o.prefillTimeout ?? config.prefillTimeoutMs)
      ? { prefillTimeoutMs: o.prefillTimeout ?? config.prefillTimeoutMs }
      : {}),
    ...(o.quiet ? {} : { onResult: (result) => console.log(formatResultLine(result)) }),
  });
  if (o.junit) await writeFile(o.junit, toJunitXml(report));
  if (o.json) await writeFile(o.json, toJsonReport(report));
  console.log(`\n${formatConsoleReport(report)}`);
  if (!report.info) return ExitCode.UNAVAILABLE;
  if (report.ok) return ExitCode.OK;
  return report.verdict === "not-conformant" ? ExitCode.FAILURE : ExitCode.INCOMPLETE;
}
