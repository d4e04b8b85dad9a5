"""vLLM's prefix-cache block hashing, restated in Python, printing test vectors as JSON.

The steps are written from vllm-project/vllm at commit 002f10e0cfa1373a19a0d2756598a34b700d20e5:
- vllm/v1/core/kv_cache_utils.py: init_none_hash / resolve_none_hash_seed (NONE_HASH is the
  algorithm's hash of the seed string: PYTHONHASHSEED if set, else "vllm-none-hash" for the
  SHA-256 algorithms and random bytes for the xxHash ones), generate_block_hash_extra_keys (LoRA
  name, multimodal (identifier, offset - block start), cache_salt on the block starting at 0,
  sha256 of the block's prompt-embedding bytes, in that order; None when empty),
  hash_block_tokens (hash of (parent, tuple(tokens), extra_keys)), get_request_block_hasher (full
  blocks only; multimodal scan from feature 0, or from the last feature when continuing at a
  position > 0) and maybe_convert_block_hash (int.from_bytes(hash, "big") & (2**64 - 1)).
- vllm/utils/hashing.py (the version kv_cache_utils.py imports xxhash and xxhash_cbor from):
  sha256 / xxhash serialize with pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL), the *_cbor
  ones with cbor2.dumps(x, canonical=True); xxhash digests are xxhash.xxh3_128_digest.
- vllm/v1/utils.py tensor_data: the tensor's raw bytes (flatten, contiguous, viewed as uint8).
- sha256_msgpack / xxhash_msgpack come from vllm-project/vllm pull request #43789 (open at the
  time of writing): msgspec.msgpack.Encoder().encode((parent, tokens, extra_keys)) with the token
  sequence passed as is. msgspec is not packaged by Debian; msgpack.packb writes the same bytes for
  the types that occur here (int, str, bytes, None, tuple/list), which is what this stands on.

Run with Debian's /usr/bin/python3 (python3-cbor2, python3-msgpack, python3-xxhash, python3-torch).
"""

import hashlib
import json
import pickle
import sys

import cbor2
import msgpack
import torch
import xxhash

VLLM_COMMIT = "002f10e0cfa1373a19a0d2756598a34b700d20e5"
DEFAULT_NONE_HASH_SEED = "vllm-none-hash"
ALGORITHMS = ["sha256", "sha256_cbor", "xxhash", "xxhash_cbor", "sha256_msgpack", "xxhash_msgpack"]


def serialize(algorithm, obj):
    if algorithm.endswith("_cbor"):
        return cbor2.dumps(obj, canonical=True)
    if algorithm.endswith("_msgpack"):
        return msgpack.packb(obj)
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def hash_fn(algorithm, obj):
    data = serialize(algorithm, obj)
    if algorithm.startswith("sha256"):
        return hashlib.sha256(data).digest()
    return xxhash.xxh3_128_digest(data)


def none_hash(algorithm, seed):
    if seed is None:
        if not algorithm.startswith("sha256"):
            raise ValueError("xxHash algorithms need an explicit seed to be reproducible")
        seed = DEFAULT_NONE_HASH_SEED
    return hash_fn(algorithm, seed)


def tensor_bytes(tensor):
    return bytes(tensor.flatten().contiguous().view(torch.uint8).numpy().data)


def mm_keys(features, start, end, index):
    keys = []
    if not features or features[-1]["offset"] + features[-1]["length"] <= start:
        return keys, index
    if index < 0:
        index += len(features)
    while index < len(features):
        offset, length = features[index]["offset"], features[index]["length"]
        if end <= offset:
            break
        if start >= offset + length:
            index += 1
            continue
        keys.append((features[index]["identifier"], offset - start))
        if end < offset + length:
            break
        index += 1
    return keys, index


def extra_keys(case, embeds, start, end, mm_index):
    mm, next_index = mm_keys(case.get("mm", []), start, end, mm_index)
    lora = [case["lora_name"]] if case.get("lora_name") is not None else []
    salt = [case["cache_salt"]] if start == 0 and case.get("cache_salt") else []
    embed_keys = [] if embeds is None else [hashlib.sha256(tensor_bytes(embeds[start:end])).digest()]
    keys = lora + mm + salt + embed_keys
    return (tuple(keys) if keys else None), next_index


