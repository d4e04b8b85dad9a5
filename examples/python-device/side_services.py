"""The side services a device serves on its port (GEN-9): grpc.health.v1.Health, which agrees with
Probe (ID-12), and server reflection v1 and v1alpha over the descriptors of the generated stubs."""

import threading

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool

from opal_side import health_pb2, health_pb2_grpc, reflection_v1_pb2, reflection_v1_pb2_grpc
from opal_side import reflection_v1alpha_pb2, reflection_v1alpha_pb2_grpc

DEVICE_SERVICE = "opal.device.v1.DeviceService"
SERVICES = (
    DEVICE_SERVICE,
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)


class Health(health_pb2_grpc.HealthServicer):
    """SERVING for "" and the device service while the device is ready; this example always is."""

    def __init__(self, stopping):
        self._stopping = stopping

    def _status(self, service, context):
        if service not in ("", DEVICE_SERVICE):
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def Check(self, request, context):
        return self._status(request.service, context)

    def Watch(self, request, context):
        yield self._status(request.service, context)
        # The status never changes while the process runs: hold the stream until the caller leaves.
        done = threading.Event()
        context.add_callback(done.set)
        while not done.wait(0.5) and not self._stopping.is_set():
            pass


def _files_for(file_descriptor):
    """The file and every file it imports, serialized as FileDescriptorProto."""
    seen, order, stack = set(), [], [file_descriptor]
    while stack:
        current = stack.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        proto = descriptor_pb2.FileDescriptorProto()
        current.CopyToProto(proto)
        order.append(proto.SerializeToString())
        stack.extend(current.dependencies)
    return order


def _reflection(pb2, pb2_grpc):
    class Reflection(pb2_grpc.ServerReflectionServicer):
        def ServerReflectionInfo(self, request_iterator, context):
            pool = descriptor_pool.Default()
            for request in request_iterator:
                response = pb2.ServerReflectionResponse(valid_host=request.host, original_request=request)
                kind = request.WhichOneof("message_request")
                try:
                    if kind == "list_services":
                        response.list_services_response.service.extend(
                            pb2.ServiceResponse(name=name) for name in SERVICES
                        )
                    elif kind == "file_containing_symbol":
                        found = pool.FindFileContainingSymbol(request.file_containing_symbol)
                        response.file_descriptor_response.file_descriptor_proto.extend(_files_for(found))
                    elif kind == "file_by_filename":
                        found = pool.FindFileByName(request.file_by_filename)
                        response.file_descriptor_response.file_descriptor_proto.extend(_files_for(found))
                    else:
                        response.error_response.error_code = grpc.StatusCode.UNIMPLEMENTED.value[0]
                        response.error_response.error_message = f"{kind} is not supported"
                except KeyError as error:
                    response.error_response.error_code = grpc.StatusCode.NOT_FOUND.value[0]
                    response.error_response.error_message = str(error)
                yield response

    return Reflection()


def add_side_services(server, stopping):
    health_pb2_grpc.add_HealthServicer_to_server(Health(stopping), server)
    reflection_v1_pb2_grpc.add_ServerReflectionServicer_to_server(
        _reflection(reflection_v1_pb2, reflection_v1_pb2_grpc), server
    )
    reflection_v1alpha_pb2_grpc.add_ServerReflectionServicer_to_server(
        _reflection(reflection_v1alpha_pb2, reflection_v1alpha_pb2_grpc), server
    )
