import {
  assertCompatibleVersion,
  createGrpcClient,
  DeviceServiceDefinition,
  type GrpcCallOptions,
  type GrpcChannel,
} from "@opal/protocol";
import { untilAborted } from "../abort/until-aborted";

/** A device channel whose calls wait for the protocol version check (`VER-2`). */
export interface VersionCheckedChannel {
  readonly channel: GrpcChannel;
  /**
   * Settles the check with the `protocol_version` of a GetInfo the caller read itself, unless a
   * check has already begun: the client's own `getInfo()` then spares the later calls another read.
   */
  settle(protocolVersion: string): void;
}

/**
 * `channel` with the protocol version checked before every call but GetInfo (`VER-2`): the first
 * such call reads GetInfo (under `unaryTimeoutMs`) and waits for it; concurrent first calls share
 * that read, each waiting under its own signal, and later calls go straight through. A device of
 * another major version fails every such call with FAILED_PRECONDITION PROTOCOL_VERSION_UNSUPPORTED
 * naming both versions, and is not called again; a failed read fails the calls waiting for it and
 * is made again on the next call. A call whose signal has already aborted reads nothing.
 */
export function versionCheckedChannel(
  channel: GrpcChannel,
  unaryTimeoutMs: number,
): VersionCheckedChannel {
  const { getInfo } = createGrpcClient(DeviceServiceDefinition, channel);
  let checked: Promise<void> | undefined;
  const settle = (protocolVersion: string) => {
    if (checked) return;
    checked = Promise.resolve().then(() => assertCompatibleVersion(protocolVersion));
    checked.catch(() => {}); // a refusal is the next call's error, not an unhandled one
  };
  const check = (method: { readonly path: string }, options: GrpcCallOptions = {}) => {
    if (method.path === DeviceServiceDefinition.getInfo.path) return Promise.resolve();
    if (!options.signal?.aborted) {
      checked ??= getInfo({}, { timeoutMs: unaryTimeoutMs }).then(
        (info) => assertCompatibleVersion(info.protocolVersion),
        (error: unknown) => {
          checked = undefined;
          throw error;
        },
      );
    }
    return untilAborted(checked ?? Promise.resolve(), options.signal);
  };
  return { channel: checkedChannel(channel, check), settle };
}

/** `channel` with `check` awaited before each call (the stream calls' on their first `next()`). */
function checkedChannel(
  channel: GrpcChannel,
  check: (method: { readonly path: string }, options?: GrpcCallOptions) => Promise<void>,
): GrpcChannel {
  async function* afterCheck<T>(
    method: { readonly path: string },
    options: GrpcCallOptions | undefined,
    open: () => AsyncIterable<T>,
  ): AsyncGenerator<T> {
    await check(method, options);
    yield* open();
  }
  return {
    address: channel.address,
    unary: async (method, request, options) => {
      await check(method, options);
      return channel.unary(method, request, options);
    },
    serverStream: (method, request, options) =>
      afterCheck(method, options, () => channel.serverStream(method, request, options)),
    clientStream: async (method, requests, options) => {
      await check(method, options);
      return channel.clientStream(method, requests, options);
    },
    bidiStream: (method, requests, options) =>
      afterCheck(method, options, () => channel.bidiStream(method, requests, options)),
    get callsInProgress() {
      return channel.callsInProgress;
    },
    close: (reason) => channel.close(reason),
  };
}
