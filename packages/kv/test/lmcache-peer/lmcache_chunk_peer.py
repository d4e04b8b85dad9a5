"""LMCache's vLLM connector steps for its KV_2LTD memory objects, run with Debian's torch 1.13.

Written from LMCache's source (github.com/LMCache/LMCache), lmcache/v1/gpu_connector.py at
e23f2bbc1ad84d4d98fe17672a875db50b704ab9, VLLMPagedMemGPUConnectorV2: it takes vLLM's per-layer
(K, V) caches [num_blocks, block_size, num_heads, head_size] and produces / consumes memory
objects of get_shape(num_tokens) = [2, num_layers, num_tokens, num_heads * head_size]
(MemoryFormat.KV_2LTD: K then V, each layer's tokens in order, a token's heads flattened), one
per chunk of chunk_size tokens (the last may be shorter). It never imports OPAL.

Reads JSON {"cases": [...]} on stdin: per case the reference K and V of each layer as [T, H, D]
bytes and the chunks OPAL wrote; prints one JSON object per case: whether each OPAL chunk equals
the memory object LMCache builds, and LMCache's own chunks for OPAL to read.
"""

import base64
import json
import sys

import torch

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def decode(b64, dtype, shape):
    raw = bytearray(base64.b64decode(b64))
    return torch.frombuffer(raw, dtype=torch.uint8).view(dtype).view(shape).clone()


def encode(tensor):
    return base64.b64encode(tensor.contiguous().view(torch.uint8).numpy().tobytes()).decode()


def run(case):
    dtype = DTYPES[case["dtype"]]
    tokens, heads, dim = case["tokens"], case["heads"], case["headDim"]
    layers = len(case["k"])
    # from_gpu: gather each layer's K and V rows into one [2, L, T, H * D] object per chunk.
    k = torch.stack([decode(b, dtype, (tokens, heads, dim)) for b in case["k"]])
    v = torch.stack([decode(b, dtype, (tokens, heads, dim)) for b in case["v"]])
    whole = torch.stack([k, v]).reshape(2, layers, tokens, heads * dim)
    size = case["chunkSize"]
    chunks = [whole[:, :, start : start + size] for start in range(0, tokens, size)]
    opal = case["chunks"]
    same = len(opal) == len(chunks) and all(
        torch.equal(decode(b, dtype, tuple(c.shape)).view(torch.uint8), c.contiguous().view(torch.uint8))
        for b, c in zip(opal, chunks)
    )
    return {"id": case["id"], "same": same, "chunks": [encode(c) for c in chunks]}


def main():
    for case in json.load(sys.stdin)["cases"]:
        sys.stdout.write(json.dumps(run(case)) + "\n")


if __name__ == "__main__":
    main()
