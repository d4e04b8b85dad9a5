import type { DriverCallOptions, LoadModelRequest, LoadModelResult } from "@opal/driver";
import { fromWireLoadResult, type opal, toWireLoadModelHeader } from "@opal/protocol";
import { deviceCall } from "./device-call";
import type { DeviceClientState } from "./device-client-state";

/**
 * LoadModel (client streaming): the header, then the weights as the device reads them. Its
 * deadline is `call.timeoutMs`, else ten times the client's unary deadline. Once the call has
 * ended (the device answered early, or failed) the upload stops and the weights iterator is closed.
 */
export async function loadModel(
  state: DeviceClientState,
  request: LoadModelRequest,
  call: DriverCallOptions = {},
): Promise<LoadModelResult> {
  const timeoutMs = call.timeoutMs ?? state.unaryTimeoutMs * 10;
  const response = await deviceCall(
    state,
    (o) => state.rpc.loadModel(loadModelMessages(request), o),
    call,
    timeoutMs,
  );
  return fromWireLoadResult(response);
}

async function* loadModelMessages(
  request: LoadModelRequest,
): AsyncGenerator<opal.device.v1.LoadModelRequest.$Properties> {
  const { weights, ...header } = request;
  yield { header: toWireLoadModelHeader(header) };
  for await (const chunk of weights ?? []) yield { weightsChunk: chunk };
}
