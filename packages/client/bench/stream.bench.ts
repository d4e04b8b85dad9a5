// KV streaming through the SDK against baselines measured in the same run: raw TCP between two
// processes, a bare grpc-js byte stream with the same channel settings, Python grpcio (Debian)
// twice (reading the bare server's bytes, and as a client of the same device streaming the same
// cache), and a bare grpc-js unary call. The SDK is measured twice: inline (the
// bytes in the gRPC stream, as across hosts) and with its same-host default, the shared-memory
// data plane (PF-43). The streams are received in a plain-JavaScript child process
// (stream-clients.mjs). Also the peak RSS of a client streaming a 4 GiB cache into a file sink.
// Prints one JSON line per figure (see tools/bench.mjs).
import { type ChildProcess, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client, credentials } from "@grpc/grpc-js";
import { DeviceServiceDefinition } from "@opal/protocol";
import { createPythonPeer, startListeningProcess } from "@opal/testing";
import { createDeviceClient } from "../src/index";

const here = fileURLToPath(new URL(".", import.meta.url));
const root = join(here, "../../..");
const MIB = 1 << 20;
const children: ChildProcess[] = [];

function figure(
  bench: string,
  metric: string,
  value: number,
  baseline: string | null,
  baselineValue: number | null,
  limit: { target?: number; max?: number },
) {
  const round = (v: number) => Number(v.toPrecision(4));
  const ratio = baselineValue ? round(value / baselineValue) : null;
  console.log(
    JSON.stringify({
      bench,
      metric,
      value: round(value),
      baseline,
      baselineValue: baselineValue === null ? null : round(baselineValue),
      ratio,
      target: limit.target ?? null,
      ...(limit.max !== undefined ? { max: limit.max } : {}),
    }),
  );
}

/** Starts a server process (plain JavaScript: no TypeScript loader in any measured process). */
async function start(args: string[]): Promise<string> {
  const { child, address } = await startListeningProcess(args, { cwd: root });
  children.push(child);
  return address;
}

// The SDK's channel settings (stream-clients.mjs passes the same to its bare client).
const channel = {
  "grpc.max_receive_message_length": 64 * MIB,
  "grpc-node.flow_control_window": 16 * MIB,
};

/** Best of three reads of `count` MiB from the raw TCP server, in GB/s. */
async function rawTcp(address: string, count: number): Promise<number> {
  const { connect } = await import("node:net");
  const [host, port] = address.split(":") as [string, string];
  let best = 0;
  for (let run = 0; run < 3; run++) {
    const started = performance.now();
    const bytes = await new Promise<number>((resolve, reject) => {
      let received = 0;
      const socket = connect(Number(port), host, () => {
        const request = Buffer.alloc(4);
        request.writeUInt32LE(count);
        socket.write(request);
      });
      socket.on("data", (data) => {
        received += data.byteLength;
      });
      socket.on("end", () => resolve(received));
      socket.on("error", reject);
    });
    best = Math.max(best, bytes / ((performance.now() - started) / 1000) / 1e9);
  }
  return best;
}

