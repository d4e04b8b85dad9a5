import { readFileSync } from "node:fs";
import { createDeviceClient, type DeviceClient } from "@opal/client";
import { Code, OpalError } from "@opal/core";
import { type Command, Option } from "commander";

/** Flags every command that talks to a device accepts. */
export interface TargetFlags {
  target: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
}

/** Adds `--target`, `--token` (or `OPAL_TOKEN`) and the TLS flags to `command`. */
export function addTargetOptions(command: Command): Command {
  return command
    .requiredOption(
      "--target <host:port>",
      "the device (or any grpc-js target, e.g. dns:///name:port)",
    )
    .addOption(new Option("--token <token>", "bearer token").env("OPAL_TOKEN"))
    .option("--tls-ca <file>", "PEM CA bundle to verify the device (enables TLS)")
    .option("--tls-cert <file>", "PEM client certificate, for mutual TLS")
    .option("--tls-key <file>", "PEM client key, for mutual TLS")
    .option(
      "--tls-server-name <name>",
      "expected server name when it differs from the target host",
    );
}

/**
 * A device client for the flags; TLS when any TLS flag is given. NOT_FOUND naming the flag when a
 * PEM file cannot be read.
 */
export function connectTarget(flags: TargetFlags): DeviceClient {
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      throw new OpalError(Code.NOT_FOUND, `cannot read ${flag} ${file}: ${e.code ?? e.message}`);
    }
  };
  const tls =
    flags.tlsCa || flags.tlsCert || flags.tlsKey
      ? {
          ...(flags.tlsCa ? { caPem: read("--tls-ca", flags.tlsCa) } : {}),
          ...(flags.tlsCert ? { certChainPem: read("--tls-cert", flags.tlsCert) } : {}),
          ...(flags.tlsKey ? { privateKeyPem: read("--tls-key", flags.tlsKey) } : {}),
          ...(flags.tlsServerName ? { serverNameOverride: flags.tlsServerName } : {}),
        }
      : undefined;
  return createDeviceClient(flags.target, {
    ...(flags.token ? { token: flags.token } : {}),
    ...(tls ? { tls } : {}),
  });
}

const givenHints = new WeakMap<OpalError, string>();

/** What grpc-js's connection failures say, by the errno or phrase they contain, in OPAL's words. */
const CONNECTION_FAILURES: readonly [RegExp, string][] = [
  [/ECONNREFUSED/, "connection refused"],
  [/ENOTFOUND|EAI_AGAIN|Name resolution failed|DNS resolution failed/, "its name does not resolve"],
  [/ETIMEDOUT|EHOSTUNREACH|ENETUNREACH/, "no route or no answer"],
  [/ECONNRESET|EPIPE/, "the connection was reset"],
  [/No connection established|Failed to connect/, "no connection"],
];

/**
 * The error a device command reports, saying what to do: grpc-js's text for a failed connection
 * becomes `cannot reach a device at <target>: connection refused` (UNAVAILABLE, the original kept
 * as `cause`), and an unreachable target, a missing model or token get a hint ({@link hintOf}):
 * the `opal mock` command that would serve the target's port, the command that lists models.
 */
export function explain(error: unknown, target?: string): OpalError {
  let opal = OpalError.from(error);
  if (opal.code === Code.UNAVAILABLE && target) {
    const failure = CONNECTION_FAILURES.find(([pattern]) => pattern.test(opal.rawMessage));
    if (failure) {
      opal = new OpalError(Code.UNAVAILABLE, `cannot reach a device at ${target}: ${failure[1]}`, {
        reason: opal.reason,
        cause: opal,
      });
    }
  }
  const listModels = target ? `opal device models --target ${target}` : "opal device models";
  const hints: Record<string, string> = {
    MODEL_NOT_LOADED: `load it with \`opal load\`, or pick a loaded one: \`${listModels}\` lists them`,
    TOKEN_INVALID: "pass a valid --token (or set OPAL_TOKEN)",
    PROMPT_TOO_LONG: "shorten the prompt, or use a device with a larger max_prompt_tokens",
  };
  let hint = hints[opal.reason];
  if (!hint && opal.code === Code.UNAVAILABLE && target) {
    const port = /:(\d+)$/.exec(target)?.[1];
    hint = `is a device running at ${target}?${port ? ` Start one with \`opal mock --port ${port}\`` : ""}`;
  }
  if (hint) givenHints.set(opal, hint);
  return opal;
}

/** The hint {@link explain} gave `error`, if any. */
export function hintOf(error: unknown): string | undefined {
  return error instanceof OpalError ? givenHints.get(error) : undefined;
}
