"""vLLM's ExampleConnector save and load steps, written from vLLM's source, for golden checks.

OPAL's tests run this with Debian's python3-torch (1.13) to check OPAL's ExampleConnector folders
against what vLLM itself does, without trusting OPAL's reader or writer. Nothing here is OPAL code.

Sources (github.com/vllm-project/vllm), written from their behaviour:
- vLLM >= 0.29: vllm/distributed/kv_transfer/kv_connector/v1/example_connector.py at
  00231834dc62bb1127ec5c8f2e6762c87d2f477e: each attention layer is a standardized [B, H, N, C]
  view (H == 1 for MLA); save = layer[block_idxs, :, offsets] -> [T, H, C]; load =
  dst[block_idxs, :, offsets] = file; MLA reshapes the view to [B * N, C] and indexes by slot.
  The views come from vllm/v1/kv_cache_interface.py create_kv_cache_views (a flat int8 buffer,
  as_strided over the logical [L, B, H, N, C] in a KVCacheLayout stride order, then .view(dtype);
  C = head_size + head_size_v elements, K first) and vllm/v1/kv_cache_layout.py at
  14f7a27c776bd0c423bbc155b25ce21ee5a839da (the stride orders).
- vLLM <= 0.28: the same file at 4c1654210cfd5f3d07459cc3a23eef6aaea20706: the FlashAttention
  layer (2, num_blocks, block_size, H, D) is reshaped to (2, B * N, H * D) and indexed
  [:, slot_mapping]; MLA (num_blocks, block_size, 576) reshaped to (B * N, 576).
- Both: ReqMeta.make_meta (slot = block_id * block_size + offset for the first
  align_to_block_size(len(token_ids)) tokens), _found_match_for_prompt (checks the folder of the
  first align_to_block_size(len(prompt) - 1) tokens), _generate_foldername_debug (md5 of the
  int64 token bytes, then "-".join(mm_hashes) in UTF-8), files "<layer_name>.safetensors" with one
  tensor "kv_cache".
- fp8 caches are torch.uint8 tensors (STR_DTYPE_TO_TORCH_DTYPE in vllm/utils/torch_utils.py).
- fp8 values are what the cache write stores (csrc/quantization/fp8/nvidia/quant_utils.cuh at
  2fed15b1649c12fc4b6d4b4c54c3083039532e5a, scaled_vec_conversion<uint8_t, __nv_bfloat16>):
  __nv_cvt_float_to_fp8(float(x) / scale, __NV_SATFINITE, __NV_E4M3 or __NV_E5M2) with the layer's
  float32 k_scale / v_scale. torch 1.13 has no fp8 dtype, so fp8_satfinite below performs that
  conversion from the formats' definitions (CUDA's cuda_fp8.hpp behaviour: round to nearest even,
  magnitudes past the largest finite value and +-inf to it, every NaN to the canonical 0x7F).

Reads a JSON list of cases on stdin, prints a JSON list of results on stdout.
"""

import hashlib
import json
import os
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "U8": torch.uint8}
ST_NAMES = {v: k for k, v in DTYPES.items()}
# KVCacheLayout stride orders over the logical [L, B, H, N, C] (kv_cache_layout.py).
LAYOUTS = {
    "LBHNC": (0, 1, 2, 3, 4),
    "LBNHC": (0, 1, 3, 2, 4),
    "LHBNC": (0, 2, 1, 3, 4),
    "BLHNC": (1, 0, 2, 3, 4),
    "BLNHC": (1, 0, 3, 2, 4),
    "BHLNC": (1, 2, 0, 3, 4),
}


def fp8_values(exponent_bits, mantissa_bits, finite_codes):
    """The non-negative finite values of an fp8 format, by code 0..finite_codes-1 (IEEE-style bias)."""
    bias = (1 << (exponent_bits - 1)) - 1
    out = []
    for code in range(finite_codes):
        exponent, mantissa = code >> mantissa_bits, code & ((1 << mantissa_bits) - 1)
        fraction = mantissa / (1 << mantissa_bits)
        if exponent == 0:
            out.append(fraction * 2.0 ** (1 - bias))
        else:
            out.append((1 + fraction) * 2.0 ** (exponent - bias))
    return torch.tensor(out, dtype=torch.float64)


# E4M3 (fn): codes 0x00..0x7E finite, max 448, 0x7F NaN. E5M2: 0x00..0x7B finite, max 57344,
# 0x7C inf, above NaN.
FP8_FORMATS = {"e4m3": fp8_values(4, 3, 0x7F), "e5m2": fp8_values(5, 2, 0x7C)}


