"""vLLM's own steps for its paged KV pools, written from vLLM's source, run with Debian's torch 1.13.

This program is the peer that OPAL's vLLM pool layouts are checked against: it never imports OPAL
and never computes an address by hand. It allocates each pool the way vLLM does, builds the tensor
views vLLM's attention backends get, and moves K and V through those views with torch indexing.

Sources (vllm-project/vllm):
- vllm/v1/kv_cache_layout.py @ e78684ecbf33f50e037f78beb0838aa2eac7490d: KVCacheLayout members,
  stride_order over the logical [L, B, H, N, C].
- vllm/v1/kv_cache_interface.py (the standardized version, PR #51718; the search index stores it
  without naming its commit, and the versions it names, 001cabc1be16a59a70d720ed61a13b678c060a18
  and bc8282e61df21719b12b391c3a976b1c900dfbb4, predate the change):
  compute_layer_kv_cache_shape_bytes, compute_layout_strides, create_kv_cache_views, KVCacheTensor,
  AttentionSpec.state_content_size_bytes = (head_size + head_size_v) * dtype size,
  MLAAttentionSpec.head_size_v = 0.
- Backends after the change split the per-layer view's last axis: K = [..., :head_size],
  V = [..., head_size:] (`kv_cache.split(head_size, dim=-1)`).
- vllm/v1/worker/block_table.py map_to_kernel_blocks: manager block b -> kernel blocks
  b * ratio + j.
- vLLM <= 0.28: vllm/v1/attention/backends/flash_attn.py @ 5704f34f361c6c59a9c092c4e1e96730cc6dc14d
  get_kv_cache_shape (2, num_blocks, block_size, num_kv_heads, head_size), stride order NHD
  (0, 1, 2, 3, 4) / HND (0, 1, 3, 2, 4), forward `key_cache, value_cache = kv_cache.unbind(0)`;
  vllm/v1/attention/backends/flashinfer.py @ 5314c90d9f16e7c14523f496b0b8f883693951d4
  (num_blocks, 2, block_size, num_kv_heads, head_size), same stride orders, K = kv_cache[:, 0];
  MLA (num_blocks, block_size, head_size); the model runner's
  raw.view(dtype).view(shape in stride order).permute(inverse order).
- STR_DTYPE_TO_TORCH_DTYPE: "fp8", "fp8_e4m3", "fp8_e5m2" -> torch.uint8.

Reads JSON {"cases": [...]} on stdin, writes one JSON object per case on stdout.
"""

import base64
import json
import sys
from math import prod

import torch

STR_DTYPE_TO_TORCH_DTYPE = {
    "half": torch.half,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "fp8": torch.uint8,
    "fp8_e4m3": torch.uint8,
    "fp8_e5m2": torch.uint8,
}

# KVCacheLayout stride_order over [L, B, H, N, C].
STRIDE_ORDER = {
    "LBHNC": (0, 1, 2, 3, 4),
    "LBNHC": (0, 1, 3, 2, 4),
    "LHBNC": (0, 2, 1, 3, 4),
    "BLHNC": (1, 0, 2, 3, 4),
    "BLNHC": (1, 0, 3, 2, 4),
    "BHLNC": (1, 2, 0, 3, 4),
}
ALIASES = {"NHD": "LBNHC", "HND": "LBHNC"}


def dtype_size(dtype):
    return torch.tensor([], dtype=dtype).element_size()


def to_bytes(tensor):
    return base64.b64encode(tensor.contiguous().view(torch.uint8).numpy().tobytes()).decode()


def from_bytes(b64, dtype, shape):
    raw = bytearray(base64.b64decode(b64))
    return torch.frombuffer(raw, dtype=torch.uint8).view(dtype).view(shape).clone()


def layout_strides(shape, order, padded, fixed):
    """compute_layout_strides: byte strides in logical [L, B, H, N, C] order."""
    page_grid_end = max(order.index(0), order.index(1)) + 1
    if padded is not None:
        grid = prod(shape[d] for d in order[:page_grid_end])
        assert grid == shape[0] * shape[1], "padding needs L and B outside the page"
    strides = [0] * 5
    current = 1
    for physical in reversed(range(5)):
        dim = order[physical]
        if padded is not None and physical == page_grid_end - 1:
            current = max(current, padded)
            assert current % padded == 0
        strides[dim] = fixed[dim] or current
        current = strides[dim] * shape[dim]
    return strides, current


def standard_pool(case):
    """One allocation and its per-layer [B, H, N, C] views, as create_kv_cache_views builds them."""
    dtype = STR_DTYPE_TO_TORCH_DTYPE[case["dtype"]]
    size = dtype_size(dtype)
    layout = ALIASES.get(case["layout"], case["layout"])
    order = STRIDE_ORDER[layout]
    head_size = case["headSize"]
    head_size_v = 0 if case["mla"] else head_size
    heads = case["numKvHeads"]
    content = (head_size + head_size_v) * size
    layers, blocks, block_size = case["numLayers"], case["numBlocks"], case["blockSize"]
    kernel = case.get("kernelBlockSize") or block_size
    padded = case.get("pagePadded")
    # KVCacheTensor: strides of the manager-block shape, size of the allocation.
    manager_shape = (layers, blocks, heads, block_size, content)
    manager, total = layout_strides(manager_shape, order, padded, (None,) * 5)
    layer_stride, block_stride = manager[0], manager[1]
    raw = torch.zeros(total, dtype=torch.int8)
    ratio = block_size // kernel
    if ratio > 1:
        dense_page = heads * block_size * content
        assert block_stride == dense_page, "vLLM refuses to split non-dense pages"
        block_stride //= ratio
    shape = (layers, blocks * ratio, heads, kernel, content)
    strides, _ = layout_strides(shape, order, padded, (layer_stride, block_stride, None, None, None))
    view_5d = torch.as_strided(raw, size=shape, stride=strides, storage_offset=raw.storage_offset())
    views = [view_5d[layer].view(dtype) for layer in range(layers)]
    return raw, views, ratio, kernel


