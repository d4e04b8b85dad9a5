import { Code, OpalError } from "@opal/core";
import type { ServiceInterceptor } from "@opal/protocol";
import type { Logger } from "pino";
import type { DeviceCallContext } from "./device-call-context";
import type { ServerMetrics } from "./server-metrics";

/**
 * The outermost interceptor of the device service: counts and times every call by method and
 * status code, tracks open response streams (`metrics`, when served), and logs failures: INTERNAL
 * and UNKNOWN at error level with the error thrown (its cause included), others at debug level.
 */
export function recordCalls(
  metrics: ServerMetrics | undefined,
  logger: Logger,
): ServiceInterceptor<DeviceCallContext> {
  return async (call, next) => {
    const { method } = call.context;
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    const closeStream = call.kind === "serverStream" ? metrics?.streamOpened(method) : undefined;
    try {
      await next();
      metrics?.recordCall(method, Code.OK, seconds());
    } catch (error) {
      const opal = error instanceof OpalError ? error : undefined;
      const code = opal?.code ?? Code.INTERNAL;
      metrics?.recordCall(method, code, seconds());
      const log = { method, code, tenant: call.context.tenant, reason: opal?.reason };
      if (code === Code.INTERNAL || code === Code.UNKNOWN) {
        logger.error({ ...log, err: error }, `${method} failed`);
      } else {
        logger.debug(log, `${method} ended with ${opal?.rawMessage}`);
      }
      throw error;
    } finally {
      closeStream?.();
    }
  };
}
