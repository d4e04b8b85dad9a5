import { invalidField, MAX_TIMER_MS } from "@opal/core";
import { assertIntegerOption, assertOneOfOption, MAX_INT32 } from "../options/assert-option";

/** TLS for a device client; with `certChainPem` and `privateKeyPem` it presents a client certificate (mutual TLS). */
export interface ClientTlsOptions {
  /** PEM CA bundle to verify the device; default the system roots. */
  readonly caPem?: string | Uint8Array;
  /** PEM client certificate chain, for mutual TLS. */
  readonly certChainPem?: string | Uint8Array;
  /** PEM client private key, for mutual TLS. */
  readonly privateKeyPem?: string | Uint8Array;
  /** Expected server name when it differs from the target host (e.g. "localhost" in tests). */
  readonly serverNameOverride?: string;
}

/** HTTP/2 and gRPC channel settings, explicit because grpc-js's defaults throttle KV streams. */
export interface ClientChannelOptions {
  /** HTTP/2 flow-control window in bytes; default 16 MiB (grpc-js: 64 KiB). */
  readonly flowControlWindowBytes?: number;
  /** Largest message received or sent, in bytes; default 64 MiB (grpc-js: 4 MiB receive). */
  readonly maxMessageBytes?: number;
  /** Keepalive ping interval in ms; default 30,000 (never below the server's published 10,000). */
  readonly keepaliveTimeMs?: number;
  /** Keepalive acknowledgement timeout in ms; default 10,000. */
  readonly keepaliveTimeoutMs?: number;
}

/** Options of `createDeviceClient`; every field is optional. */
export interface DeviceClientOptions {
  /** TLS; default plaintext. */
  readonly tls?: ClientTlsOptions;
  /** Bearer token sent as `authorization: Bearer <token>` on every call; never logged. */
  readonly token?: string;
  readonly channel?: ClientChannelOptions;
  /** Deadline applied to calls that pass no `timeoutMs`, in ms; default none (streams) and 30,000 (unary calls). */
  readonly defaultUnaryTimeoutMs?: number;
  /**
   * The chunk size a `prefill` or `fetchKv` asks for when its request leaves `maxChunkBytes` unset.
   * `"largest"` (default): the device's `maxChunkBytes` (GetCapabilities, read once per client),
   * capped by `channel.maxMessageBytes` less 64 KiB, so streams carry fewer, larger messages and a
   * chunk that holds a whole layer part is kept without a copy; for a sink that copies chunks (a
   * file, a decoder's buffers) at most 2 MiB, which keeps its memory lower. `"device"`: the device's
   * `preferredChunkBytes` (the request goes out with 0).
   */
  readonly chunkBytes?: "largest" | "device";
  /**
   * How a `prefill`'s KV bytes travel. `"auto"` (default): through a shared-memory region this
   * client creates in `/dev/shm` (PF-43) when the target is on this host (a loopback address,
   * `localhost` or a unix socket), the host is Linux, and the device lists the plane in its
   * capabilities; otherwise, and for pushes, inline in the gRPC stream. When the device cannot
   * open the region (it runs in another mount namespace) the client goes inline
   * for good and retries the call inline. `"inline"`: always in the stream. `"shared-memory"`:
   * always offer a region; a device that cannot use it fails the call. `fetchKv` is always
   * inline (PF-45). Chunks, CRCs, the digest and every completion rule are the same either way.
   */
  readonly dataPlane?: "auto" | "inline" | "shared-memory";
  /**
   * Largest cache a prefill sends through shared memory, in bytes; larger ones go inline. Default:
   * no limit but the free space of `/dev/shm` when the region is made (a cache that does not fit
   * goes inline; with `dataPlane: "shared-memory"` it fails FAILED_PRECONDITION).
   */
  readonly sharedMemoryMaxBytes?: number;
}

/**
 * Checks the options of `createDeviceClient`: channel figures integers in range
 * (`keepaliveTimeMs` at least 10,000: clients MUST NOT ping more often, TR-4);
 * `defaultUnaryTimeoutMs` and `sharedMemoryMaxBytes` integers >= 0; `chunkBytes` and `dataPlane`
 * one of their values; `token` printable ASCII (it travels in a header). Throws INVALID_ARGUMENT
 * INVALID_FIELD naming the field after `path` (`client.` in a pool's options), what it expects and
 * what it got (never the token itself).
 */
export function assertDeviceClientOptions(options: DeviceClientOptions, path = ""): void {
  const channel = options.channel ?? {};
  const figures: [keyof ClientChannelOptions, number, number][] = [
    ["flowControlWindowBytes", 65_535, MAX_INT32],
    ["maxMessageBytes", 1, MAX_INT32],
    ["keepaliveTimeMs", 10_000, MAX_TIMER_MS],
    ["keepaliveTimeoutMs", 1, MAX_TIMER_MS],
  ];
  for (const [field, min, max] of figures) {
    if (channel[field] !== undefined)
      assertIntegerOption(`${path}channel.${field}`, channel[field], min, max);
  }
  if (options.defaultUnaryTimeoutMs !== undefined)
    assertIntegerOption(
      `${path}defaultUnaryTimeoutMs`,
      options.defaultUnaryTimeoutMs,
      0,
      MAX_TIMER_MS,
    );
  if (options.sharedMemoryMaxBytes !== undefined)
    assertIntegerOption(`${path}sharedMemoryMaxBytes`, options.sharedMemoryMaxBytes, 0);
  if (options.chunkBytes !== undefined)
    assertOneOfOption(`${path}chunkBytes`, options.chunkBytes, ["largest", "device"]);
  if (options.dataPlane !== undefined)
    assertOneOfOption(`${path}dataPlane`, options.dataPlane, ["auto", "inline", "shared-memory"]);
  const token: unknown = options.token;
  if (token !== undefined && (typeof token !== "string" || !/^[\x20-\x7e]*$/.test(token))) {
    const description = "expected a string of printable ASCII, got another value (not shown)";
    throw invalidField(`${path}token`, description);
  }
}
