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

/**
 * An error message that says what to do: an unreachable target (with the `opal mock` command that
 * would serve it, when `target` ends in a port), a missing model or token get a hint after the
 * error itself.
 */
export function explain(error: unknown, target?: string): string {
  const opal = OpalError.from(error);
  const hints: Record<string, string> = {
    MODEL_NOT_LOADED:
      "load the model on the device, or pick a loaded one (the device lists them with GetInfo/ListModels)",
    TOKEN_INVALID: "pass a valid --token (or set OPAL_TOKEN)",
    PROMPT_TOO_LONG: "shorten the prompt, or use a device with a larger max_prompt_tokens",
  };
  let hint = hints[opal.reason];
  if (!hint && opal.code === Code.UNAVAILABLE && target) {
    const port = /:(\d+)$/.exec(target)?.[1];
    hint = `is a device running at ${target}?${port ? ` Start one with \`opal mock --port ${port}\`` : ""}`;
  }
  return hint ? `${opal.message}\n  hint: ${hint}` : opal.message;
}
