"""SGLang's own token-to-KV pool steps, written from SGLang's source, run with Debian's torch 1.13.

The peer OPAL's SGLang buffers are checked against: it never imports OPAL and never computes an
address by hand. It allocates the per-layer buffers as SGLang does and moves K and V (or MLA's
latent) through SGLang's indexing.

Source (github.com/sgl-project/sglang), python/sglang/srt/mem_cache/memory_pool.py at
000ccdba94d4ed75d4fab7b1dac5f8ebcaaee7e8:
- MHATokenToKVPool._create_buffers: per layer, k_buffer and v_buffer are
  torch.zeros((size + page_size, head_num, head_dim), dtype=store_dtype); slot 0 is the padding slot.
- MLATokenToKVPool: one kv_buffer per layer, (size + page_size, 1, kv_lora_rank + qk_rope_head_dim).
- KVCache: store_dtype is torch.uint8 for the float8 dtypes (index_put on fp8 is unsupported), and
  get_key_buffer views it back as the dtype.
- set_kv_buffer: k_buffer[layer][loc] = cache_k (viewed as store_dtype); the attention backends
  read get_key_buffer(layer)[loc].

Reads JSON {"cases": [...]} on stdin, writes one JSON object per case on stdout.
"""

import base64
import json
import sys

import torch

# store_dtype of each OPAL dtype name: fp8 pools are uint8 tensors.
STORE_DTYPE = {"bf16": torch.bfloat16, "f16": torch.float16, "fp8_e4m3fn": torch.uint8}


def decode(b64, dtype, shape):
    raw = bytearray(base64.b64decode(b64))
    return torch.frombuffer(raw, dtype=torch.uint8).view(dtype).view(shape).clone()


def encode(tensor):
    return base64.b64encode(tensor.contiguous().view(torch.uint8).numpy().tobytes()).decode()


def buffers(case):
    """The per-layer buffers of one layer (k, and v unless MLA), as SGLang allocates them."""
    dtype = STORE_DTYPE[case["dtype"]]
    slots = case["size"] + case["pageSize"]
    shape = (slots, case["headNum"], case["headDim"])
    parts = ["k"] if case["mla"] else ["k", "v"]
    return {part: torch.zeros(shape, dtype=dtype) for part in parts}


def run(case):
    dtype = STORE_DTYPE[case["dtype"]]
    loc = torch.tensor(case["loc"], dtype=torch.long)
    tokens = len(case["loc"])
    row = (tokens, case["headNum"], case["headDim"])
    out = {"id": case["id"]}
    # Read what OPAL wrote, through SGLang's indexing.
    pool = buffers(case)
    for part, buffer in pool.items():
        buffer.copy_(decode(case["pool"][part], dtype, buffer.shape))
        out[f"read_{part}"] = encode(buffer[loc])
    # Write the reference through set_kv_buffer's index-put, for OPAL to read.
    fresh = buffers(case)
    for part, buffer in fresh.items():
        buffer[loc] = decode(case["reference"][part], dtype, row)
        out[f"written_{part}"] = encode(buffer)
    return out


def main():
    for case in json.load(sys.stdin)["cases"]:
        sys.stdout.write(json.dumps(run(case)) + "\n")


if __name__ == "__main__":
    main()
