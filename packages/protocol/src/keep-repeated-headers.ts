import type { Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type { Server } from "@grpc/grpc-js";
import { Code, OpalError } from "@opal/core";

/**
 * Node's HTTP/2 layer keeps only the first value of a repeated single-value header such as
 * `authorization` (lib/internal/http2/util.js, `kSingleValueHeaders`), so grpc-js would
 * authenticate a request carrying two tokens with the first: a proxy that checked the other one
 * and the device would disagree on who is calling. This puts every value of the `names` headers
 * back (an array, which grpc-js turns into repeated metadata) before grpc-js reads them, so the
 * authenticator can refuse the request.
 *
 * Call after binding. It reaches grpc-js's private `http2Servers` map (present in 1.14); when that
 * is missing it throws INTERNAL, so a grpc-js upgrade that changes it fails at start-up and in
 * server/test/security.test.ts "ambiguous credentials", never silently.
 */
export function keepRepeatedHeaders(server: Server, names: readonly string[]): void {
  const servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
  if (!(servers instanceof Map)) {
    throw new OpalError(
      Code.INTERNAL,
      "grpc-js no longer exposes http2Servers: the server cannot see repeated headers",
    );
  }
  const wanted = new Set(names);
  for (const http2Server of servers.keys()) {
    http2Server.prependListener(
      "stream",
      (_stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, raw: string[]) => {
        const values = new Map<string, string[]>();
        for (let i = 0; i + 1 < raw.length; i += 2) {
          const name = raw[i]!.toLowerCase();
          if (wanted.has(name)) values.set(name, [...(values.get(name) ?? []), raw[i + 1]!]);
        }
        for (const [name, all] of values) {
          if (all.length > 1) (headers as Record<string, string[]>)[name] = all;
        }
      },
    );
  }
}
