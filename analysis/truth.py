"""The true cause of a generated request, from the simulator's cache state and the edit
the generator made to its body — never from incident membership.

Per provider and model the simulator keeps ``ever`` (every entry any replica
ever stored: the ideal cache that never loses anything) and ``shadow`` (those
plus the entries the *clean* bodies would have stored: each request's body
without its incident's edit). All token figures are the provider's: its
``prompt_tokens``, its minimum and its rule (blocks in its increments, or
Anthropic's breakpoints). One *unit* is the provider's increment (OpenAI 128,
DeepSeek 64 tokens; 1 token for Anthropic, whose entries end at breakpoints).
A miss is a shortfall of *more* than one unit: where a provider's entry ends
against the previous request's prompt tokens is uncertain by a few template
tokens, which can move a cached count by one unit, so no observer of the
usage numbers (the explainer included) can tell a one-unit shortfall from a
healthy request. Within one unit, a request is healthy.

- ``actual`` = what a cache holding ``ever`` would serve of the body sent;
  ``clean`` = what a cache holding ``shadow`` would serve of the clean body
  (the body itself when it carries no edit); ``served`` = the cached tokens.
1. the provider's prompt tokens under its minimum ─► ``below_minimum``;
2. an edit (this request's, or the last one made to its session) that made
   the request pay full price for at least one unit more than the clean body
   would have: extra = (prompt − served) − (clean prompt − clean) > 1 unit,
   with clean − actual > 1 unit ─► the edit's cause, missed = extra. (Lengths
   alone do not tell: a body the edit made shorter or longer, extending a
   request that carried the same edit, lost nothing to it.)
3. actual − served > 1 unit ─► an infrastructure cause, missed = actual −
   served, from the state of the first entry past what was served on the
   replica that served it (``analysis.simulate``): not yet computed, here or
   on any replica ─► ``concurrent_fanout``; alive and computed on another
   replica only ─► ``routing``; expired past the TTL ─► ``ttl_expired``;
   dropped for capacity (or held only by a replica that is gone) ─►
   ``eviction_or_unknown``;
4. nothing of it cacheable was ever stored (actual = 0) ─► ``cold_start``;
5. otherwise ``no_miss``.
``below_minimum``, ``cold_start`` and ``no_miss`` have missed tokens 0.
"""

from __future__ import annotations

from typing import NamedTuple

from analysis.simulate import Served

NOT_MISSES = ("no_miss", "below_minimum", "cold_start")


class Truth(NamedTuple):
    cause: str
    missed: int  # provider tokens the request paid full price for that it need not have


def classify(
    served: Served,
    minimum: int,
    unit: int,
    clean: int,
    clean_prompt: int,
    edit: str | None,
    cacheable: bool = True,
) -> Truth:
    """The true cause of one served request (see the module docstring); ``clean`` is the
    clean body's ideal and ``clean_prompt`` its prompt tokens, ``cacheable`` False when
    the body has nothing the provider may cache at all (no breakpoint under Anthropic's
    rule)."""
    unit = max(unit, 1)
    if served.prompt_tokens < minimum:
        return Truth("below_minimum", 0)
    actual, got = served.ideal_tokens, served.cached_tokens
    extra = (served.prompt_tokens - got) - (clean_prompt - clean)
    if edit and clean - actual > unit and extra > unit:
        return Truth(edit, extra)
    if actual - got > unit:
        return Truth(served.lost or "eviction_or_unknown", actual - got)
    if actual == 0 and cacheable:
        return Truth("cold_start", 0)
    return Truth("no_miss", 0)
