"""Fuzz: generated hostile OTLP exports against a real server; every one must get a status.

Starts `cachediag serve` on a free loopback port and sends ``--count`` exports
(default 100,000) over keep-alive connections: random byte mutations and
truncations of valid protobuf and JSON trace/log exports, spliced random bytes,
values at and past every range the store has (int64, uint64, int32, token
counts, times, 1e400, 5,000-digit numbers, lone surrogates), AnyValues and JSON
nested from a few levels to 60,000, corrupt gzip, and plain random bytes. The
seed is printed; the same seed sends the same exports.

Counts answered requests by status, unanswered ones (the connection closed
without a status) and server crashes (the process exited), and, as the baseline
measured in the same run, the same exports decoded in this process by
``collector.ingest.prepare``: how many raised anything but DecodeError/TooLarge.
Zero unanswered, zero crashes and zero escapes is the pass mark.

    python benchmarks/fuzz_otlp.py [--count N] [--seed S] [--workers W] [--time-limit S]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector import otlp  # noqa: E402
from collector.ingest import prepare  # noqa: E402
from tests.otlp_build import deep_any, logs, to_json, traces, with_raw_attribute  # noqa: E402
from tests.servers import Server  # noqa: E402

PB, JS = otlp.PROTOBUF, otlp.JSON
LIMIT = 20 * 1024 * 1024  # the server's default body limit
LLM = {
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 2000,
    "gen_ai.usage.cache_read.input_tokens": 1024,
    "cachediag.route": "/chat",
    "cachediag.tools_count": 3,
    "cachediag.block_size": 64,
    "cachediag.block_hashes": [11, -22, 33],
    "cachediag.segments": '[["tools[0]","tool",0,40,"h"]]',
    "cachediag.usage": '{"prompt_tokens": 2000}',
    "nested": {"a": [1, "two", 3.0, True]},
}
INT_FIELDS = [
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "cachediag.tools_count",
    "cachediag.block_size",
    "cachediag.total_tokens",
]
BOUNDARY_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**31 + 1, 2**32, 2**63 - 1, -(2**63), 2**40]
BOUNDARY_TIMES = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, 10**18]
JSON_LITERALS = [
    "1e400",
    "-1e400",
    '"1e400"',
    '"9223372036854775808"',
    "-9223372036854775809",
    "18446744073709551616",
    '"' + "9" * 5000 + '"',
    "9" * 5000,
    '"\\ud800"',
    '"x\\udfff"',
    "null",
    "true",
    "[]",
    "{}",
    "[[[[[[1]]]]]]",
    '{"intValue": 1e400}',
    '{"stringValue": "\\ud800"}',
    '{"arrayValue": {"values": 5}}',
    "1.5",
    '""',
]


def _bases(rng: random.Random) -> list[tuple[str, str, bytes]]:
    """Valid exports: (signal, content type, body)."""
    out = []
    for i in range(16):
        spans = [{"attributes": dict(LLM, **{"cachediag.route": f"/r{i}"})}] * rng.randint(1, 4)
        message = traces(spans, seed=rng.randrange(2**32))
        out.append(("traces", PB, message.SerializeToString()))
        out.append(("traces", JS, json.dumps(to_json(message)).encode()))
        records = logs([{"attributes": LLM, "body": {"usage": {"prompt_tokens": 7}}}] * 2)
        out.append(("logs", PB, records.SerializeToString()))
        out.append(("logs", JS, json.dumps(to_json(records)).encode()))
    return out


def _hostile_pb(rng: random.Random) -> tuple[str, str, bytes]:
    """A protobuf export with an int field or time at or past a boundary."""
    attrs = dict(LLM, **{rng.choice(INT_FIELDS): rng.choice(BOUNDARY_INTS)})
    if rng.random() < 0.3:
        attrs[rng.choice(INT_FIELDS)] = rng.choice([float("inf"), float("nan"), -0.0, 1e300])
    start = rng.choice(BOUNDARY_TIMES)
    spec = {"attributes": attrs, "start": start, "end": rng.choice(BOUNDARY_TIMES)}
    spans = [{"attributes": LLM}, spec] if rng.random() < 0.5 else [spec]
    return "traces", PB, traces(spans, seed=rng.randrange(2**32)).SerializeToString()


def _hostile_json(rng: random.Random, bases: list) -> tuple[str, str, bytes]:
    """A JSON export with one node replaced by a hostile literal."""
    sig, _, body = rng.choice([b for b in bases if b[1] == JS])
    doc = json.loads(body)
    node, marker = doc, "\x00HOSTILE\x00"
    for _ in range(rng.randint(1, 12)):
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        children = [(k, v) for k, v in children if isinstance(v, dict | list) or rng.random() < 0.3]
        if not children:
            break
        key, child = rng.choice(children)
        if not isinstance(child, dict | list) or rng.random() < 0.25:
            node[key] = marker
            break
        node = child
    text = json.dumps(doc).replace(json.dumps(marker), rng.choice(JSON_LITERALS))
    return sig, JS, text.encode()


def _deep(rng: random.Random) -> tuple[str, str, bytes]:
    depth = rng.choice(
        [otlp.MAX_DEPTH, otlp.MAX_DEPTH + 1, rng.randint(1, 100), int(10 ** rng.uniform(2, 4.8))]
    )
    kind = rng.choice(["array", "kvlist"])
    if rng.random() < 0.5:
        sig = rng.choice(["traces", "logs"])
        return sig, PB, with_raw_attribute(sig, "x", deep_any(depth, kind), rng.random() < 0.5)
    value = ('{"arrayValue":{"values":[' * depth) + "1" + ("]}}" * depth)
    if rng.random() < 0.3:
        value = "[" * depth + "]" * depth
    body = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"' + b"ab" * 16
    body += b'","spanId":"' + b"cd" * 8 + b'","attributes":[{"key":"x","value":'
    return "traces", JS, body + value.encode() + b"}]}]}]}]}"


def _mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        how = rng.random()
        if not data:
            break
        at = rng.randrange(len(data))
        if how < 0.5:
            data[at] = rng.randrange(256)
        elif how < 0.7:
            del data[at:]
        elif how < 0.85:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        else:
            span = data[at : at + rng.randint(1, 64)]
            data[at:at] = span * rng.randint(1, 8)
    return bytes(data)


def generate(rng: random.Random, bases: list) -> tuple[str, str, dict[str, str], bytes]:
    """One export: (path, content type, extra headers, body)."""
    roll = rng.random()
    if roll < 0.40:
        sig, ctype, body = rng.choice(bases)
        body = _mutate(rng, body)
    elif roll < 0.55:
        sig, ctype, body = _hostile_pb(rng)
    elif roll < 0.70:
        sig, ctype, body = _hostile_json(rng, bases)
    elif roll < 0.74:
        sig, ctype, body = _deep(rng)
    elif roll < 0.84:
        sig, ctype, body = rng.choice(["traces", "logs"]), rng.choice([PB, JS]), b""
        body = rng.randbytes(rng.randint(0, 2000))
    else:
        sig, ctype, body = rng.choice(bases)
    headers = {}
    if rng.random() < 0.1:
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body)
        if rng.random() < 0.5:
            body = _mutate(rng, body)
    if rng.random() < 0.03:
        ctype = PB if ctype == JS else JS
    return f"/v1/{sig}", ctype, headers, body


class Tally:
    """Counts shared by the sending threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.unanswered: Counter[str] = Counter()
        self.escapes: Counter[str] = Counter()
        self.sent = 0


