"""Writes tandem/v1/__init__.py: explicit re-exports of every message, enum,
enum value and service stub that protoc generated, read from a descriptor
set (so nothing generated has to be imported). Run by generate.sh."""

from __future__ import annotations

import sys
from pathlib import PurePosixPath

from google.protobuf import descriptor_pb2

HEADER = '''\
"""Messages, enums and service stubs of the tandem.v1 API.

Generated from proto/tandem/v1 by clients/python/generate.sh; do not edit.
Every name is also available from its own module (``tandem.v1.cluster_pb2``,
``tandem.v1.cluster_pb2_grpc``, ...).
"""
'''


def module_of(proto_file: str, suffix: str) -> str:
    path = PurePosixPath(proto_file)
    return ".".join([*path.parent.parts, path.stem + suffix])


def main(descriptor_set: str, out: str) -> None:
    files = descriptor_pb2.FileDescriptorSet()
    with open(descriptor_set, "rb") as f:
        files.ParseFromString(f.read())
    imports: list[tuple[str, list[str]]] = []
    for file in sorted(files.file, key=lambda f: f.name):
        if not file.name.startswith("tandem/"):
            continue
        names = [m.name for m in file.message_type]
        for enum in file.enum_type:
            names.append(enum.name)
            names.extend(v.name for v in enum.value)
        imports.append((module_of(file.name, "_pb2"), names))
        stubs: list[str] = []
        for service in file.service:
            stubs += [
                f"{service.name}Stub",
                f"{service.name}Servicer",
                f"add_{service.name}Servicer_to_server",
            ]
        if stubs:
            imports.append((module_of(file.name, "_pb2_grpc"), stubs))
    lines = [HEADER]
    exported: list[str] = []
    for module, names in imports:
        lines.append(f"from {module} import (")
        lines.extend(f"    {name} as {name}," for name in names)
        lines.append(")")
        exported.extend(names)
    lines.append("")
    lines.append("__all__ = [")
    lines.extend(f'    "{name}",' for name in sorted(exported))
    lines.append("]")
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
