import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Debian's interpreter: python3-grpcio and python3-protobuf only work with it. */
export const PYTHON = "/usr/bin/python3";

/** The repository's `proto/` folder. */
export const PROTO_ROOT = fileURLToPath(new URL("../../../proto/", import.meta.url));

/** A Python interpreter with stubs generated from `proto/` on its path. */
export interface PythonPeer {
  /** Folder holding the generated `*_pb2.py` and `*_pb2_grpc.py` modules. */
  readonly stubsDir: string;
  /** Runs a Python script with the stubs importable; resolves with stdout, rejects on exit != 0. */
  run(script: string, args?: readonly string[], options?: { timeoutMs?: number }): Promise<string>;
  /** Removes the generated stubs. */
  dispose(): void;
}

/**
 * Generates Python stubs from `proto/` with Debian's `protoc` and `grpc_python_plugin` and returns a
 * peer that runs scripts against them. Resolves to a skip reason (a string) when the Debian packages
 * are missing — except under CI (`CI` set), where a missing peer is an error, so an interop test
 * can never pass by skipping there.
 */
export async function createPythonPeer(): Promise<PythonPeer | string> {
  const missing = await findMissing();
  if (missing) {
    if (process.env.CI) throw new Error(`Python peer unavailable in CI: ${missing}`);
    return `Python peer unavailable: ${missing}`;
  }
  const stubsDir = mkdtempSync(join(tmpdir(), "opal-py-stubs-"));
  const protos = readdirSync(PROTO_ROOT, { recursive: true })
    .map(String)
    .filter((name) => name.endsWith(".proto"))
    .map((name) => relative(PROTO_ROOT, join(PROTO_ROOT, name)));
  await run("protoc", [
    `-I${PROTO_ROOT}`,
    "-I/usr/include",
    `--python_out=${stubsDir}`,
    `--grpc_python_out=${stubsDir}`,
    "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
    ...protos,
  ]);
  return {
    stubsDir,
    async run(script, args = [], options = {}) {
      const { stdout } = await run(PYTHON, [script, ...args], {
        env: { ...process.env, PYTHONPATH: stubsDir, PYTHONDONTWRITEBYTECODE: "1" },
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 64 * 1024 * 1024,
      });
      return stdout;
    },
    dispose() {
      rmSync(stubsDir, { recursive: true, force: true });
    },
  };
}

async function findMissing(): Promise<string | undefined> {
  try {
    await run(PYTHON, ["-c", "import grpc, google.protobuf, xxhash"]);
  } catch {
    return `${PYTHON} cannot import grpc, google.protobuf and xxhash (apt-get install python3-grpcio python3-protobuf python3-xxhash)`;
  }
  for (const tool of ["protoc", "/usr/bin/grpc_python_plugin"]) {
    try {
      await run(tool, ["--version"]);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        return `${tool} not found (apt-get install protobuf-compiler protobuf-compiler-grpc)`;
      }
    }
  }
  return undefined;
}
