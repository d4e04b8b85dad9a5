import type { DeviceServiceDefinition, GrpcClient, opal } from "@opal/protocol";
import type { DeviceClientOptions } from "./client-options";

/** What a device client holds: its connection, settings, and the capabilities read once. */
export interface DeviceClientState {
  /** The target the client connects to. */
  readonly target: string;
  readonly options: DeviceClientOptions;
  /** The typed DeviceService client; its channel holds the calls in progress. */
  readonly rpc: GrpcClient<typeof DeviceServiceDefinition>;
  /** The channel's largest message, in bytes (bounds the chunk size asked for). */
  readonly maxMessageBytes: number;
  /** Deadline of a unary call that passes no `timeoutMs`, in ms. */
  readonly unaryTimeoutMs: number;
  /** The one GetCapabilities read shared by the client's calls (see `capabilitiesOnce`). */
  capabilitiesRead: Promise<opal.device.v1.Capabilities.$Properties> | undefined;
}
