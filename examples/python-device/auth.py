"""Bearer tokens mapped to tenants (docs/protocol/security.md SEC-4, SEC-5, SEC-15): every
DeviceService call needs `authorization: Bearer <token>` of a known token, or fails UNAUTHENTICATED
TOKEN_INVALID before its request is looked at; health and reflection stay open. Without tokens
every caller is in one default tenant (development mode)."""

import hashlib
import hmac

import grpc

import wire
from wire import DeviceError

DEVICE_METHODS = "/opal.device.v1.DeviceService/"


def _digest(token):
    return hashlib.sha256(token.encode()).digest()


class TokenAuth(grpc.ServerInterceptor):
    def __init__(self, tokens):
        """`tokens`: token -> tenant; empty means no authentication."""
        self._tenants = [(_digest(token), tenant) for token, tenant in tokens.items()]

    @property
    def enforced(self):
        return bool(self._tenants)

    def tenant_of(self, metadata):
        """The caller's tenant, "" when not enforced, None for a missing or unknown token."""
        if not self._tenants:
            return ""
        header = dict(metadata or ()).get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        digest = _digest(token.strip())
        found = None
        for known, tenant in self._tenants:  # every digest compared: timing reveals nothing (SEC-15)
            if hmac.compare_digest(known, digest):
                found = tenant
        return found

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None or not details.method.startswith(DEVICE_METHODS):
            return handler
        if self.tenant_of(details.invocation_metadata) is not None:
            return handler

        def reject(request, context):
            wire.abort(context, DeviceError("TOKEN_INVALID", "missing, malformed or unknown bearer token"))

        kind = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(handler.request_streaming, handler.response_streaming)]
        return kind(
            reject,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
