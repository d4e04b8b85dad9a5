import type { CallOptions } from "@opal/core";
import type { DriverCallOptions } from "@opal/driver";
import type { DeviceClientState } from "./device-client-state";
import { toDeviceError } from "./to-device-error";

/**
 * One unary (or client-streaming) device call through `send`, under the caller's signal and
 * `call.timeoutMs`, else `timeoutMs` (by default the client's unary deadline); failures as
 * {@link toDeviceError}.
 */
export async function deviceCall<T>(
  state: DeviceClientState,
  send: (options: CallOptions) => Promise<T>,
  call: DriverCallOptions = {},
  timeoutMs = call.timeoutMs ?? state.unaryTimeoutMs,
): Promise<T> {
  try {
    return await send({ signal: call.signal, timeoutMs });
  } catch (error) {
    throw toDeviceError(error);
  }
}

/**
 * One server-streaming device call through `open`, each message through `map`, under the caller's
 * signal and `call.timeoutMs` (no deadline by default); failures as {@link toDeviceError}. The
 * call starts on the first `next()` and is cancelled when the caller stops early.
 */
export async function* deviceStream<Message, Event>(
  open: (options: CallOptions) => AsyncIterable<Message>,
  map: (message: Message) => Event,
  call: DriverCallOptions = {},
): AsyncGenerator<Event> {
  try {
    for await (const message of open({ signal: call.signal, timeoutMs: call.timeoutMs }))
      yield map(message);
  } catch (error) {
    throw toDeviceError(error);
  }
}
