import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import {
  type ChannelCredentials,
  Client,
  type ClientDuplexStream,
  credentials as grpcCredentials,
} from "@grpc/grpc-js";
import {
  loadFileDescriptorSetFromBuffer,
  loadSync,
  type MethodDefinition,
  type PackageDefinition,
  type ServiceDefinition,
} from "@grpc/proto-loader";

/** The two versions of gRPC server reflection a device serves (`GEN-9`). */
export type ReflectionVersion = "v1" | "v1alpha";

/** A minimal gRPC server-reflection client, like `grpcurl list` / `grpcurl describe`. */
export interface ReflectionClient {
  /** The reflection service this client calls, e.g. `grpc.reflection.v1.ServerReflection`. */
  readonly serviceName: string;
  /** Fully-qualified names of the services the server lists (`list_services`). */
  listServices(): Promise<string[]>;
  /**
   * Serialized `google.protobuf.FileDescriptorProto`s of the file declaring `symbol` and its
   * dependencies (`file_containing_symbol`). Rejects with the server's error response, if any.
   */
  fileContainingSymbol(symbol: string): Promise<Uint8Array[]>;
  /** Closes the channel. */
  close(): void;
}

/** Options of {@link createReflectionClient}; every field is optional. */
export interface ReflectionClientOptions {
  /** Reflection version; default "v1". */
  readonly version?: ReflectionVersion;
  /** Channel credentials; default plaintext. */
  readonly credentials?: ChannelCredentials;
  /** Deadline of each request, in ms; default 5,000. */
  readonly timeoutMs?: number;
}

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Uint8Array[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

const reflectionProtoRoot = join(
  dirname(createRequire(import.meta.url).resolve("@grpc/reflection/package.json")),
  "build",
  "proto",
);

/**
 * Connects to the server reflection service at `address` (`host:port`). Each request opens one
 * `ServerReflectionInfo` stream, sends one request and reads one response.
 */
export function createReflectionClient(
  address: string,
  options: ReflectionClientOptions = {},
): ReflectionClient {
  const version = options.version ?? "v1";
  const serviceName = `grpc.reflection.${version}.ServerReflection`;
  const definition = loadSync(`grpc/reflection/${version}/reflection.proto`, {
    includeDirs: [reflectionProtoRoot],
    keepCase: false,
    defaults: true,
    oneofs: true,
  });
  const method = (definition[serviceName] as ServiceDefinition)
    .ServerReflectionInfo as MethodDefinition<Record<string, unknown>, ReflectionResponse>;
  const client = new Client(address, options.credentials ?? grpcCredentials.createInsecure());
  const path = `/${serviceName}/ServerReflectionInfo`;
  const timeoutMs = options.timeoutMs ?? 5_000;

  const ask = (request: Record<string, unknown>): Promise<ReflectionResponse> =>
    new Promise((resolve, reject) => {
      const stream: ClientDuplexStream<
        Record<string, unknown>,
        ReflectionResponse
      > = client.makeBidiStreamRequest(path, method.requestSerialize, method.responseDeserialize, {
        deadline: Date.now() + timeoutMs,
      });
      let answered = false;
      stream.on("data", (response: ReflectionResponse) => {
        answered = true;
        stream.end();
        if (response.errorResponse) {
          reject(
            new Error(
              `reflection error ${response.errorResponse.errorCode}: ${response.errorResponse.errorMessage}`,
            ),
          );
        } else resolve(response);
      });
      stream.on("error", (error) => {
        if (!answered) reject(error);
      });
      stream.on("end", () => {
        if (!answered) reject(new Error(`${serviceName} ended without a response`));
      });
      stream.write(request);
    });

  return {
    serviceName,
    async listServices() {
      const response = await ask({ listServices: "*" });
      return (response.listServicesResponse?.service ?? []).map((s) => s.name);
    },
    async fileContainingSymbol(symbol) {
      const response = await ask({ fileContainingSymbol: symbol });
      return (response.fileDescriptorResponse?.fileDescriptorProto ?? []).map(
        (b) => new Uint8Array(b),
      );
    },
    close() {
      client.close();
    },
  };
}

/**
 * Builds a grpc-js package definition from reflected `FileDescriptorProto`s alone (as a dynamic
 * client would): its keys are the fully-qualified services and messages they declare.
 */
export function loadReflectedDefinitions(files: readonly Uint8Array[]): PackageDefinition {
  // A FileDescriptorSet is `repeated FileDescriptorProto file = 1`: concatenate tagged fields.
  const parts: Buffer[] = [];
  for (const file of files) {
    parts.push(Buffer.from([0x0a]), encodeVarint(file.byteLength), Buffer.from(file));
  }
  return loadFileDescriptorSetFromBuffer(Buffer.concat(parts));
}

function encodeVarint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}
