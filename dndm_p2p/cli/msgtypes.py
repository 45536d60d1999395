"""Message types named on a command line, and messages as JSON.

A command line names a protobuf message class in one of two ways:

* a **Python path** to a generated class: ``package.module:MessageName`` or
  ``package.module.MessageName`` (nested messages too: ``pkg.mod:Outer.Inner``).  The module is
  imported (the current directory is importable, as with ``python -m``);
* a **protobuf full name** (``robot.v1.Temperature``) looked up in a compiled descriptor set,
  the file ``protoc --descriptor_set_out=FILE --include_imports`` writes.  The classes are built
  at run time in a fresh descriptor pool, so no generated code is needed.

Without a descriptor set, a name that is not a Python path is also looked up among the
protobuf types this process already knows (the demo types ``dndm.demo.v1.Temperature`` and
``dndm.demo.v1.Twist`` are always known).

Messages cross the command line as JSON objects in the canonical protobuf JSON mapping
(:mod:`google.protobuf.json_format`), with the field names of the ``.proto`` file.  Every failure
is a :class:`~dndm_p2p.errors.ConfigError` that says what was wrong.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from dndm_p2p.errors import ConfigError
from dndm_p2p.proto import demo_pb2

__all__ = [
    "KNOWN_MODULES",
    "LATENCY_FIELDS",
    "generate_message",
    "latency_us",
    "load_descriptor_set",
    "message_from_dict",
    "message_from_json",
    "message_to_dict",
    "message_to_json",
    "resolve_message_type",
    "type_from_descriptor_set",
    "type_from_python_path",
]

M = TypeVar("M", bound=Message)

#: Fields that hold the time a message was sent, with their unit in nanoseconds per tick.
LATENCY_FIELDS: dict[str, int] = {"sent_ns": 1, "sent_us": 1_000, "timestamp_us": 1_000}

#: Largest descriptor set file read, so a wrong path cannot exhaust memory.
MAX_DESCRIPTOR_SET_SIZE = 64 * 1024 * 1024

_NUMERIC_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_DOUBLE,
        FieldDescriptor.TYPE_FLOAT,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
    }
)
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})

#: Modules imported for their registration in the default pool: their types are always known.
KNOWN_MODULES = (demo_pb2,)


# -- resolving a type ---------------------------------------------------------------------------


def resolve_message_type(
    name: str, descriptor_set: str | os.PathLike[str] | None = None
) -> type[Message]:
    """The message class that ``name`` designates (see the module docstring).

    With ``descriptor_set``, ``name`` is a protobuf full name looked up in that file.  Without
    it, ``name`` is a Python path (``pkg.mod:Msg`` or ``pkg.mod.Msg``), or else the full name of
    a protobuf type this process already imported.

    :raises ConfigError: the name is empty or malformed, the module cannot be imported, the
        attribute is missing or is not a message class, the descriptor set cannot be read or
        does not define the type.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("a message type name is empty; give e.g. 'pkg.module:Message'")
    name = name.strip()
    if descriptor_set is not None:
        return type_from_descriptor_set(name, descriptor_set)
    if ":" in name:
        return type_from_python_path(name)
    try:
        return type_from_python_path(name)
    except ConfigError as import_error:
        known = _from_default_pool(name.lstrip("."))
        if known is not None:
            return known
        raise ConfigError(
            f"{import_error} (nor is {name!r} the full name of a protobuf type this process "
            "knows; for a type defined only in a .proto file, compile it with `protoc "
            "--descriptor_set_out=FILE --include_imports` and pass --descriptor-set FILE)"
        ) from import_error.__cause__


def type_from_python_path(path: str) -> type[Message]:
    """Import the generated class at ``package.module:Message`` or ``package.module.Message``.

    :raises ConfigError: malformed path, module not importable, attribute missing, or not a
        protobuf message class.
    """
    _make_cwd_importable()
    text = path.strip()
    if ":" in text:
        module_name, _, attr = text.partition(":")
        if not module_name or not attr or ":" in attr:
            raise ConfigError(f"type {path!r} is not of the form 'package.module:Message'")
        _check_dotted(module_name, path)
        _check_dotted(attr, path)
        module = _import(module_name, path)
        return _message_attr(module, module_name, attr, path)
    _check_dotted(text, path)
    parts = text.split(".")
    if len(parts) < 2:
        raise ConfigError(
            f"type {path!r} names no module: write 'package.module:Message' or "
            "'package.module.Message'"
        )
    # The longest importable prefix is the module; the rest is the attribute path.
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        module = _import(module_name, path, missing_ok=True)
        if module is None:
            continue  # that module does not exist: try a shorter prefix
        return _message_attr(module, module_name, ".".join(parts[cut:]), path)
    raise ConfigError(f"type {path!r}: no module {parts[0]!r} can be imported")


