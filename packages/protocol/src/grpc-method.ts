/** What a client needs of one method of a grpc-js service definition. */
export interface GrpcMethod<Request, Response> {
  /** `/package.Service/Method`. */
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  requestSerialize(request: Request): Buffer;
  responseDeserialize(bytes: Buffer): Response;
}

/** The request type of a method definition. */
export type GrpcRequest<M> = M extends { requestSerialize(request: infer R): Buffer } ? R : never;

/** The response type of a method definition. */
export type GrpcResponse<M> = M extends { responseDeserialize(bytes: Buffer): infer R } ? R : never;
