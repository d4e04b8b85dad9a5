import { createDeviceClient } from "@opal/client";
import { OpalError } from "@opal/core";
import { createMockDevice, mockProfile } from "@opal/mock";
import { collectPrefill } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { createDeviceServer } from "../src/index";
import { tinyRequest } from "./fixtures";

/** The value of the sample `name{labels}` (or `name` alone) in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function scrape(url: string): Promise<string> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/plain");
  return response.text();
}

describe("Prometheus metrics", () => {
  it("counts finished prefills and the KV bytes they sent, and exports the device gauges", async () => {
    // Instant timing, but a device that draws power, so the gauges have something to show.
    const profile = { ...mockProfile("instant"), idlePowerWatts: 42, activePowerWatts: 100 };
    const device = createMockDevice({ models: ["opal-tiny"], profile });
    const server = await createDeviceServer(device, { metricsPort: 0 });
    const client = createDeviceClient(server.address);
    try {
      expect(server.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const before = await scrape(server.metricsUrl!);
      expect(sample(before, 'opal_requests_total{method="Prefill",code="0"}')).toBeUndefined();

      const prefill = await collectPrefill(client.prefill(tinyRequest()));
      await client.probe();
      const text = await scrape(server.metricsUrl!);
      expect(sample(text, 'opal_requests_total{method="Prefill",code="0"}')).toBe(1);
      expect(sample(text, 'opal_requests_total{method="Probe",code="0"}')).toBe(1);
      expect(sample(text, "opal_kv_bytes_sent_total")).toBe(prefill.stats.kvTotalBytes);
      expect(sample(text, 'opal_request_duration_seconds_count{method="Prefill"}')).toBe(1);
      expect(sample(text, 'opal_active_streams{method="Prefill"}')).toBe(0);
      for (const gauge of [
        "opal_device_power_watts",
        "opal_device_energy_joules_total",
        "opal_device_queue_depth",
        "opal_device_active_prefills",
        "opal_device_utilization_ratio",
        "opal_device_retained_kv_bytes",
        "opal_device_temperature_celsius",
      ]) {
        expect(sample(text, gauge), gauge).toBeTypeOf("number");
        expect(Number.isFinite(sample(text, gauge)), gauge).toBe(true);
      }
      // The gauges read the driver's telemetry: idle power, and idle energy accumulating.
      expect(sample(text, "opal_device_power_watts")).toBe(42);
      expect(sample(text, "opal_device_energy_joules_total")).toBeGreaterThan(0);
      expect(sample(text, "opal_device_queue_depth")).toBe(0);

      // A failed call is counted under its status code.
      const failure = await collectPrefill(
        client.prefill(tinyRequest({ modelId: "no-such-model" })),
      ).catch((error: OpalError) => error);
      expect(failure).toBeInstanceOf(OpalError);
      const code = (failure as OpalError).code;
      const after = await scrape(server.metricsUrl!);
      expect(sample(after, `opal_requests_total{method="Prefill",code="${code}"}`)).toBe(1);
      expect(sample(after, 'opal_requests_total{method="Prefill",code="0"}')).toBe(1);
      expect((await fetch(server.metricsUrl!.replace("/metrics", "/other"))).status).toBe(404);
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
    // The metrics endpoint closes with the server.
    await expect(fetch(server.metricsUrl!)).rejects.toThrow();
  });

  it("serves no metrics endpoint unless asked", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
    expect(server.metricsUrl).toBeUndefined();
    await server.shutdown({ graceMs: 0 });
  });

  it("serves metrics on loopback, not on the device's interface, unless metricsHost names one (issue #18 item 9)", async () => {
    // 127.0.0.2 stands for a device's public interface: Linux routes all of 127/8 to loopback.
    const device = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(device, { host: "127.0.0.2", metricsPort: 0 });
    const exposed = await createDeviceServer(device, {
      host: "127.0.0.2",
      metricsPort: 0,
      metricsHost: "127.0.0.2",
    });
    try {
      expect(server.address).toMatch(/^127\.0\.0\.2:\d+$/);
      // Before the fix the metrics endpoint followed the device onto 127.0.0.2.
      expect(server.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const port = new URL(server.metricsUrl!).port;
      await expect(fetch(`http://127.0.0.2:${port}/metrics`)).rejects.toThrow();
      expect((await fetch(server.metricsUrl!)).status).toBe(200);
      expect(exposed.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.2:\d+\/metrics$/);
      expect((await fetch(exposed.metricsUrl!)).status).toBe(200);
    } finally {
      await server.shutdown({ graceMs: 0 });
      await exposed.shutdown({ graceMs: 0 });
    }
  });
});
