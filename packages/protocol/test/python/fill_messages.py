"""Second-language peer for the OPAL protocol, using Debian's python3-protobuf.

Usage: fill_messages.py fill            -> prints one JSON line per message type: {"type", "hex"}
       fill_messages.py compare FILE    -> reads JSON lines {"type", "hex"} re-encoded by another
                                           implementation and checks each equals the filled message.
Every message of every generated module is instantiated, every field set to a non-default value
(nested messages one level deep), serialized and parsed back.
"""
import importlib
import json
import sys

from google.protobuf.descriptor import FieldDescriptor

MODULES = [
    "opal.device.v1.kv_pb2",
    "opal.device.v1.device_service_pb2",
    "opal.device.v1.kv_receiver_service_pb2",
    "opal.device.v1.errors_pb2",
    "google.rpc.status_pb2",
    "google.rpc.error_details_pb2",
]

SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: 2.5,
    FieldDescriptor.TYPE_FLOAT: 1.5,
    FieldDescriptor.TYPE_INT64: 1234567890123,
    FieldDescriptor.TYPE_UINT64: 9007199254740991,
    FieldDescriptor.TYPE_INT32: -7,
    FieldDescriptor.TYPE_FIXED64: 42,
    FieldDescriptor.TYPE_FIXED32: 0xE3069283,
    FieldDescriptor.TYPE_BOOL: True,
    FieldDescriptor.TYPE_STRING: "opal \u00e9",
    FieldDescriptor.TYPE_BYTES: b"\x00\x01\xfe\xff",
    FieldDescriptor.TYPE_UINT32: 4000000000,
    FieldDescriptor.TYPE_SFIXED32: -3,
    FieldDescriptor.TYPE_SFIXED64: -4,
    FieldDescriptor.TYPE_SINT32: -5,
    FieldDescriptor.TYPE_SINT64: -6,
}


def value_for(field):
    if field.type == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values if v.number != 0]
        return values[-1] if values else 0
    return SCALARS[field.type]


def fill(message, depth=0):
    seen_oneofs = set()
    for field in message.DESCRIPTOR.fields:
        if field.containing_oneof is not None:
            if field.containing_oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(field.containing_oneof.name)
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            getattr(message, field.name)["key"] = "value"
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 2:
                continue
            if field.label == FieldDescriptor.LABEL_REPEATED:
                fill(getattr(message, field.name).add(), depth + 1)
            else:
                getattr(message, field.name).SetInParent()
                fill(getattr(message, field.name), depth + 1)
        elif field.label == FieldDescriptor.LABEL_REPEATED:
            getattr(message, field.name).extend([value_for(field), value_for(field)])
        else:
            setattr(message, field.name, value_for(field))
    return message


def all_message_classes():
    classes = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            stack = [descriptor]
            while stack:
                d = stack.pop()
                if d.GetOptions().map_entry:
                    continue
                cls = module
                for part in d.full_name[len(module.DESCRIPTOR.package) + 1 :].split("."):
                    cls = getattr(cls, part)
                classes[d.full_name] = cls
                stack.extend(d.nested_types)
    return classes


def main():
    classes = all_message_classes()
    if sys.argv[1] == "fill":
        for full_name, cls in sorted(classes.items()):
            message = fill(cls())
            data = message.SerializeToString()
            again = cls.FromString(data)
            assert again == message, full_name
            print(json.dumps({"type": full_name, "hex": data.hex()}))
    elif sys.argv[1] == "compare":
        checked = 0
        with open(sys.argv[2]) as lines:
            for line in lines:
                item = json.loads(line)
                cls = classes[item["type"]]
                theirs = cls.FromString(bytes.fromhex(item["hex"]))
                ours = fill(cls())
                if theirs != ours:
                    print(f"MISMATCH {item['type']}:\n{theirs}\n!=\n{ours}", file=sys.stderr)
                    sys.exit(1)
                checked += 1
        print(json.dumps({"checked": checked, "types": len(classes)}))


if __name__ == "__main__":
    main()