def slots(case, ratio, kernel):
    """Kernel block id and in-block offset of each token (block table -> kernel blocks)."""
    block_size = case["blockSize"]
    table = case["blockTable"]
    ids, offsets = [], []
    for p in range(case["tokenStart"], case["tokenStart"] + case["tokenCount"]):
        in_block = p % block_size
        ids.append(table[p // block_size] * ratio + in_block // kernel)
        offsets.append(in_block % kernel)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


def standard_case(case):
    dtype = STR_DTYPE_TO_TORCH_DTYPE[case["dtype"]]
    head_size = case["headSize"]
    tokens, heads = case["tokenCount"], case["numKvHeads"]
    # Read what OPAL wrote.
    raw, views, ratio, kernel = standard_pool(case)
    raw.copy_(from_bytes(case["pool"], torch.int8, raw.shape))
    layer = views[case["layer"]]
    blocks, offsets = slots(case, ratio, kernel)
    out = {"size": raw.numel(), "viewShape": list(layer.shape), "viewStride": list(layer.stride())}
    if case["mla"]:
        out["k"] = to_bytes(layer[blocks, 0, offsets])
    else:
        key_cache, value_cache = layer.split(head_size, dim=-1)
        out["k"] = to_bytes(key_cache[blocks, :, offsets])
        out["v"] = to_bytes(value_cache[blocks, :, offsets])
    # Write the reference K and V into a fresh allocation through the same views.
    raw2, views2, _, _ = standard_pool(case)
    layer2 = views2[case["layer"]]
    if case["mla"]:
        layer2[blocks, 0, offsets] = from_bytes(case["kIn"], dtype, (tokens, head_size))
    else:
        key_cache, value_cache = layer2.split(head_size, dim=-1)
        key_cache[blocks, :, offsets] = from_bytes(case["kIn"], dtype, (tokens, heads, head_size))
        value_cache[blocks, :, offsets] = from_bytes(case["vIn"], dtype, (tokens, heads, head_size))
    out["written"] = to_bytes(raw2)
    return out


def legacy_pool(case):
    """One layer's tensor as vLLM <= 0.28's model runner reshapes its raw int8 buffer."""
    dtype = STR_DTYPE_TO_TORCH_DTYPE[case["dtype"]]
    blocks, block_size = case["numBlocks"], case["blockSize"]
    heads, head_size = case["numKvHeads"], case["headSize"]
    if case["mla"]:
        shape, order = (blocks, block_size, head_size), (0, 1, 2)
    else:
        if case["order"] == "flash_attn":
            shape = (2, blocks, block_size, heads, head_size)
        else:
            shape = (blocks, 2, block_size, heads, head_size)
        order = (0, 1, 2, 3, 4) if case["cacheLayout"] == "NHD" else (0, 1, 3, 2, 4)
    raw = torch.zeros(prod(shape) * dtype_size(dtype), dtype=torch.int8)
    physical = tuple(shape[i] for i in order)
    inverse = [order.index(i) for i in range(len(order))]
    return raw, raw.view(dtype).view(physical).permute(*inverse)


def legacy_kv(case, kv_cache):
    if case["mla"]:
        return kv_cache, None
    if case["order"] == "flash_attn":
        return kv_cache.unbind(0)
    return kv_cache[:, 0], kv_cache[:, 1]


def legacy_case(case):
    dtype = STR_DTYPE_TO_TORCH_DTYPE[case["dtype"]]
    tokens, heads, head_size = case["tokenCount"], case["numKvHeads"], case["headSize"]
    raw, kv_cache = legacy_pool(case)
    raw.copy_(from_bytes(case["pool"], torch.int8, raw.shape))
    blocks, offsets = slots(case, 1, case["blockSize"])
    key_cache, value_cache = legacy_kv(case, kv_cache)
    out = {"size": raw.numel(), "viewShape": list(kv_cache.shape), "viewStride": list(kv_cache.stride())}
    out["k"] = to_bytes(key_cache[blocks, offsets])
    if value_cache is not None:
        out["v"] = to_bytes(value_cache[blocks, offsets])
    raw2, kv_cache2 = legacy_pool(case)
    key_cache, value_cache = legacy_kv(case, kv_cache2)
    k_shape = (tokens, head_size) if case["mla"] else (tokens, heads, head_size)
    key_cache[blocks, offsets] = from_bytes(case["kIn"], dtype, k_shape)
    if value_cache is not None:
        value_cache[blocks, offsets] = from_bytes(case["vIn"], dtype, k_shape)
    out["written"] = to_bytes(raw2)
    return out


def main():
    cases = json.load(sys.stdin)["cases"]
    for case in cases:
        run = standard_case if case["family"] == "standard" else legacy_case
        result = run(case)
        result["id"] = case["id"]
        sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
