"""One row per LLM call: which records are the same call, and the row they make together.

Pure: the store (``collector.store.linking``) reads the stored rows and waiting parts of
the traces a commit touches, and writes back what ``resolve`` returns. A *call* row comes
from a span that is an LLM call (or a log record that is a whole call by itself); a *part*
is what only enriches a call (see ``collector.mapping``).

Which records are one call (the same whatever order they arrive in, in one export or many):

- **same id** (trace id + span id): a span and the log records of that span (openai-v2's
  events, OpenLIT's operation details), a re-sent span;
- **nested**: two call rows of one trace, one the parent of the other, that agree on every
  model both name (request with request, response with response) and share at least one:
  the anthropic SDK's own span inside an instrumentation's span of the same call;
- **siblings**: two call spans of one trace under the same parent, with the same provider
  response id (``gen_ai.response.id``), agreeing models, overlapping in time: the SDK's own
  span beside an instrumentation's that was not made current (OpenLLMetry anthropic);
- **Logfire's stream tail** (a part): the latest call of the same trace, under the same
  parent span, with the same request model, started before it: Logfire ends the call's
  span when the stream is handed back and records the finished stream beside it.

The row of a call: the outermost span (of siblings, the earliest) gives its identity (id,
span ids, name, start, duration, signal); every other column takes the first value present
in the order spans (outer before inner, earlier before later), logged request records, log
records, parts; the unclaimed attributes are the union (same order wins); ``is_error`` when
any record says so. Parts that find no call are no row: they wait for it
(``collector.store.linking`` keeps them a while). A call whose prompt came only as message
events (openai-v2's event mode) is fingerprinted here, from all its events
(``collector.captured.fingerprint_events``), and its rendering goes with the row (under
``CONTENT``, for the store to keep beside it, as captured content).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from collector import attributes as A
from collector import captured, mapping

IDENTITY = ("id", "trace_id", "span_id", "parent_span_id", "name", "start_ns", "duration_ms")
_RANK = {"span": 0, "record": 1, "log": 2}
_TAIL_TEMPLATE = "streaming response from"
_RESPONSE_ID = "gen_ai.response.id"
CONTENT = "content"  # a merged row's key for the rendering rebuilt from its events, if any


def _models_agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    shared = False
    for column in ("request_model", "response_model"):
        if a[column] is not None and b[column] is not None:
            if a[column] != b[column]:
                return False
            shared = True
    return shared


class _Groups:
    """Union-find over row indexes."""

    def __init__(self, n: int) -> None:
        self.up = list(range(n))

    def find(self, i: int) -> int:
        while self.up[i] != i:
            self.up[i] = self.up[self.up[i]]
            i = self.up[i]
        return i

    def join(self, a: int, b: int) -> None:
        self.up[self.find(a)] = self.find(b)


def _is_tail(row: dict[str, Any]) -> bool:
    attrs = row.get("attributes")
    return bool(attrs) and _TAIL_TEMPLATE in attrs and _tail_template(attrs)


def _tail_template(attrs: str) -> bool:
    try:
        template = json.loads(attrs).get("logfire.msg_template")
    except (ValueError, AttributeError):
        return False
    return isinstance(template, str) and template.startswith(_TAIL_TEMPLATE)


def _link(rows: list[dict[str, Any]], part: list[bool]) -> _Groups:
    groups = _Groups(len(rows))
    by_id: dict[str, int] = {}
    for i, row in enumerate(rows):
        if row["id"] in by_id:
            groups.join(i, by_id[row["id"]])
        else:
            by_id[row["id"]] = i
    calls = {row["id"]: i for i, row in enumerate(rows) if not part[i]}
    for i, row in enumerate(rows):
        if part[i] or not (row["trace_id"] and row["parent_span_id"]):
            continue
        parent = calls.get(row["trace_id"] + row["parent_span_id"])
        if parent is not None and _models_agree(row, rows[parent]):
            groups.join(i, parent)
    for i, j in _siblings(rows, part):
        groups.join(i, j)
    for i, row in enumerate(rows):
        if part[i] and row["id"] not in calls and _is_tail(row):
            target = _tail_target(rows, part, row)
            if target is not None:
                groups.join(i, target)
    return groups


def _response_id(row: dict[str, Any]) -> str | None:
    attrs = row.get("attributes")
    if not attrs or _RESPONSE_ID not in attrs:
        return None
    try:
        found = json.loads(attrs).get(_RESPONSE_ID)
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) and found else None


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    end_a = a["start_ns"] + (a["duration_ms"] or 0) * 1e6
    end_b = b["start_ns"] + (b["duration_ms"] or 0) * 1e6
    return a["start_ns"] <= end_b and b["start_ns"] <= end_a


def _siblings(rows: list[dict[str, Any]], part: list[bool]) -> list[tuple[int, int]]:
    """Pairs of call spans of one trace under one parent that are the same call: the same
    provider response id, models that agree, overlapping in time (OpenLLMetry's anthropic
    span beside the SDK's own, which it does not make its child)."""
    seen: dict[tuple, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        if not part[i] and row["signal"] == "span" and row["trace_id"]:
            response = _response_id(row)
            if response is not None:
                seen[(row["trace_id"], row["parent_span_id"], response)].append(i)
    return [
        (i, j)
        for members in seen.values()
        for n, i in enumerate(members)
        for j in members[n + 1 :]
        if rows[i]["id"] != rows[j]["id"]
        and _models_agree(rows[i], rows[j])
        and _overlap(rows[i], rows[j])
    ]


def _tail_target(rows: list[dict[str, Any]], part: list[bool], tail: dict[str, Any]) -> int | None:
    best = None
    for i, row in enumerate(rows):
        if (
            not part[i]
            and row["trace_id"] == tail["trace_id"]
            and row["parent_span_id"] == tail["parent_span_id"]
            and row["request_model"] == tail["request_model"]
            and row["start_ns"] <= tail["start_ns"]
            and (best is None or row["start_ns"] > rows[best]["start_ns"])
        ):
            best = i
    return best


def _order(rows: list[dict[str, Any]], part: list[bool], members: list[int]) -> list[int]:
    """The members of one call, the record whose values win first."""
    ids = {rows[i]["id"] for i in members}
    parent_of = {
        rows[i]["id"]: rows[i]["trace_id"] + (rows[i]["parent_span_id"] or "")
        for i in members
        if rows[i]["trace_id"]
    }

    def depth(i: int) -> int:
        level, key, seen = 0, rows[i]["id"], set()
        while key in parent_of and parent_of[key] in ids and key not in seen:
            seen.add(key)
            key, level = parent_of[key], level + 1
        return level

    return sorted(
        members,
        key=lambda i: (
            part[i],
            _RANK.get(rows[i]["signal"], 3),
            depth(i),
            rows[i]["start_ns"],
            rows[i]["id"],
        ),
    )


def merge(ordered: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of one call from its records, the winning one first."""
    top = ordered[0]
    out = dict(top)
    for row in ordered[1:]:
        for column, value in row.items():
            if column not in IDENTITY and column != "signal" and out[column] is None:
                out[column] = value
    out["is_error"] = any(bool(row["is_error"]) for row in ordered)
    attributes: dict[str, Any] = {}
    for row in reversed(ordered):
        if row["attributes"]:
            try:
                attributes.update(json.loads(row["attributes"]))
            except ValueError:
                continue
    _rebuild_from_events(out, attributes)
    out["attributes"] = json.dumps(attributes, default=str) if attributes else None
    return out


_EVENT_KEY = A.MESSAGE_EVENT.name + "."


def _rebuild_from_events(out: dict[str, Any], attributes: dict[str, Any]) -> None:
    """A call whose prompt came as message events (openai-v2's event mode; each log record
    kept by ``mapping``) is fingerprinted from all of them once merged, and again when
    another arrives; a call fingerprinted from anything else keeps that fingerprint."""
    keys = sorted(k for k in attributes if k.startswith(_EVENT_KEY))
    rebuilt_from = attributes.get(A.REBUILT_FROM.name)
    if not keys or (out["prefix_hash"] is not None and rebuilt_from != captured.EVENTS):
        return
    try:
        events = [tuple(json.loads(attributes[k])) for k in keys]
    except (ValueError, TypeError):
        return
    model = out["request_model"] or out["response_model"]
    found = captured.fingerprint_events(events, out["provider"], model)
    if found is not None:
        attributes[A.REBUILT_FROM.name] = found.pop(A.REBUILT_FROM.name)
        out[CONTENT] = found.pop(A.CONTENT.name)
        out.update(mapping.fingerprint_columns(found))


def resolve(
    rows: list[dict[str, Any]], part: list[bool]
) -> tuple[list[tuple[dict[str, Any], list[str]]], list[int]]:
    """Rows of some traces (calls and parts, stored and incoming; ``part`` says which) ─►
    one row per call with the ids of the records it absorbed, and the indexes of the
    parts that found no call."""
    groups = _link(rows, part)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(rows)):
        members[groups.find(i)].append(i)
    calls, waiting = [], []
    for group in members.values():
        if all(part[i] for i in group):
            waiting.extend(group)
            continue
        ordered = _order(rows, part, group)
        merged = merge([rows[i] for i in ordered])
        calls.append((merged, sorted({rows[i]["id"] for i in group})))
    return calls, waiting
