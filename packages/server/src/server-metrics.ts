import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { PrefillDriver, TelemetrySnapshot } from "@opal/driver";
import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Prometheus metrics of one device server, in their own registry. */
export interface ServerMetrics {
  readonly registry: Registry;
  /** Records one finished RPC. */
  recordCall(method: string, code: number, seconds: number): void;
  /** Adds KV bytes sent to callers. */
  addKvBytes(bytes: number): void;
  /** Tracks open streams. */
  streamOpened(method: string): () => void;
  /** Serves `/metrics` over HTTP on `host:port`; resolves with the bound port. */
  listen(host: string, port: number): Promise<number>;
  close(): Promise<void>;
}

/** Creates the metrics of a server; device gauges read a fresh telemetry snapshot at each scrape. */
export function createServerMetrics(driver: PrefillDriver): ServerMetrics {
  const registry = new Registry();
  const calls = new Counter({
    name: "opal_requests_total",
    help: "RPCs finished, by method and gRPC status code.",
    labelNames: ["method", "code"],
    registers: [registry],
  });
  const durations = new Histogram({
    name: "opal_request_duration_seconds",
    help: "RPC duration in seconds, by method.",
    labelNames: ["method"],
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60],
    registers: [registry],
  });
  const kvBytes = new Counter({
    name: "opal_kv_bytes_sent_total",
    help: "KV-cache bytes sent to callers.",
    registers: [registry],
  });
  const streams = new Gauge({
    name: "opal_active_streams",
    help: "Open streaming RPCs, by method.",
    labelNames: ["method"],
    registers: [registry],
  });
  let snapshot: Promise<TelemetrySnapshot | undefined> | undefined;
  const latest = () => {
    snapshot ??= firstSnapshot(driver).finally(() => {
      setTimeout(() => {
        snapshot = undefined;
      }, 100).unref();
    });
    return snapshot;
  };
  const deviceGauge = (name: string, help: string, pick: (s: TelemetrySnapshot) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const s = await latest();
        if (s) this.set(pick(s));
      },
    });
  deviceGauge(
    "opal_device_queue_depth",
    "Prefills waiting for a device slot.",
    (s) => s.queueDepth,
  );
  deviceGauge(
    "opal_device_active_prefills",
    "Prefills running on the device.",
    (s) => s.activePrefills,
  );
  deviceGauge(
    "opal_device_utilization_ratio",
    "Device compute utilisation, 0..1.",
    (s) => s.utilization,
  );
  deviceGauge("opal_device_power_watts", "Device power draw in watts.", (s) => s.powerWatts);
  deviceGauge(
    "opal_device_energy_joules_total",
    "Device energy since start, in joules.",
    (s) => s.energyJoulesTotal,
  );
  deviceGauge(
    "opal_device_retained_kv_bytes",
    "Bytes of retained KV caches.",
    (s) => s.retainedKvBytes,
  );
  deviceGauge(
    "opal_device_temperature_celsius",
    "Device temperature in °C.",
    (s) => s.temperatureCelsius,
  );

  let http: Server | undefined;
  return {
    registry,
    recordCall(method, code, seconds) {
      calls.inc({ method, code: String(code) });
      durations.observe({ method }, seconds);
    },
    addKvBytes(bytes) {
      kvBytes.inc(bytes);
    },
    streamOpened(method) {
      streams.inc({ method });
      let open = true;
      return () => {
        if (open) streams.dec({ method });
        open = false;
      };
    },
    listen(host, port) {
      http = createServer(async (req, res) => {
        if (req.url !== "/metrics") {
          res.writeHead(404).end("not found: try /metrics\n");
          return;
        }
        try {
          const body = await registry.metrics();
          res.writeHead(200, { "content-type": registry.contentType }).end(body);
        } catch (error) {
          res.writeHead(500).end(String(error));
        }
      });
      return new Promise((resolve, reject) => {
        http!.once("error", reject);
        http!.listen(port, host, () => resolve((http!.address() as AddressInfo).port));
      });
    },
    close() {
      return new Promise((resolve) => (http ? http.close(() => resolve()) : resolve()));
    },
  };
}

async function firstSnapshot(driver: PrefillDriver): Promise<TelemetrySnapshot | undefined> {
  const controller = new AbortController();
  try {
    for await (const s of driver.watchTelemetry(
      { intervalMs: 1000 },
      { signal: controller.signal },
    )) {
      return s;
    }
  } catch {
    return undefined;
  } finally {
    controller.abort();
  }
  return undefined;
}
