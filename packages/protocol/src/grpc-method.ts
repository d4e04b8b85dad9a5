/** What a client needs of one method of a grpc-js service definition. */
export interface GrpcMethod<Request, Response> {
  /** `/package.Service/Method`. */
  readonly path: string;
  /** Whether the client sends a stream of requests. */
  readonly requestStream: boolean;
  /** Whether the server answers with a stream of responses. */
  readonly responseStream: boolean;
  /** Encodes one request message (protobuf bytes). */
  requestSerialize(request: Request): Buffer;
  /** Decodes one response message from its protobuf bytes; throws for bytes that do not parse. */
  responseDeserialize(bytes: Buffer): Response;
}

/** The request type a client sends for a method definition (its `requestSerialize` input). */
export type GrpcRequest<M> = M extends { requestSerialize(request: infer R): Buffer } ? R : never;

/** The response type a client receives for a method definition (`responseDeserialize`'s output). */
export type GrpcResponse<M> = M extends { responseDeserialize(bytes: Buffer): infer R } ? R : never;
