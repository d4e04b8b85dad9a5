"""LoadModel's receiving side (docs/protocol/models.md), in this order: the header (MD-5, MD-6), the
config (MD-9), the weight chunks (MD-7), their SHA-256 (MD-10), the safetensors file against the
config (MD-8). Nothing is visible before all of them passed (MD-11)."""

import hashlib
import re

import llama_numpy
from wire import DeviceError

MODEL_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")


def receive_model(pb, capabilities, requests):
    """Reads a LoadModel stream; returns the ModelInfo and the LlamaModel, or raises DeviceError or
    llama_numpy.ModelError."""
    first = next(requests, None)
    if first is None or first.WhichOneof("payload") != "header":
        raise DeviceError("INVALID_FIELD", "the first LoadModel message must be a header", "header")
    header = first.header
    if not MODEL_ID.match(header.model_id):
        raise DeviceError(
            "INVALID_FIELD",
            f"model_id must be 1-128 characters of [A-Za-z0-9._:/-], got {header.model_id!r}",
            "header.model_id",
        )
    if header.device_local_ref:
        if header.weights_byte_length:
            raise DeviceError(
                "INVALID_FIELD", "set device_local_ref or weights, not both", "header.device_local_ref"
            )
        raise DeviceError(
            "MODEL_WEIGHTS_INVALID",
            f"this device stores no local weights (got ref {header.device_local_ref!r})",
            "header.device_local_ref",
            resource=("opal.device/weights", header.device_local_ref),
        )
    expected = header.weights_byte_length
    if expected == 0:
        raise DeviceError(
            "INVALID_FIELD", "weights_byte_length must be >= 1 without device_local_ref", "header.weights_byte_length"
        )
    if expected > capabilities.max_model_bytes:
        raise DeviceError(
            "MESSAGE_TOO_LARGE",
            f"weights of {expected} bytes exceed max_model_bytes {capabilities.max_model_bytes}",
            metadata={"limit": str(capabilities.max_model_bytes), "actual": str(expected)},
        )
    config = llama_numpy.parse_config(header.config_json)
    data = bytearray()
    for message in requests:
        if message.WhichOneof("payload") != "weights_chunk":
            raise DeviceError("INVALID_FIELD", "only the first LoadModel message may be a header", "header")
        size = len(message.weights_chunk)
        if not 1 <= size <= capabilities.max_chunk_bytes:
            raise DeviceError(
                "INVALID_FIELD",
                f"weights_chunk must be 1 to {capabilities.max_chunk_bytes} bytes, got {size}",
                "weights_chunk",
            )
        if len(data) + size > expected:
            raise DeviceError(
                "MODEL_WEIGHTS_INVALID",
                f"more than weights_byte_length {expected} bytes arrived",
                "weights_chunk",
            )
        data += message.weights_chunk
    if len(data) != expected:
        raise DeviceError(
            "MODEL_WEIGHTS_INVALID",
            f"upload ended after {len(data)} bytes, expected weights_byte_length {expected}",
            "header.weights_byte_length",
        )
    if header.weights_sha256 and hashlib.sha256(data).hexdigest() != header.weights_sha256:
        raise DeviceError(
            "MODEL_WEIGHTS_INVALID", "weights do not match weights_sha256", "header.weights_sha256"
        )
    tensors = llama_numpy.parse_safetensors(bytes(data), config)
    info = pb.ModelInfo(
        model_id=header.model_id,
        fingerprint=llama_numpy.fingerprint(config, tensors),
        architecture="LlamaForCausalLM",
        num_layers=config["num_hidden_layers"],
        mha=pb.MhaShape(num_kv_heads=config["num_key_value_heads"], head_dim=config["head_dim"]),
        vocab_size=config["vocab_size"],
        max_position_embeddings=config["max_position_embeddings"],
    )
    return info, llama_numpy.LlamaModel(config, tensors)
