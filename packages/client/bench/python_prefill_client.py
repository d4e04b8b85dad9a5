"""Python grpcio baseline on the device's own stream: a Python integrator's client of OPAL.

Runs RUNS prefills (Llama-3-8B shape, 2,048 tokens, bf16, as stream.bench.ts) on the device at
ADDRESS over the inline data plane, keeps every chunk's bytes (as the SDK's memory sink keeps the
cache) and prints the best GB/s, timed like the SDK's transfer stats: from the first chunk to the
last. It checks no CRC (a pure-Python CRC32C would measure Python, not grpcio), so it does less
work per byte than the SDK. Needs stubs generated from proto/ on PYTHONPATH.

Usage: python_prefill_client.py ADDRESS RUNS
"""
import sys
import time

import grpc
from opal.device.v1 import device_service_pb2 as pb
from opal.device.v1 import device_service_pb2_grpc as pb_grpc
from opal.device.v1 import kv_pb2

address, runs = sys.argv[1], int(sys.argv[2])
channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)])
stub = pb_grpc.DeviceServiceStub(channel)
best = 0.0
for run in range(runs):
    request = pb.PrefillRequest(
        request_id="python-stream-%d" % run,
        model_id="llama-3-8b",
        prompt_token_ids=[(i * 31 + 1000 + run) % 128000 for i in range(2048)],
        kv_format=kv_pb2.KvFormat(
            dtype=kv_pb2.KV_DTYPE_BF16,
            scale_scheme=kv_pb2.KV_SCALE_SCHEME_NONE,
            layout=kv_pb2.KV_LAYOUT_NHD,
            block_size_tokens=16,
        ),
    )
    chunks = []
    first = last = 0.0
    completed = False
    for response in stub.Prefill(request, timeout=60):
        event = response.WhichOneof("event")
        if event == "chunk":
            last = time.perf_counter()
            if not chunks:
                first = last
            chunks.append(response.chunk.data)
        elif event == "completed":
            completed = True
    total = sum(len(chunk) for chunk in chunks)
    if not completed or total != response.completed.kv_total_bytes:
        sys.exit("prefill %d: %d bytes, completed=%s" % (run, total, completed))
    best = max(best, total / max(last - first, 1e-9) / 1e9)
print(best)
