import { Code, codeName, isCode, isReason, OpalError } from "@opal/core";
import { google } from "@opal/protocol";

/** One `google.rpc.ErrorInfo` of a status. */
export interface WireErrorInfo {
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * A failed call exactly as the device sent it: the call's code and message, and the decoded
 * `google.rpc.Status` of its `grpc-status-details-bin` trailer (absent when the device sent none).
 */
export interface WireStatus {
  /** The call's status code. */
  readonly code: number;
  /** The call's status message. */
  readonly message: string;
  /** The trailer, decoded; undefined when missing or undecodable (see `detailsError`). */
  readonly details?: WireStatusDetails;
  /** Why the trailer could not be decoded, when it was present but malformed. */
  readonly detailsError?: string;
  /** Messages the call delivered before failing (server streams), 0 for unary calls. */
  readonly messagesBefore: number;
}

/** The decoded `google.rpc.Status` of a failure. */
export interface WireStatusDetails {
  readonly code: number;
  readonly message: string;
  readonly errorInfos: readonly WireErrorInfo[];
  /** `RetryInfo.retry_delay` in ms, when present. */
  readonly retryDelayMs?: number;
  /** `BadRequest.field_violations`, when present. */
  readonly fieldViolations?: readonly { readonly field: string; readonly description: string }[];
  /** `ResourceInfo`, when present. */
  readonly resource?: { readonly resourceType: string; readonly resourceName: string };
  /** Type URLs of every detail, in order. */
  readonly typeUrls: readonly string[];
}

const PREFIX = "type.googleapis.com/google.rpc.";

/** Decodes a `grpc-status-details-bin` value; throws on malformed bytes. */
export function decodeWireStatusDetails(bytes: Uint8Array): WireStatusDetails {
  const status = google.rpc.Status.decode(bytes);
  const errorInfos: WireErrorInfo[] = [];
  let retryDelayMs: number | undefined;
  let fieldViolations: { field: string; description: string }[] | undefined;
  let resource: { resourceType: string; resourceName: string } | undefined;
  for (const detail of status.details) {
    const value = detail.value ?? new Uint8Array();
    switch (detail.type_url) {
      case `${PREFIX}ErrorInfo`: {
        const info = google.rpc.ErrorInfo.decode(value);
        errorInfos.push({
          reason: info.reason,
          domain: info.domain,
          metadata: { ...info.metadata },
        });
        break;
      }
      case `${PREFIX}RetryInfo`: {
        const delay = google.rpc.RetryInfo.decode(value).retryDelay;
        retryDelayMs = Number(delay?.seconds ?? 0) * 1000 + Math.round((delay?.nanos ?? 0) / 1e6);
        break;
      }
      case `${PREFIX}BadRequest`:
        fieldViolations = [
          ...(fieldViolations ?? []),
          ...google.rpc.BadRequest.decode(value).fieldViolations.map((v) => ({
            field: v.field ?? "",
            description: v.description ?? "",
          })),
        ];
        break;
      case `${PREFIX}ResourceInfo`: {
        const info = google.rpc.ResourceInfo.decode(value);
        resource = { resourceType: info.resourceType, resourceName: info.resourceName };
        break;
      }
    }
  }
  return {
    code: status.code,
    message: status.message,
    errorInfos,
    typeUrls: status.details.map((d) => d.type_url ?? ""),
    ...(retryDelayMs !== undefined ? { retryDelayMs } : {}),
    ...(fieldViolations ? { fieldViolations } : {}),
    ...(resource ? { resource } : {}),
  };
}

/** The `OpalError` a failed wire call raises; its `cause` is the {@link WireStatus}. */
export function toWireError(status: WireStatus): OpalError {
  const code = isCode(status.code) ? status.code : Code.UNKNOWN;
  // The status itself (the cause) keeps any reason the device sent; the error only a protocol one.
  const reason = status.details?.errorInfos[0]?.reason ?? "";
  return new OpalError(code, status.message, {
    reason: isReason(reason) ? reason : "",
    cause: status,
  });
}

/** The {@link WireStatus} behind an error raised by a wire call, or undefined for other errors. */
export function toWireStatus(error: unknown): WireStatus | undefined {
  const cause = error instanceof OpalError ? error.cause : undefined;
  if (cause && typeof cause === "object" && "messagesBefore" in cause) return cause as WireStatus;
  return undefined;
}

/** `CODE_NAME reason "message"`, for failure messages. */
export function describeWireStatus(status: WireStatus): string {
  const reason = status.details?.errorInfos.map((i) => i.reason).join(",") || "no ErrorInfo";
  return `${codeName(status.code).toUpperCase()} ${reason} ${JSON.stringify(status.message)}`;
}
