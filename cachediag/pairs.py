"""The request pairs ``cachediag diff`` compares, for one pair or many (CI use).

Three shapes of input: two request files (one pair); two JSONL files of
requests, compared line by line (blank lines skipped, the counts must match);
one folder holding a folder per pair, each with ``a.json`` and ``b.json``
(like ``sample_data/pairs``). Anything else is a one-line InputError.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from cachediag.options import InputError, parse_request

JSONL_SUFFIXES = (".jsonl", ".ndjson")


class Pair(NamedTuple):
    """One comparison to make: its name in the output, and A and B parsed."""

    name: str
    a: object  # analysis.prompt.Prompt
    b: object


def is_batch(file_a: str, file_b: str | None) -> bool:
    """Does this input name many pairs (JSONL files, or a folder of pairs)?"""
    return file_b is None or (file_a.endswith(JSONL_SUFFIXES) and file_b.endswith(JSONL_SUFFIXES))


def load(file_a: str, file_b: str | None, fmt: str | None) -> list[Pair]:
    """The pairs named by the ``diff`` arguments, parsed; InputError for bad input."""
    if file_b is None:
        return _folder(file_a, fmt)
    if os.path.isdir(file_a) or os.path.isdir(file_b):
        raise InputError(f"{file_a}: pass a folder of pairs alone, or two request files")
    if file_a.endswith(JSONL_SUFFIXES) != file_b.endswith(JSONL_SUFFIXES):
        raise InputError(
            f"{file_a}, {file_b}: compare two JSONL files of requests or two request files, "
            "not one of each"
        )
    if not file_a.endswith(JSONL_SUFFIXES):
        return [Pair(file_b, parse_request(file_a, fmt), parse_request(file_b, fmt))]
    side_a, side_b = _jsonl(file_a, fmt), _jsonl(file_b, fmt)
    if len(side_a) != len(side_b):
        raise InputError(
            f"{file_a} holds {len(side_a)} requests and {file_b} {len(side_b)}; "
            "they are compared line by line"
        )
    return [Pair(f"line {la}", pa, pb) for (la, pa), (_, pb) in zip(side_a, side_b, strict=True)]


def _jsonl(path: str, fmt: str | None) -> list[tuple[int, object]]:
    from analysis.prompt import PromptError, load_json, parse

    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; pass a JSONL file of requests") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start:,})") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append((number, parse(load_json(line), fmt)))
        except PromptError as exc:
            raise InputError(f"{path}:{number}: {exc}") from None
    if not out:
        raise InputError(f"{path}: no requests in it; expected one JSON request per line")
    return out


def _folder(path: str, fmt: str | None) -> list[Pair]:
    if not os.path.isdir(path):
        raise InputError(
            f"{path}: not a folder of pairs; pass two request files, two JSONL files, or "
            "a folder with a folder per pair (a.json and b.json)"
        )
    names = sorted(
        name
        for name in os.listdir(path)
        if os.path.isfile(os.path.join(path, name, "a.json"))
        and os.path.isfile(os.path.join(path, name, "b.json"))
    )
    if not names:
        raise InputError(f"{path}: no pair folders in it (each with a.json and b.json)")
    return [
        Pair(
            name,
            parse_request(os.path.join(path, name, "a.json"), fmt),
            parse_request(os.path.join(path, name, "b.json"), fmt),
        )
        for name in names
    ]
