"""Wire helpers of the example device: Python stubs generated from proto/, error statuses as
docs/protocol/errors.md specifies them (ERR-2..ERR-6), CRC32C (GEN-7) and KV byte encoding
(PF-18, PF-19, PF-21)."""

import collections
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
SIDE_PROTOS = HERE / "side_protos"


def generate_stubs(out_dir=None):
    """Runs protoc with grpc_python_plugin over proto/ and the side protos; puts the result on sys.path."""
    out = pathlib.Path(out_dir or tempfile.mkdtemp(prefix="opal-python-device-"))
    out.mkdir(parents=True, exist_ok=True)
    protos = [str(p.relative_to(PROTO_ROOT)) for p in sorted(PROTO_ROOT.rglob("*.proto"))]
    protos += [str(p.relative_to(SIDE_PROTOS)) for p in sorted(SIDE_PROTOS.rglob("*.proto"))]
    subprocess.run(
        [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{SIDE_PROTOS}",
            "-I/usr/include",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
            *protos,
        ],
        check=True,
    )
    sys.path.insert(0, str(out))
    return out


# ---- errors -------------------------------------------------------------------------------------

# The gRPC code each reason is used with (errors.md §3, ERR-3).
REASON_CODES = {
    "INVALID_FIELD": "INVALID_ARGUMENT",
    "MODEL_NOT_LOADED": "FAILED_PRECONDITION",
    "MODEL_CONFIG_INVALID": "INVALID_ARGUMENT",
    "MODEL_WEIGHTS_INVALID": "INVALID_ARGUMENT",
    "MODEL_ID_CONFLICT": "ALREADY_EXISTS",
    "PROMPT_EMPTY": "INVALID_ARGUMENT",
    "PROMPT_TOO_LONG": "INVALID_ARGUMENT",
    "TOKEN_OUT_OF_RANGE": "INVALID_ARGUMENT",
    "UNSUPPORTED_DTYPE": "INVALID_ARGUMENT",
    "UNSUPPORTED_LAYOUT": "INVALID_ARGUMENT",
    "UNSUPPORTED_SCALE_SCHEME": "INVALID_ARGUMENT",
    "UNSUPPORTED_BLOCK_SIZE": "INVALID_ARGUMENT",
    "HEAD_RANGE_INVALID": "INVALID_ARGUMENT",
    "UNSUPPORTED_FEATURE": "UNIMPLEMENTED",
    "REQUEST_ID_CONFLICT": "ALREADY_EXISTS",
    "DEVICE_BUSY": "RESOURCE_EXHAUSTED",
    "MESSAGE_TOO_LARGE": "RESOURCE_EXHAUSTED",
    "CANCELLED": "CANCELLED",
    "DEADLINE_EXCEEDED": "DEADLINE_EXCEEDED",
    "INTERNAL": "INTERNAL",
    "TOKEN_INVALID": "UNAUTHENTICATED",
}


class DeviceError(Exception):
    """A failure to return as a gRPC status with google.rpc details."""

    def __init__(self, reason, message, field=None, retry_ms=None, resource=None, metadata=None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field
        self.retry_ms = retry_ms
        self.resource = resource
        self.metadata = metadata or {}


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata"))):
    pass


def abort(context, error):
    """Ends the call with `error`: code, message and a google.rpc.Status in grpc-status-details-bin."""
    import grpc
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    code = getattr(grpc.StatusCode, REASON_CODES[error.reason])
    details = []

    def pack(message):
        packed = any_pb2.Any()
        packed.Pack(message)
        details.append(packed)

    metadata = dict(error.metadata)
    if error.field:
        metadata.setdefault("field", error.field)
    pack(error_details_pb2.ErrorInfo(reason=error.reason, domain="opal.device", metadata=metadata))
    if error.field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)
        pack(error_details_pb2.BadRequest(field_violations=[violation]))
    if error.retry_ms is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromMilliseconds(error.retry_ms)
        pack(info)
    if error.resource:
        resource_type, name = error.resource
        pack(error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=name))
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    trailer = (("grpc-status-details-bin", status.SerializeToString()),)
    context.abort_with_status(_Status(code, error.message, trailer))


# ---- CRC32C (Castagnoli, reflected 0x82F63B78) ----------------------------------------------------


def _crc_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # GEN-7's check value


# ---- KV bytes -----------------------------------------------------------------------------------

ELEMENT_BYTES = {"f32": 4, "bf16": 2}


def to_bf16_bytes(values):
    """bfloat16: the upper 16 bits of binary32, rounded to nearest even (PF-21, PF-22)."""
    bits = np.ascontiguousarray(values, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def encode_part(values, dtype, layout_hnd):
    """One layer part `[tokens][heads][head_dim]` as bytes in the requested dtype and layout (PF-19)."""
    ordered = np.transpose(values, (1, 0, 2)) if layout_hnd else values
    if dtype == "bf16":
        return to_bf16_bytes(ordered)
    return np.ascontiguousarray(ordered, dtype="<f4").tobytes()


def split(data, chunk_bytes):
    """Cuts a part into full-size chunks except the last (PF-14)."""
    for offset in range(0, len(data), chunk_bytes):
        yield offset, data[offset : offset + chunk_bytes]

