import { type ChildProcess, spawn } from "node:child_process";

/** Options of {@link startListeningProcess}. */
export interface StartListeningProcessOptions {
  readonly cwd?: string;
  /** Run as this user and group (the caller must be root). */
  readonly uid?: number;
  readonly gid?: number;
  /** How long to wait for the address, in ms; default 30,000. */
  readonly timeoutMs?: number;
}

/**
 * Starts `node <args>` (a server such as `opal-mock`) and resolves with the child and the address
 * it prints as `listening on <address>`; rejects, with what it printed, when it exits or stays
 * silent past the timeout. The caller kills the child.
 */
export function startListeningProcess(
  args: readonly string[],
  options: StartListeningProcessOptions = {},
): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(process.execPath, args, {
    stdio: ["ignore", "pipe", "inherit"],
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    ...(options.uid !== undefined ? { uid: options.uid } : {}),
    ...(options.gid !== undefined ? { gid: options.gid } : {}),
  });
  return new Promise((resolve, reject) => {
    let out: string | undefined = "";
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`${args.join(" ")} did not start: ${out}`));
    }, options.timeoutMs ?? 30_000);
    child.stdout!.on("data", (data: Buffer) => {
      if (out === undefined) return; // started: the rest is the server's own output
      out += data.toString("utf8");
      const match = /listening on (\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        out = undefined;
        resolve({ child, address: match[1]! });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(" ")} exited with ${code}: ${out}`));
    });
  });
}