def load_descriptor_set(path: str | os.PathLike[str]) -> descriptor_pool.DescriptorPool:
    """A fresh descriptor pool holding every file of the descriptor set at ``path``.

    :raises ConfigError: the file cannot be read, is not a ``FileDescriptorSet``, is empty, or
        its files do not build (a missing import: compile with ``--include_imports``).
    """
    return _load_descriptor_set(path)[0]


def _load_descriptor_set(
    path: str | os.PathLike[str],
) -> tuple[descriptor_pool.DescriptorPool, descriptor_pb2.FileDescriptorSet]:
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_DESCRIPTOR_SET_SIZE + 1)
    except FileNotFoundError as exc:
        raise ConfigError(f"descriptor set {file} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read descriptor set {file}: {exc.strerror or exc}") from exc
    if len(data) > MAX_DESCRIPTOR_SET_SIZE:
        raise ConfigError(
            f"descriptor set {file} is larger than {MAX_DESCRIPTOR_SET_SIZE} bytes; "
            "it is not a descriptor set"
        )
    try:
        file_set = descriptor_pb2.FileDescriptorSet.FromString(data)
    except DecodeError as exc:
        raise ConfigError(
            f"{file} is not a protobuf descriptor set (write one with `protoc "
            "--descriptor_set_out=FILE --include_imports ...`)"
        ) from exc
    if not file_set.file:
        raise ConfigError(f"descriptor set {file} is empty or not a descriptor set")
    pool = descriptor_pool.DescriptorPool()
    for proto in _dependencies_first(file_set.file):
        try:
            pool.Add(proto)
        except Exception as exc:  # upb raises TypeError, the Python implementation others
            raise ConfigError(
                f"descriptor set {file}: cannot load {proto.name!r}: {exc} (if an import is "
                "missing, compile with `protoc --include_imports`)"
            ) from exc
    return pool, file_set


def type_from_descriptor_set(name: str, path: str | os.PathLike[str]) -> type[Message]:
    """The class of message ``name`` (a protobuf full name) built from a descriptor set file.

    :raises ConfigError: the descriptor set cannot be loaded (see :func:`load_descriptor_set`)
        or does not define ``name`` (the message lists the types it does define).
    """
    full_name = name.strip().lstrip(".")
    if ":" in full_name:
        raise ConfigError(
            f"type {name!r} is a Python path; with --descriptor-set, give the protobuf full "
            "name (package.Message)"
        )
    pool, file_set = _load_descriptor_set(path)
    try:
        descriptor = pool.FindMessageTypeByName(full_name)
    except KeyError:
        names = sorted(_message_names(file_set))
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise ConfigError(
            f"descriptor set {path} defines no message {full_name!r}; it defines: "
            f"{shown or 'no messages'}"
        ) from None
    return message_factory.GetMessageClass(descriptor)


# -- JSON ---------------------------------------------------------------------------------------


def message_to_dict(msg: Message) -> dict[str, Any]:
    """``msg`` as a JSON-compatible dict (canonical protobuf JSON, ``.proto`` field names,
    fields at their default value included; 64-bit integers are strings, bytes base64)."""
    result: dict[str, Any] = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result


def message_to_json(msg: Message) -> str:
    """``msg`` as one line of JSON (see :func:`message_to_dict`)."""
    return json.dumps(message_to_dict(msg), separators=(",", ":"), ensure_ascii=False)


def message_from_dict(data: object, msg_type: type[M]) -> M:
    """Build a ``msg_type`` message from a JSON-compatible dict.

    :raises ConfigError: ``data`` is not an object, names an unknown field, or holds a value of
        the wrong kind; the message names the field.
    """
    type_name = msg_type.DESCRIPTOR.full_name
    if not isinstance(data, dict):
        raise ConfigError(f"a {type_name} message must be a JSON object, not {_json_kind(data)}")
    msg = msg_type()
    try:
        json_format.ParseDict(data, msg)
    except json_format.ParseError as exc:
        raise ConfigError(f"invalid {type_name} message: {_field_error(exc)}") from exc
    except (TypeError, ValueError, AttributeError) as exc:  # defensive: malformed values
        raise ConfigError(f"invalid {type_name} message: {exc}") from exc
    return msg


def message_from_json(text: str | bytes, msg_type: type[M]) -> M:
    """Build a ``msg_type`` message from JSON text (one object).

    :raises ConfigError: the text is not JSON, or see :func:`message_from_dict`.
    """
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid JSON: {exc}") from exc
    return message_from_dict(data, msg_type)


# -- generated messages and latency -------------------------------------------------------------


