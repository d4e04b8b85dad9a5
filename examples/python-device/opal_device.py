#!/usr/bin/python3
"""An OPAL prefill device in Python: grpcio with stubs generated from proto/ at start-up, computing
the KV cache of a Llama-family model with numpy (llama_numpy.py). Written from docs/protocol/ and
proto/ alone, as a vendor would; requirement ids (PF-1, MD-5, ...) point at the spec.

    /usr/bin/python3 examples/python-device/opal_device.py --port 50151

It declares F32 and BF16 in NHD and HND layouts, block size 16, model uploads (LoadModel of a
safetensors checkpoint), two slots and a queue of two; no retention, push, prefix cache, decoder
prefix or seeded sampling (those requests are refused as the spec says). `--fault` plants one of
three vendor bugs so the conformance suite can be seen catching it.
"""

import argparse
import atexit
import hashlib
import re
import secrets
import shutil
import signal
import sys
import threading
import time
from concurrent import futures

sys.dont_write_bytecode = True  # keep the example folder clean of __pycache__

import grpc
import numpy as np
import xxhash

import llama_numpy
import wire
from wire import DeviceError

FAULTS = ("garbage-kv", "bf16-total-bytes", "first-token-out-of-vocab")
MODEL_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
MIB = 1 << 20


def build_capabilities(pb):
    """What this device declares (identity.md); everything it enforces is here (ID-7)."""
    return pb.Capabilities(
        dtypes=[pb.KV_DTYPE_F32, pb.KV_DTYPE_BF16],
        layouts=[pb.KV_LAYOUT_NHD, pb.KV_LAYOUT_HND],
        block_sizes_tokens=[16],
        max_prompt_tokens=2048,
        max_concurrent_prefills=2,
        max_queued_prefills=2,
        preferred_chunk_bytes=64 * 1024,
        max_chunk_bytes=MIB,
        max_message_bytes=MIB + 64 * 1024,
        retention=pb.RetentionLimits(),
        features=pb.Features(),
        numerics=pb.Numerics(
            device_kind=pb.DEVICE_KIND_DIGITAL,
            precision_path="numpy f32 arithmetic, f64 accumulation of matrix products (CPU)",
            bit_exact=False,
            max_abs_error=1e-5,
            max_rel_error=1e-4,
        ),
        data_planes=[pb.DATA_PLANE_KIND_INLINE],
        max_model_bytes=256 * MIB,
    )


class Slots:
    """Prefills computed at once and a bounded queue in front of them (PF-1 stage 6, PF-30, PF-31)."""

    def __init__(self, slots, queue):
        self.slots, self.queue = slots, queue
        self.running = self.waiting = 0
        self.condition = threading.Condition()

    def admit(self):
        with self.condition:
            if self.running + self.waiting >= self.slots + self.queue:
                raise DeviceError("DEVICE_BUSY", "all slots and queue places are taken", retry_ms=200)
            self.waiting += 1

    def wait_for_slot(self, still_wanted):
        """Blocks until a slot is free (True) or the call is gone (False); leaves the queue either way."""
        with self.condition:
            try:
                while self.running >= self.slots:
                    if not still_wanted():
                        return False
                    self.condition.wait(0.05)
                self.running += 1
                return True
            finally:
                self.waiting -= 1

    def release(self):
        with self.condition:
            self.running -= 1
            self.condition.notify_all()


