import { type CallSignal, sleep } from "@opal/core";
import type { DriverCallOptions } from "@opal/driver";
import { type MockDeviceState, mockDeviceClosedError } from "./mock-device-state";

/** A call admitted by {@link enterMockCall}: its signal (dispose it when the call ends) and tenant. */
export interface MockCall {
  readonly scope: CallSignal;
  readonly tenant: string;
}

/**
 * The common entry of every RPC of the mock: UNAVAILABLE `SHUTTING_DOWN` once closed, then the
 * call's signal (the caller's signal, its deadline and `close()`), the injected latency and the
 * injected error for `rpc`. On success the caller owns `scope` and must dispose it.
 */
export async function enterMockCall(
  state: MockDeviceState,
  rpc: string,
  call: DriverCallOptions = {},
): Promise<MockCall> {
  if (state.closed) throw mockDeviceClosedError();
  const scope = state.calls.open(call);
  try {
    const latency = state.faults.latencyMs();
    if (latency > 0) await sleep(latency, scope.signal);
    const injected = state.faults.errorFor(rpc);
    if (injected) throw injected;
  } catch (error) {
    scope.dispose();
    throw error;
  }
  return { scope, tenant: call.tenant ?? "default" };
}

/** Runs a unary RPC: {@link enterMockCall}, then `run` with the caller's tenant. */
export async function runMockUnary<T>(
  state: MockDeviceState,
  rpc: string,
  call: DriverCallOptions | undefined,
  run: (tenant: string) => T | Promise<T>,
): Promise<T> {
  const { scope, tenant } = await enterMockCall(state, rpc, call);
  try {
    return await run(tenant);
  } finally {
    scope.dispose();
  }
}