def _in_process(tally: Tally, path: str, ctype: str, headers: dict, body: bytes) -> None:
    """The baseline: the same export through the decode/map path in this process."""
    try:
        prepare(path.rsplit("/", 1)[1], ctype, headers.get("Content-Encoding"), body, LIMIT)
    except (otlp.DecodeError, otlp.TooLarge):
        pass
    except Exception as exc:  # noqa: BLE001 - counting what escapes is the point
        with tally.lock:
            tally.escapes[type(exc).__name__] += 1


def _client(server: Server, tally: Tally, seed: int, count: int, deadline: float) -> None:
    rng = random.Random(seed)
    bases = _bases(random.Random(seed))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    for _ in range(count):
        if time.monotonic() > deadline or server.proc.poll() is not None:
            break
        path, ctype, headers, body = generate(rng, bases)
        _in_process(tally, path, ctype, headers, body)
        try:
            conn.request("POST", path, body, {"Content-Type": ctype, **headers})
            response = conn.getresponse()
            response.read()
            status = response.status
            if response.will_close:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            with tally.lock:
                tally.unanswered[type(exc).__name__] += 1
                tally.sent += 1
            continue
        with tally.lock:
            tally.statuses[status] += 1
            tally.sent += 1
            if tally.sent % 10_000 == 0:
                print(f"... {tally.sent:,} sent", file=sys.stderr, flush=True)
    conn.close()


