"""A second-language OPAL client for the conformance self-test (Debian's python3-grpcio).

Usage: interop_client.py TARGET TOKEN MODEL_ID CONFIG_JSON_FILE SAFETENSORS_FILE

Gets the device info, uploads the conformance model, runs one prefill, verifies the CRC32C of
every chunk and the canonical chunk order, reassembles the cache and checks its size and XXH3-128 digest
(Debian's python3-xxhash) against `completed`. When the device offers the shared-memory data plane
(PF-43), runs the prefill again through a region this script creates in /dev/shm and maps (stdlib
mmap): every chunk must then carry data_ref at its canonical offset and empty data.
Prints one JSON summary line; exits 1 on any violation.
"""
import hashlib
import json
import mmap
import os
import sys

import grpc
import xxhash
from opal.device.v1 import device_service_pb2 as pb
from opal.device.v1 import device_service_pb2_grpc as pb_grpc
from opal.device.v1 import kv_pb2


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32/ISCSI (Castagnoli, reflected 0x82F63B78, init and xor-out 0xFFFFFFFF), GEN-7."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def fail(message):
    print(json.dumps({"ok": False, "error": message}))
    sys.exit(1)


def run_prefill(stub, metadata, request, region=None):
    """Runs one prefill; checks CRCs and canonical order; returns (cache, completed, descriptor, chunks).

    With `region` (an mmap of the offered shared-memory region), chunk bytes are read from it at
    data_ref, which must be the chunk's canonical offset (PF-42, PF-43).
    """
    descriptor = None
    completed = None
    parts = []  # expected (layer, part, size) in canonical order (PF-13)
    position = 0  # index into parts
    offset = 0
    cache = bytearray()
    chunks = 0
    for response in stub.Prefill(request, metadata=metadata, timeout=60):
        event = response.WhichOneof("event")
        if event == "accepted":
            if descriptor is not None:
                fail("a second accepted")
            descriptor = response.accepted.descriptor
            heads = descriptor.head_range.count
            part_bytes = descriptor.token_count * heads * descriptor.mha.head_dim * 4  # PF-18, f32
            for layer in range(descriptor.num_layers):
                parts.append((layer, kv_pb2.KV_PART_K, part_bytes))
                parts.append((layer, kv_pb2.KV_PART_V, part_bytes))
            if descriptor.total_bytes != part_bytes * len(parts):
                fail("descriptor.total_bytes %d, expected %d" % (descriptor.total_bytes, part_bytes * len(parts)))
        elif event == "chunk":
            chunk = response.chunk
            chunks += 1
            if descriptor is None or completed is not None:
                fail("chunk outside accepted..completed")
            data = chunk.data
            if region is not None:
                if not chunk.HasField("data_ref") or len(chunk.data) != 0:
                    fail("chunk %d: expected data_ref and no data on the shared-memory plane" % chunks)
                if chunk.data_ref.offset_bytes != len(cache):
                    fail("chunk %d: data_ref at %d, canonical offset %d" % (chunks, chunk.data_ref.offset_bytes, len(cache)))
                at = chunk.data_ref.offset_bytes
                data = region[at : at + chunk.data_ref.length_bytes]
            elif chunk.HasField("data_ref"):
                fail("chunk %d: data_ref on the inline plane" % chunks)
            if crc32c(data) != chunk.crc32c:
                fail("chunk %d: crc32c mismatch" % chunks)
            if not 1 <= len(data) <= 1000:
                fail("chunk %d: %d bytes" % (chunks, len(data)))
            if position >= len(parts):
                fail("chunk after the end of the cache")
            layer, part, size = parts[position]
            if (chunk.layer, chunk.part, chunk.offset_bytes) != (layer, part, offset):
                fail("chunk %d at %s, expected %s" % (chunks, (chunk.layer, chunk.part, chunk.offset_bytes), (layer, part, offset)))
            cache.extend(data)
            offset += len(data)
            if offset > size:
                fail("chunk overruns its part")
            if offset == size:
                position += 1
                offset = 0
        elif event == "completed":
            completed = response.completed
    if completed is None:
        fail("the stream ended without completed")
    if position != len(parts):
        fail("completed before the last chunk")
    return cache, completed, descriptor, chunks


