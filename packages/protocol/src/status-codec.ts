import {
  Code,
  type FieldViolation,
  isCode,
  isReason,
  OpalError,
  type Reason,
  Reason as Reasons,
  type ResourceInfo,
} from "@opal/core";
import { google } from "./gen/pb.js";

/** The `google.rpc.ErrorInfo.domain` of every OPAL error. */
export const ERROR_DOMAIN = "opal.device";

const TYPE_PREFIX = "type.googleapis.com/";
const ERROR_INFO = `${TYPE_PREFIX}google.rpc.ErrorInfo`;
const RETRY_INFO = `${TYPE_PREFIX}google.rpc.RetryInfo`;
const BAD_REQUEST = `${TYPE_PREFIX}google.rpc.BadRequest`;
const RESOURCE_INFO = `${TYPE_PREFIX}google.rpc.ResourceInfo`;

/** Largest encoded status accepted by {@link decodeStatus}, in bytes (grpc-js caps headers at 8 KiB by default, this bounds hostile input). */
export const MAX_STATUS_BYTES = 64 * 1024;

/**
 * Encodes an error as a `google.rpc.Status`: code, message, and the details it carries —
 * always an `ErrorInfo` (domain {@link ERROR_DOMAIN}) when it has a reason, a `RetryInfo` when it has
 * `retryDelayMs`, a `BadRequest` when it has field violations, a `ResourceInfo` when it names a
 * resource. The result is what goes in the `grpc-status-details-bin` trailer.
 */
export function encodeStatus(error: OpalError): Uint8Array {
  const details: google.protobuf.IAny[] = [];
  if (error.reason) {
    details.push({
      type_url: ERROR_INFO,
      value: google.rpc.ErrorInfo.encode({
        reason: error.reason,
        domain: ERROR_DOMAIN,
        metadata: { ...error.metadata },
      }).finish(),
    });
  }
  if (error.retryDelayMs !== undefined) {
    const ms = Math.max(0, Math.round(error.retryDelayMs));
    details.push({
      type_url: RETRY_INFO,
      value: google.rpc.RetryInfo.encode({
        retryDelay: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 },
      }).finish(),
    });
  }
  if (error.fieldViolations.length > 0) {
    details.push({
      type_url: BAD_REQUEST,
      value: google.rpc.BadRequest.encode({
        fieldViolations: error.fieldViolations.map((v) => ({ ...v })),
      }).finish(),
    });
  }
  if (error.resource) {
    details.push({
      type_url: RESOURCE_INFO,
      value: google.rpc.ResourceInfo.encode({
        resourceType: error.resource.resourceType,
        resourceName: error.resource.resourceName,
        owner: error.resource.owner ?? "",
        description: error.resource.description ?? "",
      }).finish(),
    });
  }
  return google.rpc.Status.encode({
    code: error.code,
    message: error.rawMessage,
    details,
  }).finish();
}

/**
 * Decodes a `google.rpc.Status` into an `OpalError` with every detail it understands; unknown detail
 * types are ignored. Bytes that are not a valid Status (or exceed {@link MAX_STATUS_BYTES}) throw an
 * `OpalError` with code INTERNAL and reason `INVALID_STATUS_DETAILS`.
 */
export function decodeStatus(bytes: Uint8Array): OpalError {
  if (bytes.byteLength > MAX_STATUS_BYTES) {
    throw invalidStatus(`${bytes.byteLength} bytes exceed the ${MAX_STATUS_BYTES}-byte limit`);
  }
  let status: google.rpc.Status;
  try {
    status = google.rpc.Status.decode(bytes);
  } catch (cause) {
    throw invalidStatus((cause as Error).message, cause);
  }
  let reason: Reason | undefined;
  let metadata: Record<string, string> | undefined;
  let retryDelayMs: number | undefined;
  let fieldViolations: FieldViolation[] | undefined;
  let resource: ResourceInfo | undefined;
  try {
    for (const detail of status.details) {
      const value = detail.value ?? new Uint8Array();
      switch (detail.type_url) {
        case ERROR_INFO: {
          const info = google.rpc.ErrorInfo.decode(value);
          // A reason outside errors.proto (a newer or a broken device) is dropped: the code stands.
          reason = isReason(info.reason) ? info.reason : undefined;
          metadata = { ...info.metadata };
          break;
        }
        case RETRY_INFO: {
          const delay = google.rpc.RetryInfo.decode(value).retryDelay;
          retryDelayMs = Number(delay?.seconds ?? 0) * 1000 + Math.round((delay?.nanos ?? 0) / 1e6);
          break;
        }
        case BAD_REQUEST:
          fieldViolations = google.rpc.BadRequest.decode(value).fieldViolations.map((v) => ({
            field: v.field ?? "",
            description: v.description ?? "",
          }));
          break;
        case RESOURCE_INFO: {
          const info = google.rpc.ResourceInfo.decode(value);
          resource = {
            resourceType: info.resourceType,
            resourceName: info.resourceName,
            ...(info.owner ? { owner: info.owner } : {}),
            ...(info.description ? { description: info.description } : {}),
          };
          break;
        }
      }
    }
  } catch (cause) {
    throw invalidStatus(`a detail failed to decode: ${(cause as Error).message}`, cause);
  }
  const code = isCode(status.code) ? status.code : Code.UNKNOWN;
  return new OpalError(code, status.message, {
    ...(reason ? { reason } : {}),
    ...(metadata ? { metadata } : {}),
    ...(retryDelayMs !== undefined ? { retryDelayMs } : {}),
    ...(fieldViolations ? { fieldViolations } : {}),
    ...(resource ? { resource } : {}),
  });
}

function invalidStatus(detail: string, cause?: unknown): OpalError {
  return new OpalError(Code.INTERNAL, `invalid grpc-status-details-bin: ${detail}`, {
    reason: Reasons.INVALID_STATUS_DETAILS,
    cause,
  });
}
