import { sleep } from "@opal/core";
import { type Mutant, mapEvents } from "./mutant";
import { overrideDriver } from "./mutant-device";

/** Mutants of WatchTelemetry: intervals, the first snapshot, the end of the stream, energy. */
export const TELEMETRY_MUTANTS: readonly Mutant[] = [
  {
    name: "ignores interval_ms (one snapshot a second)",
    mutation: (mock) =>
      overrideDriver(mock, {
        watchTelemetry: (_r, o) => mock.watchTelemetry({ intervalMs: 1000 }, o),
      }),
    fails: ["telemetry.snapshots"],
    cites: /TM-1/,
  },
  {
    name: "sends the first snapshot only after one interval",
    mutation: (mock) =>
      overrideDriver(mock, {
        watchTelemetry: async function* (r, o) {
          await sleep(r.intervalMs ?? 1000, o?.signal);
          yield* mock.watchTelemetry(r, o);
        },
      }),
    fails: ["telemetry.snapshots"],
    cites: /TM-1/,
  },
  {
    name: "does not clamp interval_ms (a snapshot every 10 ms)",
    mutation: (mock) =>
      overrideDriver(mock, {
        watchTelemetry: async function* (_r, o) {
          for await (const snapshot of mock.watchTelemetry({ intervalMs: 1000 }, o)) {
            for (;;) {
              yield { ...snapshot, timestampUnixMs: Date.now() };
              await sleep(10, o?.signal);
            }
          }
        },
      }),
    fails: ["telemetry.interval-clamp"],
    cites: /TM-3|TM-1/,
  },
  {
    name: "ends WatchTelemetry with OK after one snapshot",
    mutation: (mock) =>
      overrideDriver(mock, {
        watchTelemetry: async function* (r, o) {
          for await (const snapshot of mock.watchTelemetry(r, o)) return yield snapshot;
        },
      }),
    fails: ["telemetry.snapshots"],
    cites: /TM-4/,
  },
  {
    name: "reports each interval's energy as energy_joules_total",
    mutation: (mock) => {
      let joules = 100;
      return overrideDriver(mock, {
        watchTelemetry: (r, o) =>
          mapEvents(mock.watchTelemetry(r, o), (s) => {
            joules -= 7;
            return { ...s, energyJoulesTotal: joules };
          }),
      });
    },
    fails: ["telemetry.snapshots"],
    cites: /TM-6/,
  },
];