async function main() {
  const tcp = await start([join(here, "raw-tcp-server.mjs")]);
  const bare = await start([join(here, "bare-stream-server.mjs")]);
  // The built `opal-mock` (`npm run bench` builds first), run as docs/guides/vendor.md advises for
  // device servers: without --initial-old-space-size, V8 keeps restarting old-generation marking
  // while grpc-js allocates each 4 MiB message frame, and the server sends about half as fast.
  const mockArgs = [
    "--initial-old-space-size=64",
    "packages/mock/dist/opal-mock.js",
    "--port",
    "0",
    "--profile",
    "instant",
    "--model",
    "llama-3-8b",
    "llama-3-70b",
  ];
  const mock = await start(mockArgs);
  const shmMock = await start([...mockArgs, "--shared-memory"]);

  // The receiving side of every streaming path runs in a plain-JavaScript child process, as an
  // integrator's process runs the SDK (this process carries the TypeScript loader). Once as Node
  // starts by default, for the targets; once with the flag docs/guides/integrator.md suggests for
  // clients, to report what it gains.
  const clients = (flags: string[], paths = "bare,bareKeeping,inline,shm") =>
    JSON.parse(
      execFileSync(
        process.execPath,
        [...flags, join(here, "stream-clients.mjs"), bare, mock, shmMock, paths],
        { cwd: root, encoding: "utf8", maxBuffer: 1 << 20 },
      )
        .trim()
        .split("\n")
        .at(-1)!,
    ) as { bare: number; bareKeeping: number; inline: number; shm: number; messageBytes: number };
  const measured = clients([]);
  const tuned = clients(["--initial-old-space-size=64"], "bare,inline");
  const { bare: bareGbps, bareKeeping: keepingGbps, inline: opalGbps, shm: shmGbps } = measured;
  const { messageBytes } = measured;
  const tcpGbps = await rawTcp(tcp, 256);
  figure(
    "client/grpc-js-stream-vs-raw-tcp",
    "GB/s",
    bareGbps,
    "raw TCP between two processes",
    tcpGbps,
    {},
  );
  // The ceiling of any grpc-js client that keeps what it receives, as the memory sink must.
  figure(
    "client/grpc-js-stream-keeping-vs-discarding",
    "GB/s",
    keepingGbps,
    "bare grpc-js stream",
    bareGbps,
    {},
  );
  figure("client/kv-stream-vs-grpc-js", "GB/s", opalGbps, "bare grpc-js stream", bareGbps, {
    target: 0.85,
  });
  figure("client/kv-stream-shm-vs-grpc-js", "GB/s", shmGbps, "bare grpc-js stream", bareGbps, {
    target: 0.85,
  });
  figure(
    "client/kv-stream-initial-old-space-vs-grpc-js",
    "GB/s",
    tuned.inline,
    "bare grpc-js stream, same process flags",
    tuned.bare,
    {},
  );
  try {
    const python = Number(
      execFileSync(
        "/usr/bin/python3",
        [
          join(here, "python_stream_client.py"),
          bare,
          String((256 * MIB) / messageBytes),
          String(messageBytes),
        ],
        { encoding: "utf8" },
      ).trim(),
    );
    figure("client/kv-stream-vs-python-grpcio", "GB/s", opalGbps, "Python grpcio stream", python, {
      target: 1.3,
    });
    figure(
      "client/kv-stream-shm-vs-python-grpcio",
      "GB/s",
      shmGbps,
      "Python grpcio stream",
      python,
      { target: 1.3 },
    );
  } catch (error) {
    console.error(`Python grpcio baseline skipped: ${(error as Error).message.split("\n")[0]}`);
  }
  // The same cache from the same device, read by Python grpcio: what a Python integrator gets.
  const peer = await createPythonPeer();
  if (typeof peer === "string") {
    console.error(`Python grpcio device baseline skipped: ${peer}`);
  } else {
    try {
      const python = Number(
        (await peer.run(join(here, "python_prefill_client.py"), [mock, "6"])).trim(),
      );
      for (const [name, value] of [
        ["client/kv-stream-vs-python-device-client", opalGbps],
        ["client/kv-stream-shm-vs-python-device-client", shmGbps],
      ] as const) {
        figure(name, "GB/s", value, "Python grpcio client of the same device", python, {
          target: 1.3,
        });
      }
    } finally {
      peer.dispose();
    }
  }

  // Unary latency: GetInfo through the SDK against the same call through bare grpc-js.
  const raw = new Client(mock, credentials.createInsecure(), channel);
  const m = DeviceServiceDefinition.getInfo;
  const rawCall = () =>
    new Promise<void>((resolve, reject) =>
      raw.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, {}, (error) =>
        error ? reject(error) : resolve(),
      ),
    );
  const device = createDeviceClient(mock);
  const sdkCall = () => device.getInfo().then(() => undefined);
  const median = async (call: () => Promise<void>) => {
    for (let i = 0; i < 200; i++) await call();
    const times: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const started = performance.now();
      await call();
      times.push(performance.now() - started);
    }
    return times.sort((a, b) => a - b)[500]!;
  };
  const rawMs = await median(rawCall);
  const sdkMs = await median(sdkCall);
  figure("client/unary-latency-vs-grpc-js", "ms", sdkMs, "bare grpc-js unary", rawMs, {
    max: 1.1 * rawMs,
  });
  raw.close();
  await device.close();

  // 4 GiB into a file sink in a separate client process (the built package, no TypeScript
  // loader), inline and through shared memory: its peak RSS must stay bounded either way.
  const dir = mkdtempSync(join(tmpdir(), "opal-bench-"));
  try {
    for (const [plane, target, name] of [
      ["inline", mock, "client/file-sink-rss-4gib"],
      ["shared-memory", shmMock, "client/file-sink-rss-4gib-shm"],
    ] as const) {
      const out = execFileSync(
        process.execPath,
        [join(here, "file-sink-rss.mjs"), target, join(dir, `${plane}.okv`), plane],
        { cwd: root, encoding: "utf8", maxBuffer: 1 << 20 },
      );
      const { maxRssMiB, gigabytes } = JSON.parse(out.trim().split("\n").at(-1)!);
      figure(name, "MiB", maxRssMiB, null, null, { max: 256 });
      console.error(`streamed ${gigabytes.toFixed(2)} GB into the file sink (${plane})`);
      rmSync(join(dir, `${plane}.okv`), { force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const child of children) child.kill("SIGTERM");
  });
