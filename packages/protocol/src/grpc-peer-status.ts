import { OpalError } from "@opal/core";

/**
 * A call's status exactly as the server (or the transport) ended it: the `cause` of every
 * `OpalError` a gRPC client of this package raises for a failure it did not cause itself.
 */
export interface GrpcPeerStatus {
  /** The status code, as received (it may lie outside `Code`). */
  readonly code: number;
  /** The status message. */
  readonly details: string;
  /** The `grpc-status-details-bin` trailer, undecoded, when the server sent one. */
  readonly statusDetailsBin?: Uint8Array;
}

/** The {@link GrpcPeerStatus} behind `error`, or undefined when the client ended the call itself. */
export function peerStatusOf(error: unknown): GrpcPeerStatus | undefined {
  const cause = error instanceof OpalError ? error.cause : undefined;
  return cause instanceof PeerStatus ? cause : undefined;
}

/** The class of {@link GrpcPeerStatus} values, so that {@link peerStatusOf} can tell them apart. */
export class PeerStatus implements GrpcPeerStatus {
  constructor(
    readonly code: number,
    readonly details: string,
    readonly statusDetailsBin?: Uint8Array,
  ) {}
}
