"""What one library's six-turn conversation (tests/library_conversation.py) must give in a
real `cachediag serve`, whether the library ran live or was recorded and replayed: exactly
six rows with the provider's model and token counts, TTFT where the library records it, the
session id where it sends one, one prefix hash over turns 1-5, and turn 6 explained
``dynamic_value`` in the system part, to the token."""

from __future__ import annotations

import itertools
import json

from tests.library_conversation import SESSION, STREAMED
from tests.servers import Server

# What each library records beyond model and token counts: "ttft" on streamed turns, the
# "session" id, "cache" reads and writes (else absent), the three "tools" (else none: their
# definitions are not on the span). Found by running them.
RECORDS = {
    "logfire-anthropic": {"cache", "tools"},
    "logfire-openai": {"cache", "tools"},
    "openinference-anthropic": {"ttft", "session", "cache", "tools"},
    "openinference-openai": {"ttft", "session", "cache", "tools"},
    "openlit-anthropic": {"ttft", "cache"},
    "openlit-openai": {"ttft", "cache"},
    "openllmetry-anthropic": {"ttft", "session", "cache", "tools"},
    "openllmetry-openai": {"ttft", "session", "cache", "tools"},
    "otel-openai-v2": set(),
    "otel-openai-v2-events": set(),
}
# Where a library itself reports other counts than the provider sent, on streamed turns:
# OpenLIT's anthropic streams carry no cache counts (its input count is the uncached part);
# OpenLLMetry's anthropic streams count one output token more (message_start's and
# message_delta's added).
STREAM_QUIRKS = {"openlit-anthropic": "no cache", "openllmetry-anthropic": "output + 1"}


def groups(sdks: dict[str, str]) -> list[list[str]]:
    """Libraries (name: SDK) by server: one of each SDK in each, of two families (the
    explainer keys its lookups by model and session: such conversations never meet; two of
    one SDK, or one family's two sessions "conv-1", would)."""
    by_sdk: dict[str, list[str]] = {}
    for name, sdk in sorted(sdks.items()):
        by_sdk.setdefault(sdk, []).append(name)
    openai, anthropic = by_sdk["openai"], by_sdk["anthropic"]
    # rotated: one family's two conversations (one session id) never share a server
    pairs = itertools.zip_longest(openai, anthropic[1:] + anthropic[:1])
    return [[n for n in pair if n] for pair in pairs]


def collect(server: Server, names: list[str]) -> dict[str, dict]:
    """Per library (its service name): its rows in time order with their explanations, the
    diff of its turn 6 against its predecessor, the server's stats."""
    stats = server.api("stats?wait=1")
    rows = server.api("requests?limit=100")["data"]
    explained = {e["id"]: e for e in server.api("explanations?limit=100")["data"]}
    out = {}
    for name in names:
        mine = sorted((r for r in rows if r["service"] == name), key=lambda r: r["ts"])
        sixth = f"requests/{mine[5]['id']}/diff" if len(mine) == 6 else None
        out[name] = {
            "rows": [server.api(f"requests/{r['id']}") for r in mine],
            "explained": [explained.get(r["id"]) for r in mine],
            "diff": server.api(sixth) if sixth else None,
            "stats": stats,
            "libraries": len(names),
        }
    return out


def _provider(sdk: str, turn: dict) -> dict:
    """What the fake provider answered on a planned turn, as row columns."""
    usage = turn["usage"]
    if sdk == "openai":
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        prompt, output = usage["prompt_tokens"], usage["completion_tokens"]
        return {"prompt_tokens": prompt, "cached_tokens": cached,
                "cache_write_tokens": None, "output_tokens": output}  # fmt: skip
    read, write = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
    return {"prompt_tokens": usage["input_tokens"] + read + write, "cached_tokens": read,
            "cache_write_tokens": write, "output_tokens": usage["output_tokens"]}  # fmt: skip


def _wanted(name: str, sdk: str, turns: list[dict], turn: int, records: set[str]) -> dict:
    want = _provider(sdk, turns[turn - 1])
    quirk = STREAM_QUIRKS.get(name) if turn in STREAMED else None
    if quirk == "no cache":
        uncached = turns[turn - 1]["usage"]["input_tokens"]
        want = {**want, "cached_tokens": 0, "cache_write_tokens": 0, "prompt_tokens": uncached}
    if quirk == "output + 1":
        want["output_tokens"] += 1
    if "cache" not in records:
        want = {**want, "cached_tokens": None, "cache_write_tokens": None}
    return want


def check_rows(name: str, sdk: str, turns: list[dict], got: dict, records: set[str]) -> None:
    """Six rows, each with what the provider answered (as far as the library records)."""
    rows = got["rows"]
    assert len(rows) == 6, [r["name"] for r in rows]
    for turn, row in enumerate(rows, start=1):
        want = _wanted(name, sdk, turns, turn, records)
        found = {k: row[k] for k in want}
        if want["cache_write_tokens"] is None:  # OpenAI reports no writes: absent or 0
            found["cache_write_tokens"] = found["cache_write_tokens"] or None
        assert found == want, (turn, found, want)
        model = turns[turn - 1]["body"]["model"]
        assert row["request_model"] == row["response_model"] == model
        assert row["tools_count"] == (3 if "tools" in records else 0)
        if turn in STREAMED and "ttft" in records:
            assert row["ttft_ms"] is not None and row["ttft_ms"] >= 0, turn
        if "session" in records:
            assert row["conversation_id"] == SESSION


def check_sixth(got: dict, records: set[str]) -> None:
    """One prefix hash over turns 1-5; turn 6's timestamp found in the system part."""
    rows, sixth = got["rows"], got["explained"][5]
    assert rows[0]["prefix_hash"] and len({r["prefix_hash"] for r in rows[:5]}) == 1
    assert rows[5]["prefix_hash"] != rows[0]["prefix_hash"]
    assert sixth["cause"] == "dynamic_value", sixth
    assert sixth["segment"] in ("messages[0].content", "system", "system[0]")
    assert sixth["predecessor_id"] in {r["id"] for r in rows[:5]}
    if "session" in records:  # compared with its own turn 5
        assert sixth["predecessor_id"] == rows[4]["id"]
        assert "17:40:00Z" in json.dumps(got["diff"]["comparison"])
    # every library here captured the content: to the token, whichever turn it came from
    assert sixth["first_diff_token"] is not None, sixth


def check_stats(got: dict) -> None:
    """Six rows per library the server was sent, all explained, none waiting."""
    stats = got["stats"]
    assert stats["committed_rows"] == 6 * got["libraries"], stats
    assert stats["explained_rows"] >= stats["committed_rows"]
    assert stats["rejected"] == stats["pending_rows"] == 0
