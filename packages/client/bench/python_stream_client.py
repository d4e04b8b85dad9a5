"""Python grpcio baseline: reads COUNT raw messages of SIZE bytes from the bare server; prints GB/s.

Usage: python_stream_client.py ADDRESS COUNT SIZE
"""
import sys
import time

import grpc

address, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
channel = grpc.insecure_channel(
    address,
    options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.http2.lookahead_bytes", 16 << 20)],
)
stream = channel.unary_stream("/bench.Bare/Stream", request_serializer=None, response_deserializer=None)
best = 0.0
for _ in range(2):
    started = time.perf_counter()
    total = 0
    for message in stream(count.to_bytes(4, "little") + size.to_bytes(4, "little")):
        total += len(message)
    best = max(best, total / (time.perf_counter() - started) / 1e9)
print(best)
