"""Request pairs for the hard cases of issue 18, in the three formats."""

from __future__ import annotations

from tests.cases import FORMATS, base_spec, build

__all__ = ["FORMATS", "hard_pair", "HARD"]

_SIG_A = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
_SIG_B = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"


def _url(date: str, expires: str, sig: str) -> str:
    return (
        "https://acme-files.s3.us-east-1.amazonaws.com/invoices/1182.pdf"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F{date[:8]}%2Fus-east-1%2Fs3%2Faws4_request"
        f"&X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host"
        f"&X-Amz-Signature={sig}"
    )


def _crlf(spec: dict, eol: str) -> None:
    spec["turns"][2]["text"] = eol.join(
        ['{"status": "shipped",', ' "carrier": "UPS",', ' "eta": "in two days"}']
    )


def _describe(spec: dict, text: str) -> None:
    name, _, schema = spec["tools"][0]
    spec["tools"][0] = (name, text, schema)


def _late_url(spec: dict, url: str) -> None:
    spec["turns"].insert(3, {"role": "assistant", "text": "Here is your invoice: " + url})


# cause ─► (edit making A, edit making B)
HARD = {
    "crlf_tool_result": (
        "whitespace",
        lambda s: _crlf(s, "\r\n"),
        lambda s: _crlf(s, "\n"),
    ),
    "system_trailing_newline": (
        "whitespace",
        lambda s: None,
        lambda s: s.update(system=s["system"] + "\n"),
    ),
    "tool_description_counter": (
        "dynamic_value",
        lambda s: _describe(s, "Look up an order by id. Calls so far: 41."),
        lambda s: _describe(s, "Look up an order by id. Calls so far: 42."),
    ),
    "presigned_url": (
        "dynamic_value",
        lambda s: _late_url(s, _url("20261130T101500Z", "3600", _SIG_A)),
        lambda s: _late_url(s, _url("20261130T104500Z", "3600", _SIG_B)),
    ),
}


def hard_pair(name: str, fmt: str) -> tuple[dict, dict]:
    _, edit_a, edit_b = HARD[name]
    a, b = base_spec(), base_spec()
    edit_a(a)
    edit_b(b)
    return build(fmt, a), build(fmt, b)
