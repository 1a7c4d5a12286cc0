"""A miss's diff as a picture, in HTML: A and B side by side around the first differing
token (the shared prefix collapsed to its token count, the changed tokens marked), and
both segment maps as bars on one token scale with the first differing block marked."""

from __future__ import annotations

import html
from typing import Any

KIND_COLOURS = {
    "tool": "#8fb3de",
    "system": "#b5a3d9",
    "message": "#a9d3b0",
    "user": "#a9d3b0",
    "assistant": "#d8c99b",
    "reasoning": "#e3b5a4",
}
OTHER = "#c9c9c9"
STYLE = """<style>
.cd-pair{display:flex;gap:12px;margin:6px 0 14px}
.cd-side{flex:1;min-width:0;border:1px solid #ddd;border-radius:6px;padding:8px;
 font-family:ui-monospace,monospace;font-size:13px;white-space:pre-wrap;word-break:break-all}
.cd-side h5{margin:0 0 6px;font-family:sans-serif;font-size:13px}
.cd-shared{color:#777;background:#f1f1f1;border-radius:4px;padding:1px 5px;
 font-family:sans-serif;font-size:12px}
.cd-ctx{color:#444}
.cd-a{background:#ffd7d5;text-decoration:line-through;text-decoration-color:#c33}
.cd-b{background:#c9f2cf}
.cd-tok{border-right:1px dotted #999}
.cd-bars{position:relative;margin:4px 0 16px}
.cd-row{display:flex;align-items:center;gap:8px;margin:4px 0}
.cd-row span.cd-name{width:18px;font-weight:600;font-family:sans-serif}
.cd-bar{position:relative;display:flex;height:22px;flex:none;border-radius:3px;overflow:hidden}
.cd-seg{height:100%;border-right:1px solid #fff;box-sizing:border-box}
.cd-changed{background-image:repeating-linear-gradient(45deg,rgba(200,40,40,.55) 0 4px,
 transparent 4px 8px)}
.cd-mark{position:absolute;top:0;bottom:0;border-left:2px solid #c0392b}
.cd-mark span{position:absolute;top:0;left:3px;font:11px sans-serif;color:#c0392b;
 white-space:nowrap}
.cd-legend{font:12px sans-serif;color:#555}
.cd-legend i{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}
</style>"""


def _tokens(values: list[str], css: str) -> str:
    return "".join(f'<span class="{css} cd-tok">{html.escape(t)}</span>' for t in values)


def side_by_side(comparison: dict[str, Any]) -> str:
    """A and B around the first differing token: the shared prefix as a count, the last
    shared tokens, then each side's first differing tokens marked."""
    excerpt = comparison.get("excerpt") or {}
    context = excerpt.get("context") or []
    shared = int(comparison.get("first_diff_token") or 0)
    hidden = max(shared - len(context), 0)
    collapsed = (
        f'<span class="cd-shared">⋯ {hidden:,} shared tokens</span>'
        if hidden
        else '<span class="cd-shared">start of prompt</span>'
    )
    context_html = f'<span class="cd-ctx">{html.escape("".join(context))}</span>'
    sides = []
    for name, key, css, total in (
        ("A (earlier)", "a", "cd-a", comparison.get("tokens_a")),
        ("B (this request)", "b", "cd-b", comparison.get("tokens_b")),
    ):
        changed = _tokens(excerpt.get(key) or [], css) or '<span class="cd-shared">(end)</span>'
        of = f" · {total:,} tokens" if total is not None else ""
        sides.append(
            f'<div class="cd-side"><h5>{name}{of}</h5>{collapsed}{context_html}{changed}</div>'
        )
    return f'{STYLE}<div class="cd-pair">{"".join(sides)}</div>'


def _bar(segments: list[dict[str, Any]], scale: int, width: int) -> str:
    parts = []
    for seg in segments:
        size = max(int(seg.get("end") or 0) - int(seg.get("start") or 0), 0)
        px = max(size * width / scale, 1.0) if scale else 0
        colour = KIND_COLOURS.get(str(seg.get("kind")), OTHER)
        changed = " cd-changed" if seg.get("kept") is False else ""
        title = html.escape(f"{seg.get('path')} · {seg.get('kind')} · {size:,} tokens")
        parts.append(
            f'<div class="cd-seg{changed}" title="{title}" '
            f'style="width:{px:.1f}px;background-color:{colour}"></div>'
        )
    used = sum(max(int(s.get("end") or 0) - int(s.get("start") or 0), 0) for s in segments)
    wide = used * width / max(scale, 1)
    return f'<div class="cd-bar" style="width:{wide:.1f}px">{"".join(parts)}</div>'


def segment_bars(
    segments_a: list[dict[str, Any]],
    segments_b: list[dict[str, Any]],
    first_diff_token: int | None,
    block_size: int | None = None,
    width: int = 640,
) -> str:
    """Both segment maps as bars on one token scale; B's segments that A lacks are
    hatched; a line marks the first differing block (or token)."""
    ends = [int(s.get("end") or 0) for s in (*segments_a, *segments_b)]
    scale = max(ends, default=0)
    rows = "".join(
        f'<div class="cd-row"><span class="cd-name">{name}</span>{_bar(segs, scale, width)}</div>'
        for name, segs in (("A", segments_a), ("B", segments_b))
    )
    mark = ""
    if first_diff_token is not None and scale:
        at = first_diff_token
        label = f"first differing token {at:,}"
        if block_size:
            block = at // block_size
            at, label = block * block_size, f"first differing block {block:,} (token {at:,})"
        left = 26 + min(at, scale) * width / scale
        mark = f'<div class="cd-mark" style="left:{left:.1f}px"><span>{label}</span></div>'
    legend = "".join(
        f'<i style="background:{c}"></i>{k}' for k, c in list(KIND_COLOURS.items())[:4]
    )
    legend += '<i class="cd-changed" style="background-color:#eee"></i>not in A'
    return (
        f'{STYLE}<div class="cd-bars" style="padding-top:16px">{mark}{rows}</div>'
        f'<div class="cd-legend">{legend} · {scale:,} tokens across</div>'
    )
