import { type ChannelCredentials, Client, type ClientDuplexStream } from "@grpc/grpc-js";
import { fromJSON, type MethodDefinition, type ServiceDefinition } from "@grpc/proto-loader";

/** The two reflection versions a device serves (`GEN-9`). */
export type ReflectionVersion = "v1" | "v1alpha";

/** A minimal server-reflection client: `list_services` and `file_containing_symbol`. */
export interface ReflectionClient {
  listServices(timeoutMs?: number): Promise<string[]>;
  /** Number of file descriptors returned for `symbol` (0 when the server answers with an error). */
  fileContainingSymbol(symbol: string, timeoutMs?: number): Promise<number>;
  close(): void;
}

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Uint8Array[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

// The subset of grpc/reflection/{v1,v1alpha}/reflection.proto the suite uses, as a protobufjs
// JSON descriptor (the wire format of the fields used is identical to the full file).
function reflectionJson(version: ReflectionVersion) {
  const messages = {
    ServerReflectionRequest: {
      oneofs: {
        messageRequest: { oneof: ["fileByFilename", "fileContainingSymbol", "listServices"] },
      },
      fields: {
        host: { type: "string", id: 1 },
        fileByFilename: { type: "string", id: 3 },
        fileContainingSymbol: { type: "string", id: 4 },
        listServices: { type: "string", id: 7 },
      },
    },
    ServerReflectionResponse: {
      oneofs: {
        messageResponse: {
          oneof: ["fileDescriptorResponse", "listServicesResponse", "errorResponse"],
        },
      },
      fields: {
        validHost: { type: "string", id: 1 },
        originalRequest: { type: "ServerReflectionRequest", id: 2 },
        fileDescriptorResponse: { type: "FileDescriptorResponse", id: 4 },
        listServicesResponse: { type: "ListServiceResponse", id: 6 },
        errorResponse: { type: "ErrorResponse", id: 7 },
      },
    },
    FileDescriptorResponse: {
      fields: { fileDescriptorProto: { rule: "repeated", type: "bytes", id: 1 } },
    },
    ListServiceResponse: {
      fields: { service: { rule: "repeated", type: "ServiceResponse", id: 1 } },
    },
    ServiceResponse: { fields: { name: { type: "string", id: 1 } } },
    ErrorResponse: {
      fields: { errorCode: { type: "int32", id: 1 }, errorMessage: { type: "string", id: 2 } },
    },
    ServerReflection: {
      methods: {
        ServerReflectionInfo: {
          requestType: "ServerReflectionRequest",
          requestStream: true,
          responseType: "ServerReflectionResponse",
          responseStream: true,
        },
      },
    },
  };
  return {
    nested: { grpc: { nested: { reflection: { nested: { [version]: { nested: messages } } } } } },
  };
}

/** Connects to the reflection service of `version` at `target`. */
export function createReflectionClient(
  target: string,
  credentials: ChannelCredentials,
  version: ReflectionVersion,
): ReflectionClient {
  const name = `grpc.reflection.${version}.ServerReflection`;
  const definition = fromJSON(
    reflectionJson(version) as unknown as Parameters<typeof fromJSON>[0],
    { defaults: true, oneofs: true },
  )[name] as ServiceDefinition;
  const method = definition.ServerReflectionInfo as MethodDefinition<
    Record<string, unknown>,
    ReflectionResponse
  >;
  const client = new Client(target, credentials);
  const ask = (request: Record<string, unknown>, timeoutMs: number) =>
    new Promise<ReflectionResponse>((resolve, reject) => {
      const stream: ClientDuplexStream<
        Record<string, unknown>,
        ReflectionResponse
      > = client.makeBidiStreamRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        { deadline: Date.now() + timeoutMs },
      );
      stream.on("data", (response: ReflectionResponse) => {
        resolve(response);
        stream.cancel();
      });
      stream.on("error", (error) => reject(error));
      stream.on("end", () => reject(new Error(`${name} ended without a response`)));
      stream.write(request);
      stream.end();
    });
  return {
    async listServices(timeoutMs = 5_000) {
      const response = await ask({ listServices: "*" }, timeoutMs);
      return (response.listServicesResponse?.service ?? []).map((s) => s.name);
    },
    async fileContainingSymbol(symbol, timeoutMs = 5_000) {
      const response = await ask({ fileContainingSymbol: symbol }, timeoutMs);
      return response.fileDescriptorResponse?.fileDescriptorProto.length ?? 0;
    },
    close: () => client.close(),
  };
}
