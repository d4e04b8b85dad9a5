#!/usr/bin/python3
"""An OPAL prefill device in Python: grpcio with stubs generated from proto/ at start-up, computing
the KV cache of a Llama-family model with numpy (llama_numpy.py). Written from docs/protocol/ and
proto/ alone, as a vendor would; requirement ids (PF-1, MD-5, ...) point at the spec.

    /usr/bin/python3 examples/python-device/opal_device.py --port 50151

It declares F32 and BF16 in NHD and HND layouts, block size 16, model uploads (LoadModel of a
safetensors checkpoint), two slots and a queue of two; no retention, push, prefix cache, decoder
prefix or seeded sampling (those requests are refused as the spec says). `--token` requires bearer
tokens (auth.py), `--tls-cert`/`--tls-key` serve TLS. `--fault` plants one of three vendor bugs so
the conformance suite can be seen catching it.
"""

import argparse
import atexit
import heapq
import itertools
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
import model_upload
from auth import TokenAuth
import prefill_checks
import wire
from wire import DeviceError

FAULTS = ("garbage-kv", "bf16-total-bytes", "first-token-out-of-vocab")
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
    """Prefills computed at once and a bounded queue in front of them (PF-1 stage 6, PF-30, PF-31).

    A freed slot goes to the waiting prefill with the lowest priority, equal priorities in arrival
    order (PF-50): waiters are a heap of (priority, arrival sequence) tickets.
    """

    def __init__(self, slots, queue):
        self.slots, self.queue = slots, queue
        self.running = self.waiting = 0
        self.heap = []  # tickets of the waiting prefills: (priority, arrival sequence)
        self.arrivals = itertools.count()
        self.condition = threading.Condition()

    def admit(self, priority):
        """Queues a prefill (DEVICE_BUSY beyond the slots and queue); returns its ticket."""
        with self.condition:
            if self.running + self.waiting >= self.slots + self.queue:
                raise DeviceError("DEVICE_BUSY", "all slots and queue places are taken", retry_ms=200)
            self.waiting += 1
            ticket = (priority, next(self.arrivals))
            heapq.heappush(self.heap, ticket)
            return ticket

    def wait_for_slot(self, ticket, still_wanted):
        """Blocks until `ticket` gets a slot (True) or the call is gone (False); leaves the queue either way."""
        with self.condition:
            try:
                while self.running >= self.slots or self.heap[0] != ticket:
                    if not still_wanted():
                        return False
                    self.condition.wait(0.05)
                self.running += 1
                return True
            finally:
                self.waiting -= 1
                self.heap.remove(ticket)
                heapq.heapify(self.heap)
                self.condition.notify_all()  # the head may have changed

    def release(self):
        with self.condition:
            self.running -= 1
            self.condition.notify_all()