def fp8_satfinite(x, fmt):
    """float32 tensor -> uint8 fp8 codes: nearest value, ties to the even code, saturating."""
    table = FP8_FORMATS[fmt]
    top = len(table) - 1
    magnitude = x.abs().double().clamp(max=float(table[top]))  # +-inf and beyond: the maximum
    upper = torch.searchsorted(table, magnitude).clamp(max=top)
    lower = (upper - 1).clamp(min=0)
    to_upper, to_lower = table[upper] - magnitude, magnitude - table[lower]
    tie_even = torch.where(upper % 2 == 0, upper, lower)
    code = torch.where(to_upper < to_lower, upper, torch.where(to_lower < to_upper, lower, tie_even))
    code = code | (torch.signbit(x).long() << 7)
    code = torch.where(torch.isnan(x), torch.full_like(code, 0x7F), code)
    return code.to(torch.uint8)


def align_to_block_size(num_tokens, block_size):
    return 0 if num_tokens <= 0 else (num_tokens - 1) // block_size * block_size


def folder_name(storage, token_ids, mm_hashes):
    data = torch.tensor(token_ids, dtype=torch.int64).numpy().tobytes()
    if mm_hashes:
        data += "-".join(mm_hashes).encode("utf-8")
    return os.path.join(storage, hashlib.md5(data).hexdigest())


def slot_mapping(token_ids, block_ids, block_size):
    valid = align_to_block_size(len(token_ids), block_size)
    blocks = torch.tensor(block_ids, dtype=torch.long).reshape(-1, 1)
    slots = (torch.arange(block_size).reshape(1, -1) + blocks * block_size).flatten()
    return slots[:valid]


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    entry = header["kv_cache"]
    start, end = entry["data_offsets"]
    data = bytearray(raw[8 + n + start : 8 + n + end])
    dtype = DTYPES[entry["dtype"]]
    if len(data) == 0:
        return torch.empty(entry["shape"], dtype=dtype)
    return torch.frombuffer(data, dtype=dtype).reshape(entry["shape"])


def write_safetensors(path, tensor):
    tensor = tensor.contiguous()
    data = tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
    header = {
        "kv_cache": {
            "dtype": ST_NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [0, len(data)],
        }
    }
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def make_pool(case):
    """One vLLM-shaped cache per layer, zero-filled, as the decoder allocates it."""
    dtype = DTYPES[case["dtype"]]
    num_layers, blocks, bs = len(case["layerNames"]), case["numBlocks"], case["blockSize"]
    heads, width = case["heads"], case["width"]
    if case["version"] == "0.28":
        # FlashAttention (2, num_blocks, block_size, H, D); MLA (num_blocks, block_size, 576).
        shape = (blocks, bs, width) if case["mla"] else (2, blocks, bs, heads, width)
        return [torch.zeros(shape, dtype=dtype) for _ in range(num_layers)]
    c = width if case["mla"] else 2 * width  # head_size + head_size_v (0 for MLA)
    esize = torch.tensor([], dtype=dtype).element_size()
    logical = (num_layers, blocks, heads, bs, c * esize)
    order = LAYOUTS[case.get("layout", "LBNHC")]
    strides, stride = [0] * 5, 1
    for dim in reversed(order):
        strides[dim] = stride
        stride *= logical[dim]
    raw = torch.zeros(stride, dtype=torch.int8)
    view5 = torch.as_strided(raw, logical, strides)
    return [view5[layer].view(dtype) for layer in range(num_layers)]


