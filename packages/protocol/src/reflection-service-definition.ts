import protobuf from "protobufjs";

/** The two versions of gRPC server reflection a device serves (`GEN-9`). */
export type ReflectionVersion = "v1" | "v1alpha";

/** The `ServerReflectionRequest` fields a client of this package sends (one of them). */
export interface ReflectionRequest {
  readonly listServices?: string;
  readonly fileContainingSymbol?: string;
  readonly fileByFilename?: string;
}

/** The `ServerReflectionResponse` fields a client of this package reads (one of them is set). */
export interface ReflectionResponse {
  readonly listServicesResponse?: { readonly service: readonly { readonly name: string }[] };
  readonly fileDescriptorResponse?: { readonly fileDescriptorProto: readonly Uint8Array[] };
  readonly errorResponse?: { readonly errorCode: number; readonly errorMessage: string };
}

// The subset of grpc/reflection/{v1,v1alpha}/reflection.proto a client uses, as a protobufjs JSON
// descriptor (the wire format of these fields is that of the full file, in both versions).
const MESSAGES = {
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
};

/**
 * grpc-js client definition of `grpc.reflection.<version>.ServerReflection`: its one method,
 * `ServerReflectionInfo` (bidirectional).
 */
export function reflectionServiceDefinition(version: ReflectionVersion) {
  const name = `grpc.reflection.${version}`;
  const root = protobuf.Root.fromJSON({
    nested: { grpc: { nested: { reflection: { nested: { [version]: { nested: MESSAGES } } } } } },
  });
  const Request = root.lookupType(`${name}.ServerReflectionRequest`);
  const Response = root.lookupType(`${name}.ServerReflectionResponse`);
  return {
    serverReflectionInfo: {
      path: `/${name}.ServerReflection/ServerReflectionInfo`,
      originalName: "ServerReflectionInfo",
      requestStream: true as const,
      responseStream: true as const,
      requestSerialize: (message: ReflectionRequest): Buffer =>
        Buffer.from(Request.encode(Request.fromObject(message)).finish()),
      responseDeserialize: (bytes: Buffer): ReflectionResponse =>
        Response.toObject(Response.decode(bytes), { arrays: true }) as ReflectionResponse,
    },
  };
}
