"""Explain stored requests, and show one request beside its predecessor.

``explain`` runs the explainer over the requests without an explanation (or all of
them) and returns the causes of the whole database; ``diff`` is the one comparison of
a request with its predecessor that the CLI (``explain --request``) and the API
(``/requests/{id}/diff``) both show: the token diff under the row's own provider rules
when both renderings were captured, and the two segment maps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import duckdb

from collector.store import queries
from collector.store.database import Store

SEGMENT_FIELDS = ("path", "kind", "start", "end", "hash")
WHERE_FIELDS = ("route", "replica", "request_model", "provider", "block_size")
SUMMARY_FIELDS = ("cause", "requests", "missed_tokens", "missed_cost_usd")

Progress = Callable[[int, int], None]  # (rows just explained, rows to explain in all)


def explain(
    store: Store, everything: bool = False, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Explain in time order the requests without an explanation (every request when
    ``everything``); returns the miss causes of the whole database, most missed tokens
    first, each with its requests, missed tokens and missed dollars."""
    from analysis.explain import Explainer
    from collector.explanations import explain_new, resume, waiting

    total = _count(store, "SELECT count(*) FROM requests") if everything else waiting(store)
    advance = (lambda n: progress(n, total)) if progress else (lambda n: None)
    if everything:
        explain_new(store, Explainer(), -1, advance)
    else:
        resume(store, Explainer(), advance)
    rows = store.con.execute(
        "SELECT cause, count(*), sum(missed_tokens), sum(missed_cost_usd) FROM explanations "
        "GROUP BY cause ORDER BY sum(missed_tokens) DESC, cause"
    ).fetchall()
    return [dict(zip(SUMMARY_FIELDS, row, strict=True)) for row in rows]


def _count(store: Store, sql: str) -> int:
    return store.con.execute(sql).fetchall()[0][0]


def diff(cur: duckdb.DuckDBPyConnection, request_id: str) -> dict[str, Any] | None:
    """A request beside its predecessor, or None for an unknown id: its explanation
    (empty when it has none yet), where it ran, the token comparison (None unless both
    requests' content was captured) and both segment maps, B's marked with the segments
    whose hash A also has."""
    from analysis.segmaps import segment_map

    later = queries.request_detail(cur, request_id)
    if later is None:
        return None
    explanation = json.loads(later["explanation"]) if later.get("explanation") else {}
    pred_id = explanation.get("predecessor_id")
    earlier = queries.request_detail(cur, pred_id) if pred_id else None
    maps = [segment_map(r["segments"]) if r else () for r in (earlier, later)]
    kept = {s[4] for s in maps[0]}
    return {
        "id": request_id,
        "predecessor_id": pred_id,
        **{
            k: later.get(k) for k in ("route", "replica", "request_model", "provider", "block_size")
        },
        "explanation": explanation,
        "comparison": _comparison(earlier, later),
        "segments_a": [dict(zip(SEGMENT_FIELDS, s[:5], strict=True)) for s in maps[0]],
        "segments_b": [
            dict(zip(SEGMENT_FIELDS, s[:5], strict=True), kept=s[4] in kept) for s in maps[1]
        ],
    }


def _comparison(earlier: dict | None, later: dict) -> dict[str, Any] | None:
    """The token comparison of two stored requests, under the later one's provider rules
    (its own provider when known, else the one its format and model suggest)."""
    from analysis.compare import compare_prompts
    from analysis.providers import PROVIDERS
    from analysis.segmaps import captured_prompt
    from analysis.tokens import resolve

    if earlier is None:
        return None
    a = captured_prompt(earlier.get("content"), earlier["segments"], earlier["request_model"])
    b = captured_prompt(later.get("content"), later["segments"], later["request_model"])
    if a is None or b is None:
        return None
    tokenizer = resolve(later["request_model"], later.get("encoding") or None)
    rules = later["provider"] if later.get("provider") in PROVIDERS else None
    return compare_prompts(a, b, tokenizer, rules).to_dict()