def token_list(tokens):
    """Token lists are given inline, or as {"start", "count"} for a long run of consecutive ids."""
    if isinstance(tokens, dict):
        return list(range(tokens["start"], tokens["start"] + tokens["count"]))
    return tokens


def chain(case, algorithm, embeds):
    size, first = case["block_size"], case.get("first_token_index", 0)
    tokens = token_list(case["tokens"])
    parent = bytes.fromhex(case["parent"][algorithm]) if first else none_hash(algorithm, case.get("seed"))
    mm_index = -1 if first else 0
    out = []
    for b in range(len(tokens) // size):
        start = first + b * size
        keys, mm_index = extra_keys(case, embeds, start, start + size, mm_index)
        block = tokens[b * size:(b + 1) * size]
        if not algorithm.endswith("_msgpack"):
            block = tuple(block)
        parent = hash_fn(algorithm, (parent, block, keys))
        out.append(parent)
    return out


def make_embeds(rows, hidden, dtype):
    values = torch.arange(rows * hidden, dtype=torch.float32).reshape(rows, hidden) * 0.37 - 5.0
    return values.to(dtype)


def cases():
    text = [(i * 7919 + 13) % 151_000 for i in range(37)]
    yield {"name": "text", "block_size": 16, "tokens": text, "seed": None}
    yield {"name": "text seed 0", "block_size": 16, "tokens": text, "seed": "0"}
    yield {
        "name": "salt and LoRA", "block_size": 4, "seed": "1234", "tokens": [150_000 + i for i in range(13)],
        "cache_salt": "tenant-a", "lora_name": "sql-adapter",
    }
    # Equal identifiers built at run time: distinct str objects, as vLLM's per-item mm hashes are
    # (a compile-time constant would be one object, which pickle writes once and then refers to).
    mm = [
        {"identifier": "".join(["img-", "ab" * 30]), "offset": 3, "length": 10},
        {"identifier": "".join(["img-", "ab" * 30]), "offset": 13, "length": 2},
        {"identifier": "aud-7", "offset": 20, "length": 9},
    ]
    yield {"name": "multimodal", "block_size": 8, "seed": "7", "tokens": list(range(100, 140)), "mm": mm,
           "cache_salt": "s"}
    yield {"name": "multimodal continued", "block_size": 8, "seed": "7", "tokens": list(range(116, 140)),
           "mm": mm, "first_token_index": 16, "continues": "multimodal"}
    yield {"name": "shared one-character strings", "block_size": 2, "seed": "a", "tokens": [0, 1, 2, 3, 4],
           "lora_name": "a", "cache_salt": "a", "mm": [{"identifier": "\u00e9", "offset": 0, "length": 4}]}
    yield {"name": "prompt embeds", "block_size": 8, "seed": None, "tokens": [0] * 28,
           "embeds": {"rows": 21, "hidden": 6, "dtype": "bfloat16"}, "lora_name": "emb"}
    yield {"name": "large block", "block_size": 13_200, "seed": None,
           "tokens": [100_000 + i for i in range(26_401)]}


def main():
    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    out = []
    by_name = {}
    for case in cases():
        embeds = None
        if "embeds" in case:
            spec = case.pop("embeds")
            embeds = make_embeds(spec["rows"], spec["hidden"], dtypes[spec["dtype"]])
            case["prompt_embeds"] = {
                "bytes_hex": tensor_bytes(embeds).hex(),
                "bytes_per_token": spec["hidden"] * embeds.element_size(),
            }
        if "continues" in case:
            earlier = by_name[case.pop("continues")]
            index = case["first_token_index"] // case["block_size"] - 1
            case["parent"] = {a: h[index] for a, h in earlier["hashes"].items()}
        hashes, ints = {}, {}
        for algorithm in ALGORITHMS:
            if case.get("seed") is None and not algorithm.startswith("sha256"):
                continue
            chain_hashes = chain(case, algorithm, embeds)
            hashes[algorithm] = [h.hex() for h in chain_hashes]
            ints[algorithm] = [str(int.from_bytes(h, "big") & ((1 << 64) - 1)) for h in chain_hashes]
        case["hashes"], case["kv_event_ints"] = hashes, ints
        by_name[case["name"]] = case
        out.append(case)
    json.dump({"vllm_commit": VLLM_COMMIT, "cases": out}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
