"""Prefill request checks (docs/protocol/prefill.md): PF-1 stage 4 in its order, and the request
body that PF-6 and PF-7 compare."""

from wire import DeviceError


def validate_prefill(pb, capabilities, find_model, r):
    """Checks request `r` in PF-1 stage 4 order, raising DeviceError for the first failure; returns
    `find_model(model_id)`: the loaded model's (ModelInfo, LlamaModel)."""
    if not 1 <= len(r.request_id) <= 128 or any(not 0x21 <= ord(c) <= 0x7E for c in r.request_id):
        raise DeviceError(
            "INVALID_FIELD", "request_id must be 1-128 characters in 0x21..0x7E", "request_id"
        )
    if not r.model_id:
        raise DeviceError("INVALID_FIELD", "model_id is empty", "model_id")
    if not r.prompt_token_ids:
        raise DeviceError("PROMPT_EMPTY", "prompt has 0 tokens, expected >= 1", "prompt_token_ids")
    if not r.HasField("kv_format"):
        raise DeviceError("INVALID_FIELD", "kv_format is missing", "kv_format")
    loaded = find_model(r.model_id)
    if loaded is None:
        raise DeviceError(
            "MODEL_NOT_LOADED",
            f"model {r.model_id} is not loaded",
            resource=("opal.device.v1.Model", r.model_id),
            metadata={"model_id": r.model_id},
        )
    info, model = loaded
    limit = min(capabilities.max_prompt_tokens, info.max_position_embeddings)
    if len(r.prompt_token_ids) > limit:
        raise DeviceError(
            "PROMPT_TOO_LONG",
            f"prompt has {len(r.prompt_token_ids)} tokens, max {limit}",
            "prompt_token_ids",
            metadata={"limit": str(limit), "actual": str(len(r.prompt_token_ids))},
        )
    for i, token in enumerate(r.prompt_token_ids):
        if token >= info.vocab_size:
            raise DeviceError(
                "TOKEN_OUT_OF_RANGE",
                f"token {token} at index {i} is not below vocab_size {info.vocab_size}",
                f"prompt_token_ids[{i}]",
            )
    f = r.kv_format
    check_enum(f.dtype, "kv_format.dtype", capabilities.dtypes, "UNSUPPORTED_DTYPE")
    check_enum(f.layout, "kv_format.layout", capabilities.layouts, "UNSUPPORTED_LAYOUT")
    check_enum(f.scale_scheme, "kv_format.scale_scheme", [pb.KV_SCALE_SCHEME_NONE], "UNSUPPORTED_SCALE_SCHEME")
    if f.block_size_tokens not in capabilities.block_sizes_tokens:
        raise DeviceError(
            "UNSUPPORTED_BLOCK_SIZE",
            f"expected one of {list(capabilities.block_sizes_tokens)}, got {f.block_size_tokens}",
            "kv_format.block_size_tokens",
        )
    heads = info.mha.num_kv_heads
    if f.HasField("head_range") and (
        f.head_range.count < 1 or f.head_range.start + f.head_range.count > heads
    ):
        raise DeviceError(
            "HEAD_RANGE_INVALID",
            f"head_range {{start {f.head_range.start}, count {f.head_range.count}}} is outside the model's {heads} KV heads",
            "kv_format.head_range",
        )
    if r.max_chunk_bytes > capabilities.max_chunk_bytes:
        raise DeviceError(
            "INVALID_FIELD",
            f"max_chunk_bytes must be at most {capabilities.max_chunk_bytes}, got {r.max_chunk_bytes}",
            "max_chunk_bytes",
        )
    unsupported = [
        ("decoder_prefix", r.HasField("decoder_prefix")),
        ("retention_seconds", r.retention_seconds > 0),
        ("push_target", r.HasField("push_target")),
    ]
    for field, used in unsupported:
        if used:
            raise DeviceError("UNSUPPORTED_FEATURE", f"{field} is not supported by this device", field)
    if r.HasField("sampling"):
        if r.sampling.mode == pb.SAMPLING_MODE_SEEDED:
            raise DeviceError("UNSUPPORTED_FEATURE", "seeded sampling is not supported", "sampling.mode")
        if r.sampling.mode != pb.SAMPLING_MODE_GREEDY:
            raise DeviceError("INVALID_FIELD", f"sampling.mode must be GREEDY, got {r.sampling.mode}", "sampling.mode")
    if r.HasField("data_plane") and r.data_plane.WhichOneof("plane"):
        raise DeviceError("UNSUPPORTED_FEATURE", "only the inline data plane is supported", "data_plane")
    if len(r.cache_salt.encode()) > 256:
        raise DeviceError("INVALID_FIELD", "cache_salt must be at most 256 bytes", "cache_salt")
    return info, model


def check_enum(value, field, allowed, reason):
    """An enum field: UNSPECIFIED is INVALID_FIELD (GEN-3); a value not declared is `reason`."""
    if value == 0:
        raise DeviceError("INVALID_FIELD", f"{field} is UNSPECIFIED", field)
    if value not in allowed:
        raise DeviceError(reason, f"{field} {value} is not one of {list(allowed)}", field)


def request_body(pb, request):
    """The request minus request_id, data_plane and priority, for PF-6/PF-7 (absent == empty)."""
    body = pb.PrefillRequest()
    body.CopyFrom(request)
    body.ClearField("request_id")
    body.ClearField("data_plane")
    body.ClearField("priority")  # orders admission, not what is computed (prefill.md §3)
    body.DiscardUnknownFields()
    for field in ("kv_format", "decoder_prefix", "push_target", "sampling"):
        if body.HasField(field) and getattr(body, field).ByteSize() == 0:
            body.ClearField(field)
    if body.kv_format.HasField("head_range") and body.kv_format.head_range.ByteSize() == 0:
        body.kv_format.ClearField("head_range")
    return body.SerializeToString(deterministic=True)