def _still_accepts(server: Server) -> bool:
    """After the fuzz, a valid export is acknowledged and its row can be read back."""
    message = traces([{"attributes": dict(LLM, **{"cachediag.route": "/after"})}], seed=99)
    span = message.resource_spans[0].scope_spans[0].spans[0]
    status, _, _ = server.request(
        "POST", "/v1/traces", message.SerializeToString(), {"Content-Type": PB}
    )
    rid = span.trace_id.hex() + span.span_id.hex()
    return status == 200 and server.request("GET", f"/api/v1/requests/{rid}")[0] == 200


class Logs:
    """Drains the server's stderr while it runs (an undrained pipe would stall its logging)."""

    def __init__(self, server: Server) -> None:
        self.server, self.lines = server, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.server.proc.stderr:
            self.lines.append(line)

    def stop(self) -> str:
        """SIGTERM the server, wait for it, return all it logged."""
        proc = self.server.proc
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.thread.join(timeout=10)
        self.server.proc = None
        return "".join(self.lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="exports to send")
    parser.add_argument("--seed", type=int, default=13, help="seed of the generator")
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=None, help="server decode processes")
    parser.add_argument("--time-limit", type=float, default=1200, help="seconds, at most")
    args = parser.parse_args()
    tally, started = Tally(), time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        extra = [] if args.workers is None else ["--workers", str(args.workers)]
        server = Server(Path(tmp) / "fuzz.duckdb", "--no-grpc", *extra).start()
        server_logs = Logs(server)
        deadline = started + args.time_limit
        share = [
            args.count // args.clients + (i < args.count % args.clients)
            for i in range(args.clients)
        ]
        threads = [
            threading.Thread(
                target=_client, args=(server, tally, args.seed * 1000 + i, share[i], deadline)
            )
            for i in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        crashed = server.proc.poll() is not None
        accepts = not crashed and _still_accepts(server)
        err = server_logs.stop()
    elapsed = time.monotonic() - started
    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(tally.statuses.items()))
    print(f"seed {args.seed}; {tally.sent:,} exports sent in {elapsed:.0f} s")
    print(f"answered: {sum(tally.statuses.values()):,} ({statuses})")
    print(f"unanswered: {sum(tally.unanswered.values())} {dict(tally.unanswered) or ''}")
    print(f"server crashes: {int(crashed)}; valid export accepted afterwards: {accepts}")
    print(f"tracebacks in the server log: {err.count('Traceback')}")
    escapes = sum(tally.escapes.values())
    print(f"baseline, same exports through prepare() in-process: {escapes} escaped "
          f"DecodeError/TooLarge {dict(tally.escapes) or ''}")  # fmt: skip
    if crashed or tally.unanswered or escapes or not accepts:
        sys.exit(1)


if __name__ == "__main__":
    main()
