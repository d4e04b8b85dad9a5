import { Code, isCode, OpalError } from "@opal/core";
import { createGrpcChannel } from "./create-grpc-channel";
import type { grpc } from "./gen/grpc-pb.js";
import {
  ServerReflectionV1alphaDefinition,
  ServerReflectionV1Definition,
} from "./gen/grpc-services";
import type { GrpcConnectionOptions } from "./grpc-connection-options";

/** The two versions of gRPC server reflection a device serves (`GEN-9`). */
export type ReflectionVersion = "v1" | "v1alpha";

/** `ServerReflection` of each version; the two are wire-identical, so one type serves both. */
const DEFINITIONS: Record<ReflectionVersion, typeof ServerReflectionV1Definition> = {
  v1: ServerReflectionV1Definition,
  v1alpha: ServerReflectionV1alphaDefinition,
};

/** A minimal gRPC server-reflection client, like `grpcurl list` / `grpcurl describe`. */
export interface ReflectionClient {
  /** The reflection service this client calls, e.g. `grpc.reflection.v1.ServerReflection`. */
  readonly serviceName: string;
  /** Fully-qualified names of the services the server lists (`list_services`). */
  listServices(): Promise<string[]>;
  /**
   * Serialized `google.protobuf.FileDescriptorProto`s of the file declaring `symbol` and its
   * dependencies (`file_containing_symbol`). The server's error response rejects with an
   * `OpalError` of its code, the message `reflection error <code>: <message>` and the
   * `ErrorResponse` as `cause`.
   */
  fileContainingSymbol(symbol: string): Promise<Uint8Array[]>;
  /** Ends the calls in progress and closes the channel. */
  close(): void;
}

/** Options of {@link createReflectionClient}: the connection's, a version and a deadline. */
export interface ReflectionClientOptions extends GrpcConnectionOptions {
  /** Reflection version; default "v1". */
  readonly version?: ReflectionVersion;
  /** Deadline of each request, in ms; default 5,000. */
  readonly timeoutMs?: number;
}

/**
 * Connects to the server reflection service at `address` (`host:port`). Each request opens one
 * `ServerReflectionInfo` stream, sends one request, half-closes and reads one response.
 */
export function createReflectionClient(
  address: string,
  options: ReflectionClientOptions = {},
): ReflectionClient {
  const version = options.version ?? "v1";
  const serviceName = `grpc.reflection.${version}.ServerReflection`;
  const { serverReflectionInfo } = DEFINITIONS[version];
  const channel = createGrpcChannel(address, options);
  const timeoutMs = options.timeoutMs ?? 5_000;

  const ask = async (
    request: grpc.reflection.v1.ServerReflectionRequest.$Properties,
  ): Promise<grpc.reflection.v1.ServerReflectionResponse> => {
    for await (const response of channel.bidiStream(serverReflectionInfo, [request], {
      timeoutMs,
    })) {
      const error = response.errorResponse;
      if (!error) return response;
      throw new OpalError(
        isCode(error.errorCode) ? error.errorCode : Code.UNKNOWN,
        `reflection error ${error.errorCode}: ${error.errorMessage}`,
        { cause: error },
      );
    }
    throw new OpalError(Code.UNAVAILABLE, `${serviceName} ended without a response`);
  };

  return {
    serviceName,
    async listServices() {
      const response = await ask({ listServices: "*" });
      return (response.listServicesResponse?.service ?? []).map((s) => s.name ?? "");
    },
    async fileContainingSymbol(symbol) {
      const response = await ask({ fileContainingSymbol: symbol });
      return (response.fileDescriptorResponse?.fileDescriptorProto ?? []).map(
        (b) => new Uint8Array(b),
      );
    },
    close: () => channel.close(),
  };
}