def prefill_through_shared_memory(stub, metadata, request, total_bytes):
    """The same prefill through a /dev/shm region of this process; returns the cache's digest."""
    name = "/opal-python-%d" % os.getpid()
    path = "/dev/shm" + name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, total_bytes)
        region = mmap.mmap(fd, total_bytes)
        request.data_plane.shared_memory.name = name
        request.data_plane.shared_memory.length_bytes = total_bytes
        cache, completed, _, chunks = run_prefill(stub, metadata, request, region)
        digest = xxhash.xxh3_128(bytes(cache)).digest()
        if completed.kv_digest != digest:
            fail("shared memory: kv_digest does not match the region's bytes")
        region.close()
        return digest.hex(), chunks
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    target, token, model_id, config_path, weights_path = sys.argv[1:6]
    if crc32c(b"123456789") != 0xE3069283:
        fail("crc32c self-check failed")
    metadata = [("authorization", "Bearer " + token)] if token else []
    limit = 64 * 1024 * 1024 + 64 * 1024
    channel = grpc.insecure_channel(
        target, options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    )
    stub = pb_grpc.DeviceServiceStub(channel)

    info = stub.GetInfo(pb.GetInfoRequest(), metadata=metadata, timeout=10)
    if info.protocol_version.split(".")[0] != "1":
        fail("unsupported protocol version " + info.protocol_version)

    with open(config_path, encoding="utf-8") as f:
        config_json = f.read()
    with open(weights_path, "rb") as f:
        weights = f.read()

    def load_requests():
        header = pb.LoadModelHeader(
            model_id=model_id,
            config_json=config_json,
            weights_byte_length=len(weights),
            weights_sha256=hashlib.sha256(weights).hexdigest(),
        )
        yield pb.LoadModelRequest(header=header)
        for offset in range(0, len(weights), 1 << 20):
            yield pb.LoadModelRequest(weights_chunk=weights[offset : offset + (1 << 20)])

    loaded = stub.LoadModel(load_requests(), metadata=metadata, timeout=60)

    prompt = [256] + list(b"Hello from Python, OPAL!")
    request = pb.PrefillRequest(
        request_id="python-interop-1",
        model_id=model_id,
        prompt_token_ids=prompt,
        kv_format=kv_pb2.KvFormat(
            dtype=kv_pb2.KV_DTYPE_F32,
            scale_scheme=kv_pb2.KV_SCALE_SCHEME_NONE,
            layout=kv_pb2.KV_LAYOUT_NHD,
            block_size_tokens=16,
        ),
        max_chunk_bytes=1000,
    )
    cache, completed, descriptor, chunks = run_prefill(stub, metadata, request)
    digest = xxhash.xxh3_128(bytes(cache)).digest()
    summary = {
        "ok": completed.kv_total_bytes == len(cache) and completed.kv_digest == digest,
        "protocolVersion": info.protocol_version,
        "deviceId": info.device_id,
        "modelId": loaded.model.model_id,
        "fingerprint": loaded.model.fingerprint,
        "layers": descriptor.num_layers,
        "tokens": descriptor.token_count,
        "chunks": chunks,
        "totalBytes": len(cache),
        "completedBytes": completed.kv_total_bytes,
        "digest": digest.hex(),
        "completedDigest": completed.kv_digest.hex(),
        "firstTokenId": completed.first_token_id,
    }
    caps = stub.GetCapabilities(pb.GetCapabilitiesRequest(), metadata=metadata, timeout=10).capabilities
    if kv_pb2.DATA_PLANE_KIND_SHARED_MEMORY in caps.data_planes:
        request.request_id = "python-interop-shm-1"
        summary["sharedMemoryDigest"], summary["sharedMemoryChunks"] = prefill_through_shared_memory(
            stub, metadata, request, len(cache)
        )
    print(json.dumps(summary))
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
