import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

/** Debian's python3, which has numpy from python3-numpy. */
export const PYTHON = "/usr/bin/python3";

/**
 * Why Python checks cannot run here (undefined when they can). When `process.env.CI` is set a
 * missing interpreter or module is an error, not a skip.
 */
export function pythonUnavailable(modules: readonly string[] = []): string | undefined {
  let reason: string | undefined;
  if (!existsSync(PYTHON)) reason = `${PYTHON} not found`;
  else {
    const probe = spawnSync(PYTHON, ["-c", modules.map((m) => `import ${m}`).join(";") || "pass"], {
      encoding: "utf8",
    });
    if (probe.status !== 0)
      reason = `${PYTHON} cannot import ${modules.join(", ")} (install the Debian packages .ci/run installs)`;
  }
  if (reason && process.env.CI)
    throw new Error(`independent-reader check required in CI: ${reason}`);
  return reason;
}

/** Runs a Python snippet with `args`, returning stdout; throws with stderr on failure. */
export function runPython(code: string, args: readonly string[] = [], input?: string): string {
  const result = spawnSync(PYTHON, ["-c", code, ...args], {
    encoding: "utf8",
    input,
    timeout: 30_000,
  });
  if (result.status !== 0) throw new Error(`python failed (${result.status}): ${result.stderr}`);
  return result.stdout;
}
