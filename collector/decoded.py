"""The decoded form of an OTLP export, shared by the protobuf and JSON decoders:
plain records, the export's tally, and the errors decoding raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 30  # arrays/kvlists in one AnyValue: upb refuses 100 nested messages, 31 kvlists
_MESSAGE_CHARS = 300  # of an error message echoed back to the client


class DecodeError(ValueError):
    """The body is not a decodable OTLP export."""


class TooLarge(ValueError):
    """The body, or what it inflates to, passes the size limit."""


class BadValue(ValueError):
    """One span or log record holds a value of the wrong type or out of range."""


def too_deep() -> DecodeError:
    return DecodeError(f"an attribute value nests more than {MAX_DEPTH} arrays or lists")


def brief(text: object) -> str:
    """``text`` fit for an error message: bounded, and encodable (no lone surrogates)."""
    out = str(text)
    if len(out) > _MESSAGE_CHARS:
        out = out[:_MESSAGE_CHARS] + "..."
    return out.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(slots=True)
class Record:
    """One span or log record, as plain Python values. Build it with named fields;
    the compiled reader (``_wire``) passes the first thirteen in this order."""

    signal: str  # "span", "log" or "record" (a logged request)
    trace_id: str = ""  # hex, "" when absent
    span_id: str = ""
    parent_span_id: str = ""
    name: str = ""
    kind: int = 0
    start_ns: int = 0
    end_ns: int = 0
    status_code: int = 0
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, int]] = field(default_factory=list)  # (name, time_ns)
    body: Any = None  # a log record's body
    id: str = ""  # a stable id of its own (request records); else trace + span id


@dataclass
class Decoded:
    """The records of one export plus the ones rejected as malformed."""

    records: list[Record]
    rejected: int = 0
    error: str = ""
