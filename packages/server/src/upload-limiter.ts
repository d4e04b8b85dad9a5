import { Code, OpalError, Reason } from "@opal/core";

/** Bounds LoadModel uploads in progress (models.md `MD-20`). */
export interface UploadLimiter {
  /**
   * Takes an upload slot for `byteLength` declared weight bytes; throws RESOURCE_EXHAUSTED
   * `DEVICE_BUSY` with RetryInfo when every slot is taken or the bytes would not fit beside the
   * uploads in progress (without RetryInfo when they exceed the whole budget). Call the returned
   * function once when the upload ends.
   */
  admit(byteLength: number): () => void;
}

/** Creates a limiter of `maxUploads` concurrent uploads declaring at most `maxBytes` together. */
export function createUploadLimiter(maxUploads: number, maxBytes: number): UploadLimiter {
  let uploads = 0;
  let bytes = 0;
  const busy = (message: string, retry: boolean) =>
    new OpalError(Code.RESOURCE_EXHAUSTED, message, {
      reason: Reason.DEVICE_BUSY,
      resource: { resourceType: "opal.device/model-upload", resourceName: "" },
      ...(retry ? { retryDelayMs: 1_000 } : {}),
    });
  return {
    admit(byteLength) {
      if (byteLength > maxBytes) {
        throw busy(
          `an upload of ${byteLength} bytes exceeds the ${maxBytes} bytes this device takes in flight`,
          false,
        );
      }
      if (uploads >= maxUploads) {
        throw busy(`all ${maxUploads} model upload slots are busy`, true);
      }
      if (bytes + byteLength > maxBytes) {
        throw busy(
          `an upload of ${byteLength} bytes does not fit beside the ${bytes} bytes in flight (limit ${maxBytes})`,
          true,
        );
      }
      uploads++;
      bytes += byteLength;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        uploads--;
        bytes -= byteLength;
      };
    },
  };
}