def generate_message(msg_type: type[M], seq: int, *, now_ns: int | None = None) -> M:
    """A made-up ``msg_type`` message, number ``seq`` (from 1) of a generated stream.

    A numeric field named ``seq`` gets ``seq``; the time fields of :data:`LATENCY_FIELDS` get the
    current wall-clock time (so subscribers can compute latency); everything else keeps its
    default value.
    """
    msg = msg_type()
    fields = msg_type.DESCRIPTOR.fields_by_name
    seq_field = fields.get("seq")
    if seq_field is not None and _is_scalar_number(seq_field):
        value = float(seq) if seq_field.type in _FLOAT_TYPES else seq
        with contextlib.suppress(ValueError):  # beyond a 32-bit field's range: left at 0
            setattr(msg, seq_field.name, value)
    stamp = time.time_ns() if now_ns is None else now_ns
    for name, unit in LATENCY_FIELDS.items():
        field = fields.get(name)
        if field is not None and _is_scalar_number(field) and field.type not in _FLOAT_TYPES:
            setattr(msg, name, stamp // unit)
    return msg


def latency_us(msg: Message, *, now_ns: int | None = None) -> int | None:
    """Microseconds since the time in ``msg``'s ``sent_ns``/``sent_us``/``timestamp_us`` field.

    ``None`` when the message has no such field, or it is zero (not set).  The clocks of the
    sender and this machine must agree for the figure to mean anything.
    """
    fields = msg.DESCRIPTOR.fields_by_name
    for name, unit in LATENCY_FIELDS.items():
        field = fields.get(name)
        if field is None or not _is_scalar_number(field):
            continue
        value = getattr(msg, name)
        if not value:
            return None
        now = time.time_ns() if now_ns is None else now_ns
        return (now - int(value) * unit) // 1000
    return None


# -- internals ----------------------------------------------------------------------------------


def _make_cwd_importable() -> None:
    """Let ``pkg.mod:Msg`` name a module under the current directory, as ``python -m`` does
    (console scripts do not put the current directory on ``sys.path``)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _check_dotted(text: str, path: str) -> None:
    if not all(part.isidentifier() for part in text.split(".")):
        raise ConfigError(f"type {path!r} is not a dotted Python name")


def _is_prefix(missing: str, module_name: str) -> bool:
    return module_name == missing or module_name.startswith(missing + ".")


def _import(module_name: str, path: str, *, missing_ok: bool = False) -> Any:
    """Import ``module_name`` for type ``path``; ``None`` if it does not exist and
    ``missing_ok``; any other failure is a ConfigError naming the module and the type."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _is_prefix(exc.name, module_name):
            if missing_ok:
                return None
            raise ConfigError(f"type {path!r}: no module named {module_name!r}") from exc
        raise ConfigError(
            f"importing module {module_name!r} for type {path!r} failed: {exc}"
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"importing module {module_name!r} for type {path!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _message_attr(module: Any, module_name: str, attr: str, path: str) -> type[Message]:
    found: Any = module
    where = module_name
    for part in attr.split("."):
        if not hasattr(found, part):
            raise ConfigError(f"type {path!r}: {where!r} has no attribute {part!r}")
        found = getattr(found, part)
        where = f"{where}.{part}"
    if not (
        isinstance(found, type)
        and issubclass(found, Message)
        and isinstance(getattr(found, "DESCRIPTOR", None), Descriptor)
    ):
        raise ConfigError(f"type {path!r} is not a protobuf message class (it is {found!r})")
    return found


def _from_default_pool(full_name: str) -> type[Message] | None:
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        return None
    return message_factory.GetMessageClass(descriptor)


def _dependencies_first(
    files: Iterable[descriptor_pb2.FileDescriptorProto],
) -> list[descriptor_pb2.FileDescriptorProto]:
    """The files ordered so that each comes after the files it imports (when present)."""
    by_name = {proto.name: proto for proto in files}
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in by_name:
            return
        seen.add(name)
        for dependency in by_name[name].dependency:
            visit(dependency)
        ordered.append(by_name[name])

    for name in by_name:
        visit(name)
    return ordered


def _message_names(file_set: descriptor_pb2.FileDescriptorSet) -> list[str]:
    """The full names of the top-level and nested messages of a descriptor set."""
    names: list[str] = []
    for proto in file_set.file:
        prefix = f"{proto.package}." if proto.package else ""
        stack = [(prefix, message) for message in proto.message_type]
        while stack:
            outer, message = stack.pop()
            full = f"{outer}{message.name}"
            names.append(full)
            stack.extend((f"{full}.", nested) for nested in message.nested_type)
    return names


def _is_scalar_number(field: Any) -> bool:  # a FieldDescriptor (upb or Python)
    return field.type in _NUMERIC_TYPES and not _is_repeated(field)


def _is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def _field_error(exc: json_format.ParseError) -> str:
    text = str(exc).strip()
    return text.replace("\n", " ")


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