def create_servicer(pb, pb_grpc, faults, device_id, auth):
    dtype_names = {pb.KV_DTYPE_F32: "f32", pb.KV_DTYPE_BF16: "bf16"}
    capabilities = build_capabilities(pb)
    numerics = capabilities.numerics

    class DeviceServicer(pb_grpc.DeviceServiceServicer):
        def __init__(self):
            self.models = {}  # model_id -> (ModelInfo, LlamaModel), in load order
            self.models_lock = threading.Lock()
            self.requests = {}  # (tenant, request_id) -> the running call's record (PF-4, PF-5)
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
            info, model = model_upload.receive_model(pb, capabilities, requests)
            with self.models_lock:  # MD-11 (atomic), MD-12 (idempotent on the fingerprint), MD-14
                loaded = self.models.get(info.model_id)
                if loaded and loaded[0].fingerprint != info.fingerprint:
                    raise DeviceError(
                        "MODEL_ID_CONFLICT",
                        f"model_id {info.model_id} holds another model (fingerprint {loaded[0].fingerprint})",
                        resource=("opal.device.v1.Model", info.model_id),
                    )
                if loaded:
                    return pb.LoadModelResponse(model=loaded[0], already_loaded=True)
                self.models[info.model_id] = (info, model)
            return pb.LoadModelResponse(model=info, already_loaded=False)

        def _model(self, model_id):
            with self.models_lock:
                return self.models.get(model_id)

        def UnloadModel(self, request, context):
            if not request.model_id:
                wire.abort(context, DeviceError("INVALID_FIELD", "model_id is empty", "model_id"))
            with self.models_lock:
                return pb.UnloadModelResponse(was_loaded=self.models.pop(request.model_id, None) is not None)

        # ---- prefill (prefill.md) ----
        def Prefill(self, request, context):
            try:
                info, model = prefill_checks.validate_prefill(pb, capabilities, self._model, request)
                key = (auth.tenant_of(context.invocation_metadata()), request.request_id)
                record = self._register(key, request)
            except DeviceError as error:
                wire.abort(context, error)
            released = threading.Event()

            def release():
                with self.requests_lock:
                    if self.requests.get(key) is record:
                        del self.requests[key]

            context.add_callback(release)
            enqueued = time.monotonic()
            still_wanted = lambda: context.is_active() and not record["superseded"]  # noqa: E731
            if not self.slots.wait_for_slot(record["ticket"], still_wanted):
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

        def _register(self, key, request):
            body = prefill_checks.request_body(pb, request)
            with self.requests_lock:
                running = self.requests.get(key)
                if running and running["body"] != body:
                    raise DeviceError("REQUEST_ID_CONFLICT", f"request_id {request.request_id} is running with another body")
                ticket = self.slots.admit(request.priority)
                if running:  # PF-7: the retry takes over; the older call ends CANCELLED
                    running["superseded"] = True
                record = {"body": body, "superseded": False, "ticket": ticket}
                self.requests[key] = record
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
            with self.slots.condition:  # the lock telemetry reads under
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
            # RT-11's order: the handle's own shape first, then "no retention".
            if not request.kv_handle or len(request.kv_handle) > 128:
                wire.abort(
                    context,
                    DeviceError("INVALID_FIELD", "kv_handle must be 1 to 128 characters", "kv_handle"),
                )
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
                    running, waiting, energy = self.slots.running, self.slots.waiting, self.energy_joules
                yield pb.WatchTelemetryResponse(
                    snapshot=pb.TelemetrySnapshot(
                        timestamp_unix_ms=int(time.time() * 1000),
                        utilization=running / self.slots.slots,
                        queue_depth=waiting,
                        active_prefills=running,
                        power_watts=10.0 + 50.0 * running,
                        energy_joules_total=10.0 * (time.time() - self.started) + energy,
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
    parser.add_argument(
        "--token", action="append", default=[], metavar="TOKEN=TENANT", help="require bearer tokens (SEC-4)"
    )
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve TLS (SEC-1)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = parser.parse_args(argv)
    tokens = {}
    for pair in args.token:
        token, sep, tenant = pair.rpartition("=")
        if not sep or not token or not tenant:
            parser.error(f"--token expects TOKEN=TENANT, got {pair!r}")
        tokens[token] = tenant
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if tokens and not args.tls_cert and args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("bearer tokens over plaintext need a loopback --host, or --tls-cert and --tls-key (SEC-2)")

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
    auth = TokenAuth(tokens)
    if not auth.enforced:
        print("no --token: callers are not authenticated, all in one default tenant (SEC-5)", file=sys.stderr)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=64),
        interceptors=[auth],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),  # TR-4
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    stopping = threading.Event()
    pb_grpc.add_DeviceServiceServicer_to_server(create_servicer(pb, pb_grpc, set(args.fault), args.device_id, auth), server)
    side_services.add_side_services(server, stopping)
    address = f"{args.host}:{args.port}"
    if args.tls_cert:
        with open(args.tls_key, "rb") as key, open(args.tls_cert, "rb") as cert:
            port = server.add_secure_port(address, grpc.ssl_server_credentials([(key.read(), cert.read())]))
    else:
        port = server.add_insecure_port(address)
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