def create_servicer(pb, pb_grpc, faults, device_id):
    dtype_names = {pb.KV_DTYPE_F32: "f32", pb.KV_DTYPE_BF16: "bf16"}
    capabilities = build_capabilities(pb)
    numerics = capabilities.numerics

    class DeviceServicer(pb_grpc.DeviceServiceServicer):
        def __init__(self):
            self.models = {}  # model_id -> (ModelInfo, LlamaModel), in load order
            self.models_lock = threading.Lock()
            self.requests = {}  # request_id -> the running call's record (PF-5)
            self.requests_lock = threading.Lock()
            self.slots = Slots(capabilities.max_concurrent_prefills, capabilities.max_queued_prefills)
            self.started = time.time()
            self.energy_joules = 0.0

        # ---- identity (identity.md) ----
        def GetInfo(self, request, context):
            return pb.GetInfoResponse(
                protocol_version="1.0.0",
                vendor="OPAL example",
                product="python-device (numpy)",
                firmware_version="1.0.0",
                driver_version="1.0.0",
                device_id=device_id,
            )

        def GetCapabilities(self, request, context):
            return pb.GetCapabilitiesResponse(capabilities=capabilities)

        def Probe(self, request, context):
            return pb.ProbeResponse(state=pb.PROBE_STATE_READY)

        # ---- models (models.md) ----
        def ListModels(self, request, context):
            with self.models_lock:
                return pb.ListModelsResponse(models=[info for info, _ in self.models.values()])

        def LoadModel(self, request_iterator, context):
            try:
                return self._load(request_iterator)
            except DeviceError as error:
                wire.abort(context, error)
            except llama_numpy.ModelError as error:
                wire.abort(context, DeviceError(error.reason, str(error), field=error.field))

        def _load(self, requests):
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
            with self.models_lock:  # MD-11 (atomic), MD-12 (idempotent on the fingerprint), MD-14
                loaded = self.models.get(header.model_id)
                if loaded and loaded[0].fingerprint != info.fingerprint:
                    raise DeviceError(
                        "MODEL_ID_CONFLICT",
                        f"model_id {header.model_id} holds another model (fingerprint {loaded[0].fingerprint})",
                        resource=("opal.device.v1.Model", header.model_id),
                    )
                if loaded:
                    return pb.LoadModelResponse(model=loaded[0], already_loaded=True)
                self.models[header.model_id] = (info, llama_numpy.LlamaModel(config, tensors))
            return pb.LoadModelResponse(model=info, already_loaded=False)

        def UnloadModel(self, request, context):
            if not request.model_id:
                wire.abort(context, DeviceError("INVALID_FIELD", "model_id is empty", "model_id"))
            with self.models_lock:
                return pb.UnloadModelResponse(was_loaded=self.models.pop(request.model_id, None) is not None)

        # ---- prefill (prefill.md) ----
        def _validate(self, r):
            """PF-1 stage 4, in its order; returns the model."""
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
            with self.models_lock:
                loaded = self.models.get(r.model_id)
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
            self._check_enum(f.dtype, "kv_format.dtype", capabilities.dtypes, "UNSUPPORTED_DTYPE")
            self._check_enum(f.layout, "kv_format.layout", capabilities.layouts, "UNSUPPORTED_LAYOUT")
            self._check_enum(f.scale_scheme, "kv_format.scale_scheme", [pb.KV_SCALE_SCHEME_NONE], "UNSUPPORTED_SCALE_SCHEME")
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

        @staticmethod
        def _check_enum(value, field, allowed, reason):
            if value == 0:
                raise DeviceError("INVALID_FIELD", f"{field} is UNSPECIFIED", field)
            if value not in allowed:
                raise DeviceError(reason, f"{field} {value} is not one of {list(allowed)}", field)

        @staticmethod
        def _body(request):
            """The request minus request_id and data_plane, for PF-6/PF-7 (absent == empty)."""
            body = pb.PrefillRequest()
            body.CopyFrom(request)
            body.ClearField("request_id")
            body.ClearField("data_plane")
            body.DiscardUnknownFields()
            for field in ("kv_format", "decoder_prefix", "push_target", "sampling"):
                if body.HasField(field) and getattr(body, field).ByteSize() == 0:
                    body.ClearField(field)
            if body.kv_format.HasField("head_range") and body.kv_format.head_range.ByteSize() == 0:
                body.kv_format.ClearField("head_range")
            return body.SerializeToString(deterministic=True)

        def Prefill(self, request, context):
            try:
                info, model = self._validate(request)
                record = self._register(request)
            except DeviceError as error:
                wire.abort(context, error)
            released = threading.Event()

            def release():
                with self.requests_lock:
                    if self.requests.get(request.request_id) is record:
                        del self.requests[request.request_id]

            context.add_callback(release)
            enqueued = time.monotonic()
            if not self.slots.wait_for_slot(lambda: context.is_active() and not record["superseded"]):
                release()
                if record["superseded"]:
                    wire.abort(context, _superseded())
                return
            context.add_callback(lambda: released.is_set() or (released.set(), self.slots.release()))
            try:
                yield from self._stream(request, context, info, model, record, enqueued)
            finally:
                if not released.is_set():
                    released.set()
                    self.slots.release()
                release()

        def _register(self, request):
            body = self._body(request)
            with self.requests_lock:
                running = self.requests.get(request.request_id)
                if running and running["body"] != body:
                    raise DeviceError("REQUEST_ID_CONFLICT", f"request_id {request.request_id} is running with another body")
                self.slots.admit()
                if running:  # PF-7: the retry takes over; the older call ends CANCELLED
                    running["superseded"] = True
                record = {"body": body, "superseded": False}
                self.requests[request.request_id] = record
                return record

        def _stream(self, request, context, info, model, record, enqueued):
            started = time.monotonic()
            queue_us = int((started - enqueued) * 1e6)
            f = request.kv_format
            dtype = dtype_names[f.dtype]
            heads = info.mha.num_kv_heads
            start, count = (f.head_range.start, f.head_range.count) if f.HasField("head_range") else (0, heads)
            tokens = list(request.prompt_token_ids)
            element = wire.ELEMENT_BYTES[dtype]
            if "bf16-total-bytes" in faults and dtype == "bf16":
                element = 4  # planted bug: the f32 element size used for bf16 (PF-18)
            total = info.num_layers * 2 * len(tokens) * count * info.mha.head_dim * element
            descriptor = pb.KvDescriptor(
                model_fingerprint=info.fingerprint,
                num_layers=info.num_layers,
                mha=info.mha,
                head_range=pb.HeadRange(start=start, count=count),
                dtype=f.dtype,
                scale_scheme=f.scale_scheme,
                layout=f.layout,
                token_start=0,
                token_count=len(tokens),
                block_size_tokens=f.block_size_tokens,
                numerics=numerics,
                total_bytes=total,
            )
            handle = secrets.token_urlsafe(24)
            yield pb.PrefillResponse(accepted=pb.PrefillAccepted(kv_handle=handle, descriptor=descriptor, queue_time_us=queue_us))
            chunk_bytes = request.max_chunk_bytes or capabilities.preferred_chunk_bytes
            digest = xxhash.xxh3_128()
            sent = 0
            first_chunk_us = 0
            layers = model.prefill(tokens)
            layer = 0
            while True:
                try:
                    k, v = next(layers)
                except StopIteration as stop:
                    logits = stop.value
                    break
                for part, values in ((pb.KV_PART_K, k), (pb.KV_PART_V, v)):
                    values = values[:, start : start + count, :]
                    if "garbage-kv" in faults:  # planted bug: made-up values of the right size
                        values = np.random.default_rng(layer).standard_normal(values.shape).astype(np.float32)
                    data = wire.encode_part(values, dtype, f.layout == pb.KV_LAYOUT_HND)
                    for offset, piece in wire.split(data, chunk_bytes):
                        if record["superseded"]:
                            wire.abort(context, _superseded())
                        if not first_chunk_us:
                            first_chunk_us = int((time.monotonic() - started) * 1e6)
                        digest.update(piece)
                        sent += len(piece)
                        yield pb.PrefillResponse(
                            chunk=pb.KvChunk(layer=layer, part=part, offset_bytes=offset, data=piece, crc32c=wire.crc32c(piece))
                        )
                layer += 1
            first = int(np.argmax(logits))  # PF-32: highest logit, lowest id on ties
            shifted = logits.astype(np.float64) - logits.max()
            logprob = float(shifted[first] - np.log(np.exp(shifted).sum()))
            if "first-token-out-of-vocab" in faults:
                first = info.vocab_size  # planted bug: an id one past the vocabulary
            device_us = int((time.monotonic() - started) * 1e6)
            energy = device_us * 1e-6 * 50.0  # a modelled 50 W while computing
            self.energy_joules += energy
            yield pb.PrefillResponse(
                completed=pb.PrefillCompleted(
                    prompt_tokens=len(tokens),
                    first_token_id=first,
                    first_token_logprob=logprob,
                    kv_total_bytes=total if "bf16-total-bytes" in faults else sent,
                    kv_digest=digest.digest(),
                    device_time_us=device_us,
                    queue_time_us=queue_us,
                    energy_joules=energy,
                    time_to_first_chunk_us=first_chunk_us,
                )
            )

        # ---- retention is not offered (retention.md, RT-11) ----
        def FetchKv(self, request, context):
            wire.abort(
                context,
                DeviceError("UNSUPPORTED_FEATURE", "this device retains no caches (max_retention_seconds 0)", "kv_handle"),
            )
            yield  # pragma: no cover  (a streaming handler is a generator)

        def ReleaseKv(self, request, context):
            if not request.kv_handle:
                wire.abort(context, DeviceError("INVALID_FIELD", "kv_handle is empty", "kv_handle"))
            return pb.ReleaseKvResponse(released=False)

        # ---- telemetry (telemetry.md) ----
        def WatchTelemetry(self, request, context):
            interval = min(max(request.interval_ms or 1000, 50), 60_000) / 1000
            done = threading.Event()
            context.add_callback(done.set)
            while True:
                with self.slots.condition:
                    running, waiting = self.slots.running, self.slots.waiting
                yield pb.WatchTelemetryResponse(
                    snapshot=pb.TelemetrySnapshot(
                        timestamp_unix_ms=int(time.time() * 1000),
                        utilization=running / self.slots.slots,
                        queue_depth=waiting,
                        active_prefills=running,
                        power_watts=10.0 + 50.0 * running,
                        energy_joules_total=10.0 * (time.time() - self.started) + self.energy_joules,
                        temperature_celsius=40.0,
                    )
                )
                if done.wait(interval):
                    return

    return DeviceServicer()