def extract(case, layer, slots):
    """save_kv_layer's extract_kv_from_layer."""
    bs = case["blockSize"]
    if case["version"] == "0.28":
        if case["mla"]:
            return layer.reshape(layer.shape[0] * layer.shape[1], -1)[slots, ...]
        return layer.reshape(2, layer.shape[1] * layer.shape[2], -1)[:, slots, ...]
    if case["mla"]:
        return layer.reshape(-1, layer.shape[-1])[slots, ...]
    return layer[slots // bs, :, slots % bs]


def inject(case, layer, src, slots):
    """start_load_kv's inject_kv_into_layer."""
    bs = case["blockSize"]
    if case["version"] == "0.28":
        if case["mla"]:
            flat = layer.reshape(layer.shape[0] * layer.shape[1], -1)
            flat[slots, ...] = src
        else:
            flat = layer.reshape(2, layer.shape[1] * layer.shape[2], -1)
            flat[:, slots, ...] = src
        assert flat.data_ptr() == layer.data_ptr(), "reshape copied: the load would be lost"
        return
    if case["mla"]:
        flat = layer.reshape(-1, layer.shape[-1])
        flat[slots, ...] = src
        assert flat.data_ptr() == layer.data_ptr(), "reshape copied: the load would be lost"
        return
    layer[slots // bs, :, slots % bs] = src


def token_rows(case, layer, slots):
    """What the attention kernels read for these slots: K and V (or latent) as [T, H, D]."""
    bs, width = case["blockSize"], case["width"]
    if case["version"] == "0.28":
        if case["mla"]:
            return [layer[slots // bs, slots % bs].unsqueeze(1)]
        return [layer[0, slots // bs, slots % bs], layer[1, slots // bs, slots % bs]]
    rows = layer[slots // bs, :, slots % bs]  # [T, H, C]
    if case["mla"]:
        return [rows]
    return [rows[..., :width], rows[..., width:]]


def place(case, layer, slots, parts):
    """Writes reference K and V (or latent) [T, H, D] where the backend keeps them."""
    bs, width = case["blockSize"], case["width"]
    if case["version"] == "0.28":
        if case["mla"]:
            layer[slots // bs, slots % bs] = parts[0][:, 0]
        else:
            layer[0, slots // bs, slots % bs] = parts[0]
            layer[1, slots // bs, slots % bs] = parts[1]
        return
    if case["mla"]:
        layer[slots // bs, :, slots % bs] = parts[0]
    else:
        layer[slots // bs, :, slots % bs] = torch.cat(parts, dim=-1)


def reference(case, layer_index, tokens):
    """Reference parts of one layer, [tokens, H, D] each, from the raw files the test wrote.

    With case["fp8"] the files hold the model's bf16 K and V and the reference is what vLLM's fp8
    cache write stores for them with the layer's static scales (MLA's latent uses k_scale).
    """
    fp8 = case.get("fp8")
    dtype = torch.bfloat16 if fp8 else DTYPES[case["dtype"]]
    out = []
    for part in ["latent"] if case["mla"] else ["k", "v"]:
        path = os.path.join(case["reference"], f"{layer_index}.{part}.bin")
        with open(path, "rb") as f:
            t = torch.frombuffer(bytearray(f.read()), dtype=dtype)
        if fp8:
            scale = fp8["vScale" if part == "v" else "kScale"][layer_index]
            t = fp8_satfinite(t.float() / torch.tensor(scale, dtype=torch.float32), fp8["format"])
        out.append(t.reshape(-1, case["heads"], case["width"])[:tokens])
    return out


def same(a, b):
    return a.shape == b.shape and torch.equal(
        a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8)
    )


def load_case(case):
    """Decoder side: the scheduler's check, then the worker's load, into a fresh pool."""
    prompt = case["promptTokenIds"] + [case["generatedTokenId"]]  # L = n + 1
    bs, storage, mm = case["blockSize"], case["storage"], case.get("mmHashes", [])
    check_tokens = align_to_block_size(len(prompt) - 1, bs)
    check = folder_name(storage, prompt[:check_tokens], mm)
    if check_tokens <= 0 or not os.path.exists(check):
        return {"ok": False, "detail": f"no folder for the checked {check_tokens} tokens"}
    slots = slot_mapping(prompt, case["blockIds"], bs)
    load = folder_name(storage, prompt[: len(slots)], mm)
    pool = make_pool(case)
    for index, (name, layer) in enumerate(zip(case["layerNames"], pool)):
        path = os.path.join(load, f"{name}.safetensors")
        if not os.path.exists(path):
            return {"ok": False, "detail": f"load path opens {path}: missing"}
        inject(case, layer, read_safetensors(path), slots)
        got = token_rows(case, layer, slots)
        want = reference(case, index, len(slots))
        if not all(same(g, w) for g, w in zip(got, want)):
            return {"ok": False, "detail": f"layer {index} differs from the reference"}
    return {"ok": True, "checkFolder": check, "loadFolder": load, "loadTokens": len(slots)}


def save_case(case):
    """Prefill side: a pool holding the reference, saved as the connector's store path does."""
    prompt, bs = case["promptTokenIds"], case["blockSize"]
    slots_all = slot_mapping(prompt + [0] * bs, case["blockIds"], bs)[: len(prompt)]
    store = slot_mapping(prompt, case["blockIds"], bs)
    folder = folder_name(case["storage"], prompt[: len(store)], case.get("mmHashes", []))
    os.makedirs(folder, exist_ok=True)
    pool = make_pool(case)
    for index, (name, layer) in enumerate(zip(case["layerNames"], pool)):
        place(case, layer, slots_all, reference(case, index, len(prompt)))
        write_safetensors(os.path.join(folder, f"{name}.safetensors"), extract(case, layer, store))
    return {"ok": True, "folder": folder, "tokens": len(store)}


def main():
    results = []
    for case in json.load(sys.stdin):
        try:
            run = load_case if case["direction"] == "load" else save_case
            results.append({"id": case["id"], **run(case)})
        except Exception as error:  # reported per case, so one failure names itself
            results.append({"id": case["id"], "ok": False, "detail": repr(error)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
