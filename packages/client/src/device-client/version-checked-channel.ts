import { createCallSignal, untilAborted } from "@opal/core";
import {
  assertCompatibleVersion,
  createGrpcClient,
  DeviceServiceDefinition,
  type GrpcCallOptions,
  type GrpcChannel,
} from "@opal/protocol";

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
 * that read, each waiting under its own signal and `timeoutMs` (the wait counts against the call's
 * deadline), and later calls go straight through. A device of
 * another major version fails every such call with FAILED_PRECONDITION PROTOCOL_VERSION_UNSUPPORTED
 * naming both versions, and is not called again; a failed read fails the calls waiting for it and
 * is made again on the next call. A call whose signal has already aborted reads nothing. Once the
 * version has passed, calls go straight to `channel`: a KV stream carries no extra step.
 */
export function versionCheckedChannel(
  channel: GrpcChannel,
  unaryTimeoutMs: number,
): VersionCheckedChannel {
  const { getInfo } = createGrpcClient(DeviceServiceDefinition, channel);
  let checked: Promise<void> | undefined;
  let passed = false;
  const assertVersion = (protocolVersion: string) => {
    assertCompatibleVersion(protocolVersion);
    passed = true;
  };
  const settle = (protocolVersion: string) => {
    if (checked) return;
    checked = Promise.resolve().then(() => assertVersion(protocolVersion));
    checked.catch(() => {}); // a refusal is the next call's error, not an unhandled one
  };
  const check = async (options: GrpcCallOptions = {}): Promise<GrpcCallOptions> => {
    if (!options.signal?.aborted) {
      checked ??= getInfo({}, { timeoutMs: unaryTimeoutMs }).then(
        (info) => assertVersion(info.protocolVersion),
        (error: unknown) => {
          checked = undefined;
          throw error;
        },
      );
    }
    const started = performance.now();
    const wait = createCallSignal(options);
    try {
      await untilAborted(checked ?? Promise.resolve(), wait.signal);
    } finally {
      wait.dispose();
    }
    if (options.timeoutMs === undefined) return options;
    // The wait counts against the call's deadline.
    const left = Math.max(1, options.timeoutMs - (performance.now() - started));
    return { ...options, timeoutMs: left };
  };
  const direct = (method: { readonly path: string }) =>
    passed || method.path === DeviceServiceDefinition.getInfo.path;
  return { channel: checkedChannel(channel, direct, check), settle };
}

/**
 * `channel` with `check` awaited before each call that is not `direct` (the stream calls' on their
 * first `next()`), each such call made with the options `check` returns.
 */
function checkedChannel(
  channel: GrpcChannel,
  direct: (method: { readonly path: string }) => boolean,
  check: (options?: GrpcCallOptions) => Promise<GrpcCallOptions>,
): GrpcChannel {
  async function* afterCheck<T>(
    options: GrpcCallOptions | undefined,
    open: (options: GrpcCallOptions) => AsyncIterable<T>,
  ): AsyncGenerator<T> {
    yield* open(await check(options));
  }
  return {
    address: channel.address,
    unary: async (method, request, options) =>
      channel.unary(method, request, direct(method) ? options : await check(options)),
    serverStream: (method, request, options) =>
      direct(method)
        ? channel.serverStream(method, request, options)
        : afterCheck(options, (o) => channel.serverStream(method, request, o)),
    clientStream: async (method, requests, options) =>
      channel.clientStream(method, requests, direct(method) ? options : await check(options)),
    bidiStream: (method, requests, options) =>
      direct(method)
        ? channel.bidiStream(method, requests, options)
        : afterCheck(options, (o) => channel.bidiStream(method, requests, o)),
    get callsInProgress() {
      return channel.callsInProgress;
    },
    close: (reason) => channel.close(reason),
  };
}