def _superseded():
    return DeviceError("CANCELLED", "superseded by a retry with the same request_id")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50151, help="0 picks a free port (printed)")
    parser.add_argument("--device-id", default="python-device-0")
    parser.add_argument("--stubs-dir", help="where to generate the stubs (default: a temporary folder)")
    parser.add_argument("--fault", action="append", default=[], choices=FAULTS, help="plant a vendor bug")
    args = parser.parse_args(argv)

    stubs = wire.generate_stubs(args.stubs_dir)
    if not args.stubs_dir:
        atexit.register(shutil.rmtree, stubs, True)
    from opal.device.v1 import device_service_pb2 as pb, device_service_pb2_grpc as pb_grpc
    from opal.device.v1 import kv_pb2

    import side_services

    # The generated module re-exports nothing from kv.proto: merge both namespaces for brevity.
    for name in dir(kv_pb2):
        if not name.startswith("_") and not hasattr(pb, name):
            setattr(pb, name, getattr(kv_pb2, name))

    capabilities = build_capabilities(pb)
    limit = capabilities.max_message_bytes
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=64),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),  # TR-4
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    stopping = threading.Event()
    pb_grpc.add_DeviceServiceServicer_to_server(create_servicer(pb, pb_grpc, set(args.fault), args.device_id), server)
    side_services.add_side_services(server, stopping)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    if port == 0:
        sys.exit(f"cannot listen on {args.host}:{args.port}")
    server.start()
    print(f"listening on {args.host}:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
