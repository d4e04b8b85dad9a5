"""A Llama-family decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU) in numpy, loaded from a
Hugging Face config.json and a safetensors file, as docs/protocol/models.md (MD-8, MD-9) asks.

Only what a prefill needs: the K (after rotary embedding, PF-23) and V of every layer and the logits
of the last position. Arithmetic is f32 with f32 storage between steps; the matrix products
accumulate in f64 and round once, close to the exact reference of PF-36 but not bit for bit, so
the device declares a small error bound instead of bit_exact.
"""

import hashlib
import json
import math

import numpy as np


class ModelError(Exception):
    """A config or weights problem: `reason` is MODEL_CONFIG_INVALID or MODEL_WEIGHTS_INVALID."""

    def __init__(self, reason, field, message):
        super().__init__(message)
        self.reason = reason
        self.field = field


def _config_error(message):
    return ModelError("MODEL_CONFIG_INVALID", "header.config_json", message)


def _weights_error(message):
    return ModelError("MODEL_WEIGHTS_INVALID", "weights_chunk", message)


def parse_config(text):
    """The result-affecting keys of a Llama config.json, checked (MD-9)."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise _config_error(f"config_json is not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise _config_error("config_json must be a JSON object")
    if raw.get("model_type") != "llama" or "LlamaForCausalLM" not in (raw.get("architectures") or []):
        raise _config_error(
            f"expected model_type llama and architectures [LlamaForCausalLM], got "
            f"{raw.get('model_type')!r} and {raw.get('architectures')!r}"
        )

    def whole(key, default=None):
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _config_error(f"{key} must be a whole number >= 1, got {value!r}")
        return value

    hidden = whole("hidden_size")
    heads = whole("num_attention_heads")
    config = {
        "hidden_size": hidden,
        "intermediate_size": whole("intermediate_size"),
        "num_hidden_layers": whole("num_hidden_layers"),
        "num_attention_heads": heads,
        "num_key_value_heads": whole("num_key_value_heads", heads),
        "head_dim": whole("head_dim", hidden // heads if hidden % heads == 0 else 0),
        "vocab_size": whole("vocab_size"),
        "max_position_embeddings": whole("max_position_embeddings"),
        "rms_norm_eps": float(raw.get("rms_norm_eps", 1e-6)),
        "rope_theta": float(raw.get("rope_theta", 10000.0)),
        "rope_scaling": raw.get("rope_scaling"),
        "tie_word_embeddings": bool(raw.get("tie_word_embeddings", False)),
    }
    if heads % config["num_key_value_heads"] != 0 or config["head_dim"] % 2 != 0:
        raise _config_error("num_attention_heads must be a multiple of num_key_value_heads, head_dim even")
    scaling = config["rope_scaling"]
    if scaling is not None and (not isinstance(scaling, dict) or scaling.get("rope_type") != "llama3"):
        raise _config_error(f"rope_scaling must be null or llama3, got {scaling!r}")
    return config


def expected_tensors(config):
    """Hugging Face tensor names and shapes the config implies."""
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    q = config["num_attention_heads"] * config["head_dim"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not config["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, h)
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes.update(
            {
                p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,),
                p + "self_attn.q_proj.weight": (q, h),
                p + "self_attn.k_proj.weight": (kv, h),
                p + "self_attn.v_proj.weight": (kv, h),
                p + "self_attn.o_proj.weight": (h, q),
                p + "mlp.gate_proj.weight": (i, h),
                p + "mlp.up_proj.weight": (i, h),
                p + "mlp.down_proj.weight": (h, i),
            }
        )
    return shapes


_DTYPES = {"F32": (np.dtype("<f4"), 4), "F16": (np.dtype("<f2"), 2), "BF16": (None, 2)}


def parse_safetensors(data, config):
    """Decodes a safetensors file into f32 arrays, checking every tensor against the config (MD-8)."""
    if len(data) < 8:
        raise _weights_error(f"safetensors file has {len(data)} bytes, expected at least 8")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > 100_000_000 or 8 + header_len > len(data):
        raise _weights_error(f"safetensors header length {header_len} exceeds the file or 100 MB")
    try:
        header = json.loads(bytes(data[8 : 8 + header_len]))
    except ValueError as error:
        raise _weights_error(f"safetensors header is not JSON: {error}") from None
    header.pop("__metadata__", None)
    expected = expected_tensors(config)
    body = memoryview(data)[8 + header_len :]
    extents = []
    tensors = {}
    for name, shape in expected.items():
        entry = header.get(name)
        if not isinstance(entry, dict):
            raise _weights_error(f"tensor {name} is missing")
        if entry.get("dtype") not in _DTYPES:
            raise _weights_error(f"tensor {name} has dtype {entry.get('dtype')!r}, expected F32, F16 or BF16")
        if tuple(entry.get("shape", ())) != shape:
            raise _weights_error(f"tensor {name} has shape {entry.get('shape')}, expected {list(shape)}")
        start, end = entry.get("data_offsets", (0, -1))
        dtype, size = _DTYPES[entry["dtype"]]
        if not 0 <= start <= end <= len(body) or end - start != math.prod(shape) * size:
            raise _weights_error(f"tensor {name} has data_offsets {[start, end]} not matching its shape")
        raw = body[start:end]
        if dtype is None:  # bf16: the upper 16 bits of an f32
            values = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view("<f4")
        else:
            values = np.frombuffer(raw, dtype).astype(np.float32)
        tensors[name] = values.reshape(shape)
        extents.append((start, end))
    unknown = sorted(set(header) - set(expected))
    if unknown:
        raise _weights_error(f"unexpected tensor {unknown[0]}")
    position = 0
    for start, end in sorted(extents):
        if start != position:
            raise _weights_error(f"safetensors data has a hole or overlap at byte {position}")
        position = end
    if position != len(body):
        raise _weights_error(f"safetensors data has {len(body) - position} trailing bytes")
    return tensors


def fingerprint(config, tensors):
    """SHA-256 over the result-affecting config and every weight value as f32 (MD-1)."""
    digest = hashlib.sha256(b"opal-python-device-fingerprint-v1")
    digest.update(json.dumps(config, sort_keys=True).encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensors[name], "<f4").tobytes())
    return digest.hexdigest()


def rope_inv_freq(config):
    """Rotary inverse frequencies as Hugging Face computes them (with Llama 3 scaling)."""
    d = config["head_dim"]
    inv = (1.0 / np.float32(config["rope_theta"]) ** (np.arange(0, d, 2, dtype=np.float32) / d)).astype(np.float32)
    scaling = config["rope_scaling"]
    if scaling is None:
        return inv
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    original = scaling["original_max_position_embeddings"]
    wavelen = 2 * np.pi / inv
    smooth = (original / wavelen - low) / (high - low)
    scaled = np.where(wavelen > original / low, inv / factor, inv)
    middle = (wavelen <= original / low) & (wavelen >= original / high)
    return np.where(middle, (1 - smooth) * inv / factor + smooth * inv, scaled).astype(np.float32)


class LlamaModel:
    """A loaded model: `prefill(tokens)` streams per-layer K and V and returns the last logits."""

    def __init__(self, config, tensors):
        self.config = config
        self.tensors = tensors
        self.inv_freq = rope_inv_freq(config)

    def _matmul(self, x, name):
        w = self.tensors[name]
        return (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32)

    def _rms_norm(self, x, name):
        variance = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True).astype(np.float32)
        inv = (1.0 / np.sqrt(variance + np.float32(self.config["rms_norm_eps"]))).astype(np.float32)
        return (self.tensors[name] * (x * inv)).astype(np.float32)

    def _rotary(self, x, cos, sin):
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(np.float32)

    def prefill(self, tokens):
        """Yields each layer's K (after rotary) and V, `[T, kv_heads, head_dim]` f32, as soon as it is
        computed; returns the logits of the last position (`logits = yield from model.prefill(...)`)."""
        c = self.config
        n, nh, nkv, hd = len(tokens), c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        x = self.tensors["model.embed_tokens.weight"][np.asarray(tokens)].astype(np.float32)
        angles = (np.arange(n, dtype=np.float32)[:, None] * self.inv_freq[None, :]).astype(np.float32)
        cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
        mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
        for layer in range(c["num_hidden_layers"]):
            p = f"model.layers.{layer}."
            xn = self._rms_norm(x, p + "input_layernorm.weight")
            q = self._rotary(self._matmul(xn, p + "self_attn.q_proj.weight").reshape(n, nh, hd), cos, sin)
            k = self._rotary(self._matmul(xn, p + "self_attn.k_proj.weight").reshape(n, nkv, hd), cos, sin)
            v = self._matmul(xn, p + "self_attn.v_proj.weight").reshape(n, nkv, hd)
            yield k, v
            group = nh // nkv
            out = np.empty((n, nh, hd), dtype=np.float32)
            for head in range(nh):
                kv_head = head // group
                scores = (q[:, head, :].astype(np.float64) @ k[:, kv_head, :].T.astype(np.float64)) / math.sqrt(hd)
                scores = scores + mask
                weights = np.exp(scores - scores.max(axis=1, keepdims=True))
                weights /= weights.sum(axis=1, keepdims=True)
                out[:, head, :] = (weights @ v[:, kv_head, :].astype(np.float64)).astype(np.float32)
            x = (x + self._matmul(out.reshape(n, nh * hd), p + "self_attn.o_proj.weight")).astype(np.float32)
            xn = self._rms_norm(x, p + "post_attention_layernorm.weight")
            gate = self._matmul(xn, p + "mlp.gate_proj.weight")
            up = self._matmul(xn, p + "mlp.up_proj.weight")
            act = (gate / (1 + np.exp(-gate.astype(np.float64)))).astype(np.float32) * up
            x = (x + self._matmul(act, p + "mlp.down_proj.weight")).astype(np.float32)
        last = self._rms_norm(x[-1:], "model.norm.weight")
        head = "model.embed_tokens.weight" if c["tie_word_embeddings"] else "lm_head.weight"
        return self._matmul(last, head)[0]
