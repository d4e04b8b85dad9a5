import { DRIVER_API_VERSION, type ModelInfo } from "@opal/driver";
import { loadMockModel } from "./load-mock-model";
import type { MockDevice, MockDeviceOptions } from "./mock-device";
import { runMockUnary } from "./mock-device/enter-mock-call";
import { fetchMockKv } from "./mock-device/fetch-mock-kv";
import {
  createMockDeviceState,
  mockDeviceClosedError,
  setMockFaults,
} from "./mock-device/mock-device-state";
import { prefillMock } from "./mock-device/prefill-mock";
import { unloadMockModel } from "./mock-device/unload-mock-model";
import { watchMockTelemetry } from "./mock-device/watch-mock-telemetry";

/**
 * Creates an Iris-style mock prefill device (see docs/guides/mock.md). INVALID_ARGUMENT for an
 * unknown profile or model, invalid limits or an invalid fault configuration.
 *
 * Power and energy: a prefill draws the profile's active power, limited by `powerCapWatts` but
 * never below idle power; its `energyJoules` is that power × its device time. Telemetry reports
 * idle power plus that draw's excess over idle × utilization, and an energy total of idle power ×
 * wall time plus every prefill's energy: all of it once completed, and for a prefill that ends
 * early (fault, cancellation, deadline), the device time it ran until then.
 */
export function createMockDevice(options: MockDeviceOptions = {}): MockDevice {
  const state = createMockDeviceState(options);
  const { models, store, slots } = state;
  return {
    driverApiVersion: DRIVER_API_VERSION,
    // The mock admits prefills itself: its telemetry reports its slots and queue.
    queuesPrefills: true,
    profile: state.profile,
    get stats() {
      return {
        prefillsStarted: state.prefillsStarted,
        prefillsCompleted: state.prefillsCompleted,
        faultsInjected: state.faultsInjected,
        retainedKvBytes: store.byteLength,
        activePrefills: slots.active,
      };
    },
    setFaults: (config) => setMockFaults(state, config),
    getInfo: (call) => runMockUnary(state, "GetInfo", call, () => state.info),
    getCapabilities: (call) =>
      runMockUnary(state, "GetCapabilities", call, () => state.capabilities),
    probe: (call) => runMockUnary(state, "Probe", call, () => "ready" as const),
    listModels: (call) =>
      runMockUnary(state, "ListModels", call, (): ModelInfo[] =>
        [...models.values()].map((m) => m.info),
      ),
    loadModel: (request, call) =>
      runMockUnary(state, "LoadModel", call, () => loadMockModel(models, request, state.maxModels)),
    unloadModel: (modelId, call) =>
      runMockUnary(state, "UnloadModel", call, () => unloadMockModel(state, modelId)),
    prefill: (request, call) => prefillMock(state, request, call),
    fetchKv: (request, call) => fetchMockKv(state, request, call),
    releaseKv: (kvHandle, call) =>
      runMockUnary(state, "ReleaseKv", call, (tenant) => ({
        released: store.release(tenant, kvHandle),
      })),
    watchTelemetry: (request, call) => watchMockTelemetry(state, request, call),
    async close() {
      state.closed = true;
      state.calls.abortAll(mockDeviceClosedError());
      store.clear();
    },
  };
}
