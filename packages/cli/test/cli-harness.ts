import { type ChildProcess, execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { startListeningProcess } from "@opal/testing";

const run = promisify(execFile);

/** A built executable of a workspace package (`dist/<name>.js`). */
export const distFile = (pkg: string, name: string) =>
  fileURLToPath(new URL(`../../${pkg}/dist/${name}.js`, import.meta.url));

/** The built `opal` executable; the CLI tests run it as a user would. */
export const OPAL = distFile("cli", "opal");

/** Whether `opal` is built; under CI a missing build is an error, not a skip. */
export const built = existsSync(OPAL);
if (!built && process.env.CI)
  throw new Error(`${OPAL} is missing: npm test builds it before running tests`);

/** Options of {@link runNode}. */
export interface RunOptions {
  /** Kill the process after this long; default 120,000 ms. */
  readonly timeoutMs?: number;
  /** Node's `--max-old-space-size`, in MB; default Node's own. */
  readonly maxOldSpaceMb?: number;
}

/** Runs `file` with this Node; resolves with its exit code and output (never rejects on exit). */
export async function runNode(file: string, args: readonly string[], options: RunOptions = {}) {
  const heap = options.maxOldSpaceMb ? [`--max-old-space-size=${options.maxOldSpaceMb}`] : [];
  try {
    const { stdout, stderr } = await run(process.execPath, [...heap, file, ...args], {
      timeout: options.timeoutMs ?? 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Runs `opal args`; see {@link runNode}. */
export const opalCli = (args: readonly string[], options?: RunOptions) =>
  runNode(OPAL, args, options);

/** An `opal mock` process serving on a loopback port. */
export interface OpalMockProcess {
  readonly address: string;
  /** SIGTERM, then its exit code once it has exited. */
  stop(): Promise<number | null>;
}

/** Starts `opal mock --port 0 --profile instant --model <models>` and waits until it listens. */
export async function startOpalMock(models: readonly string[] = ["opal-tiny"]) {
  const started = await startListeningProcess([
    OPAL,
    ...["mock", "--port", "0", "--profile", "instant", "--model", ...models],
  ]);
  const child: ChildProcess = started.child;
  return {
    address: started.address,
    stop() {
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      return exited;
    },
  } satisfies OpalMockProcess;
}
