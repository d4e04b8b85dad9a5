"""Second-language peer for the rich error codec (google.rpc.Status in grpc-status-details-bin).

Usage: status_peer.py encode        -> prints the hex of a Status carrying ErrorInfo, RetryInfo,
                                       BadRequest and ResourceInfo, built with Python's protobuf.
       status_peer.py decode HEX    -> prints the Status and its details as JSON.
"""
import json
import sys

from google.rpc import error_details_pb2, status_pb2


def encode():
    status = status_pb2.Status(code=8, message="all 4 prefill slots and 16 queue places are busy")
    info = error_details_pb2.ErrorInfo(reason="DEVICE_BUSY", domain="opal.device")
    info.metadata["queue_depth"] = "16"
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.seconds = 1
    retry.retry_delay.nanos = 250_000_000
    bad = error_details_pb2.BadRequest()
    violation = bad.field_violations.add()
    violation.field = "kv_format.block_size_tokens"
    violation.description = "expected one of [16, 32], got 7"
    resource = error_details_pb2.ResourceInfo(
        resource_type="opal.device.v1.Model", resource_name="opal-tiny", owner="tenant-a", description="x"
    )
    for detail in (info, retry, bad, resource):
        status.details.add().Pack(detail)
    print(status.SerializeToString().hex())


def decode(hex_bytes):
    status = status_pb2.Status.FromString(bytes.fromhex(hex_bytes))
    out = {"code": status.code, "message": status.message}
    for any_detail in status.details:
        for cls, key in (
            (error_details_pb2.ErrorInfo, "errorInfo"),
            (error_details_pb2.RetryInfo, "retryInfo"),
            (error_details_pb2.BadRequest, "badRequest"),
            (error_details_pb2.ResourceInfo, "resourceInfo"),
        ):
            if any_detail.Is(cls.DESCRIPTOR):
                detail = cls()
                any_detail.Unpack(detail)
                if key == "errorInfo":
                    out[key] = {"reason": detail.reason, "domain": detail.domain, "metadata": dict(detail.metadata)}
                elif key == "retryInfo":
                    out[key] = {"ms": detail.retry_delay.seconds * 1000 + detail.retry_delay.nanos // 1_000_000}
                elif key == "badRequest":
                    out[key] = [{"field": v.field, "description": v.description} for v in detail.field_violations]
                else:
                    out[key] = {"type": detail.resource_type, "name": detail.resource_name, "owner": detail.owner}
    print(json.dumps(out))


if __name__ == "__main__":
    encode() if sys.argv[1] == "encode" else decode(sys.argv[2])
