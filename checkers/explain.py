"""Explanations of non-linearizable histories, as JSON and as a self-contained HTML page.

The search remembers the furthest point in the history it reached: the return entry latest in
history order at which it had to backtrack. The op of that entry is the one that cannot be
linearized; the ops linearized at that moment form the longest linearizable prefix found; the
ops that overlap it in real time, or were pending then, are the ones involved.
"""

from __future__ import annotations

import html
import json
from typing import Any

import jinja2
import markupsafe

from checkers.history import Operation
from checkers.models import ILLEGAL, Compiled, Model

_PREFIX_DETAIL = 40  # prefix ops shown in full (the rest by id only)
_WINDOW = 400  # ops drawn at most in the timeline


def _state_text(v: Any) -> str:
    return "nil (absent)" if v is None else repr(v)


def explain_failure(
    model: Model, c: Compiled, outcome: Any, key: Any, group: list[Operation]
) -> dict[str, Any]:
    """The JSON explanation of a failed search on one object (key)."""
    fi = outcome.fail_op
    fop = c.ops[fi]
    prefix = outcome.best_ops
    s = c.init
    prefix_rows = []
    for i in prefix:
        s = c.apply(s, i)
        prefix_rows.append((i, s))
    if s is ILLEGAL:  # cannot happen: the search only pushed legal steps
        raise AssertionError("explanation replay left the model")
    state = c.decode(outcome.best_state)
    in_prefix = set(prefix)
    f_ret = fop.ret if fop.ret is not None else float("inf")
    concurrent = [
        i
        for i, op in enumerate(c.ops)
        if i != fi and op.call < f_ret and (op.ret is None or op.ret > fop.call)
    ]
    pending = [
        i for i, op in enumerate(c.ops) if i != fi and i not in in_prefix and op.call < f_ret
    ]
    marked: dict[int, str] = {}
    if outcome.stale is not None:
        # refuted without a search: no prefix, nothing pending; the ops that matter are the
        # write it read from and the one that replaced it
        pending = []
        if outcome.stale[0] >= 0:
            marked[outcome.stale[0]] = "source"
        marked[outcome.stale[1]] = "missed"
    need = model.requirement(c, fi)
    if outcome.unwritten:
        message = (
            f"{fop.describe()} (invoked at op {fop.invoke_index}, completed at op "
            f"{fop.complete_index}) cannot be linearized: it needs {need}, a value that no op "
            "invoked before it completed could have written, and that is not the initial value"
            + _failed_writer(c.decode(c.a[fi]), group)
        )
    elif outcome.stale is not None:
        writer, over = outcome.stale
        oop = c.ops[over]
        wrote = ("the initial value" if writer < 0 else
                 f"written by {c.ops[writer].describe()} (completed at op "
                 f"{c.ops[writer].complete_index})")
        message = (
            f"{fop.describe()} (invoked at op {fop.invoke_index}, completed at op "
            f"{fop.complete_index}) cannot be linearized: it needs {need}, {wrote}, which "
            f"{oop.describe()} replaced (invoked at op {oop.invoke_index}, after every op "
            f"that could write that value had completed, and completed at op "
            f"{oop.complete_index}, before this op was invoked): a stale read"
        )
    else:
        message = (
            f"{fop.describe()} (invoked at op {fop.invoke_index}, completed at op "
            f"{fop.complete_index}) cannot be linearized: the longest linearizable prefix "
            f"found has {len(prefix)} ops, after which the state is {_state_text(state)}; this "
            f"op needs {need}, and "
            + (f"no order of the {len(pending)} other op(s) pending then gets there" if pending
               else "no other op was pending then")
        )

    def op_json(i: int) -> dict[str, Any]:
        return c.ops[i].to_dict()

    detail_from = max(0, len(prefix_rows) - _PREFIX_DETAIL)
    failure: dict[str, Any] = {
        "message": message,
        "key": key,
        "op": op_json(fi),
        "requires": need,
        "state": state,
        "prefix_length": len(prefix),
        # history ids (Operation.id) of the prefix, in linearization order
        "prefix": [c.ops[i].id for i in prefix],
        "prefix_tail": [
            dict(op_json(i), state_after=c.decode(st)) for i, st in prefix_rows[detail_from:]
        ],
        "concurrent": [dict(op_json(i), in_prefix=i in in_prefix) for i in concurrent],
        "pending": [op_json(i) for i in pending],
    }
    if outcome.stale is not None:
        # the acknowledged op the stale read missed, and the write whose value it returned
        failure["missed"] = op_json(outcome.stale[1])
        if outcome.stale[0] >= 0:
            failure["read_from"] = op_json(outcome.stale[0])
    states = {c.ops[i].id: st for i, st in prefix_rows}
    failure["timeline"] = _timeline(c, fi, prefix, concurrent, pending, group, marked, states)
    return failure


def _failed_writer(v: Any, group: list[Operation]) -> str:
    """A note naming a failed op that wrote v, if one did: the usual cause of such a read."""
    for op in group:
        if op.status != "fail" or op.compare_failed:
            continue
        wrote = op.value[1] if op.f == "cas" and isinstance(op.value, (list, tuple)) \
            and len(op.value) == 2 else op.value if op.f in ("write", "put") else None
        if wrote is not None and wrote == v:
            return (f" (only failed ops wrote it, such as {op.describe()} at op "
                    f"{op.invoke_index}, and a failed op did not happen)")
    return ""


def _timeline(
    c: Compiled,
    fi: int,
    prefix: list[int],
    concurrent: list[int],
    pending: list[int],
    group: list[Operation],
    marked: dict[int, str] | None = None,
    states: dict[int, Any] | None = None,
) -> dict[str, Any]:
    """The ops around the failure, with a role each, for the HTML view (`marked`: roles of
    their own, such as the write a stale read read from and the one it missed); a prefix op
    carries its place in the linearization and, from `states` (op id to the model's state
    after it), the state it left, so the page can step through the partial linearization."""
    fop = c.ops[fi]
    role: dict[int, str] = {}
    order: dict[int, int] = {}
    for n, i in enumerate(prefix, 1):
        role[c.ops[i].id] = "prefix"
        order[c.ops[i].id] = n
    for i in pending:
        role[c.ops[i].id] = "pending"
    for i in concurrent:
        role.setdefault(c.ops[i].id, "concurrent")
    for i, name in (marked or {}).items():
        role[c.ops[i].id] = name
    role[fop.id] = "failing"
    kept = {op.id for op in c.ops}
    f_ret = fop.ret if fop.ret is not None else max(op.call for op in group) + 1
    lo = fop.call
    for i in concurrent + pending + prefix[-20:] + list(marked or ()):
        lo = min(lo, c.ops[i].call)
    chosen = [
        op for op in group
        if op.call <= f_ret and (op.ret is None or op.ret >= lo or op.status == "info")
        and (op.ret is not None or op.call >= lo or op.id in role)
    ]
    if len(chosen) > _WINDOW:
        chosen.sort(key=lambda o: abs(o.call - fop.call))
        chosen = sorted(chosen[:_WINDOW], key=lambda o: o.call)
    rows = []
    for op in chosen:
        r = role.get(op.id, "other" if op.id in kept else "ignored")
        d = op.to_dict()
        d["role"] = r
        d["label"] = op.describe(with_key=False).split(" ", 1)[-1]  # the row names the process
        if op.id in order:
            d["linearized"] = order[op.id]  # its place in the prefix's order
            if states is not None:
                # as text, bounded: an append model's state can be a long list, and this is
                # kept for up to _WINDOW ops in results.json
                text = _state_text(c.decode(states[op.id]))
                d["state_after_text"] = text if len(text) <= 200 else text[:197] + "..."
        rows.append(d)
    return {"from": lo, "to": f_ret, "ops": rows}


# ----------------------------------------------------------------------------------- HTML

_ENV = jinja2.Environment(autoescape=True)
_ENV.filters["show"] = lambda v: _state_text(v)
_TEMPLATE = _ENV.from_string(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
.verdict { padding: .6em .9em; border-radius: 4px; }
.valid { background: #e3f5e1; } .invalid { background: #fde2e1; } .unknown { background: #fff3cd; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
th { background: #f3f3f3; }
.legend span { display: inline-block; padding: 0 .5em; margin-right: .5em; border-radius: 3px; }
.prefix { fill: #b9e3b5; background: #b9e3b5; }
.failing { fill: #f28b82; background: #f28b82; }
.pending { fill: #fbd38d; background: #fbd38d; }
.concurrent { fill: #fbd38d; background: #fbd38d; }
.other { fill: #d6dbe1; background: #d6dbe1; }
.source { fill: #9ecae1; background: #9ecae1; }
.missed { fill: #c994c7; background: #c994c7; }
.ignored { fill: #f1f1f1; background: #f1f1f1; }
svg text { font: 11px monospace; pointer-events: none; }
svg rect.op { stroke: #555; stroke-width: .6; }
svg rect.op:hover { stroke: #000; stroke-width: 2; }
.scroll { overflow-x: auto; border: 1px solid #ddd; direction: rtl; }
/* rtl: a wide timeline opens scrolled to its right end, where the failing op is */
.scroll svg { direction: ltr; }
code { background: #f6f6f6; padding: 0 3px; }
#evidence tr.row-1 th, #evidence tr.row-1 td { background: #fde2e1; }
.fault { background: #e8eef7; padding: 0 .3em; border-radius: 3px; }
#stepper { margin: .4em 0; } #stepper button { font: inherit; margin-right: .2em; }
#step-text { margin-left: .6em; }
svg rect.op.future { opacity: .25; }
svg rect.op.current { stroke: #000; stroke-width: 2.5; }
</style></head><body>
<h1>{{ title }}</h1>
<p class="verdict {{ verdict_class }}"><b>{{ verdict_text }}</b>
{%- if reason %}: {{ reason }}{% endif %}</p>
<p>Model <code>{{ result.model }}</code>, {{ result.ops }} ops ({{ result.ok }} ok,
{{ result.fail }} fail, {{ result.info }} info) over {{ result["keys"] }} key(s),
{{ result.configurations }} configurations explored in {{ "%.3f"|format(result.seconds) }} s.</p>
{% if ctx and ctx.rows %}
<h2 id="where">Where and when</h2>
<table id="evidence"><tr><th></th><th>operation</th><th>process</th><th>node</th>
<th>invoked (s)</th><th>completed (s)</th><th>latency (ms)</th><th></th></tr>
{% for r in ctx.rows %}<tr class="row-{{ loop.index }}"><th>{{ r.role }}</th>
<td><code>{{ r.text }}</code></td><td>{{ r.process }}</td><td><b>{{ r.node or "-" }}</b></td>
<td>{{ "%.3f"|format(r.start_s) if r.start_s is not none else "-" }}</td>
<td>{{ "%.3f"|format(r.end_s) if r.end_s is not none else "never" }}</td>
<td>{{ "%.2f"|format(r.latency_ms) if r.latency_ms is not none else "-" }}</td>
<td>{% if r.href %}<a href="{{ r.href }}">timeline</a>{% endif %}</td></tr>
{% endfor %}</table>
<p id="faults-in-force"><b>Faults in force while it ran:</b>
{% if ctx.faults %}{% for x in ctx.faults %}<span class="fault">{{ x.detail }}
({{ "%.2f"|format(x.start_s) }}&ndash;{{ "%.2f"|format(x.end_s) }} s)</span>
{{- "; " if not loop.last }}{% endfor %}
{% else %}none (no fault overlapped it){% endif %}</p>
<p class="links">{% for l in ctx.links %}<a href="{{ l.href }}">{{ l.text }}</a>
{{- " · " if not loop.last }}{% endfor %}</p>
{% endif %}
{% if f %}
<h2>Timeline{% if f.key is not none %} of key {{ f.key }}{% endif %}</h2>
<p class="legend"><span class="prefix">linearized prefix</span><span class="failing">cannot be
linearized</span>{% if f.read_from %}<span class="source">wrote the value read</span>{% endif %}
{%- if f.missed %}<span class="missed">replaced it (missed)</span>{% endif -%}
<span class="pending">pending / concurrent</span><span class="other">later or
not involved</span><span class="ignored">did not happen / no output</span>
The shaded band is the failing op's interval; x is the position in the history; an op without an
end (info) may take effect any time after its start.</p>
{% if steps %}
<div id="stepper" hidden><b>Step through the linearization:</b>
<button id="step-first" title="first step (Home)">&laquo; first</button><button id="step-prev"
title="previous step (&larr;)">&#x25C0; previous</button><button id="step-next"
title="next step (&rarr;)">next &#x25B6;</button><button id="step-last"
title="last step (End)">last &raquo;</button>
<span id="step-text" aria-live="polite"></span></div>
<script type="application/json" id="steps-data">{{ steps }}</script>
{% endif %}
<div class="scroll">{{ svg }}</div>
<h2>The op that cannot be linearized</h2>
<p><code>{{ f.op.text }}</code>
(history ops {{ f.op.invoke_index }}&ndash;{{ f.op.complete_index }}) needs {{ f.requires }}.
{% if f.missed %}
{% if f.read_from %}<code>{{ f.read_from.text }}</code> (history ops
{{ f.read_from.invoke_index }}&ndash;{{ f.read_from.complete_index }}) wrote that value{% else %}
That was the initial value{% endif %}, and <code>{{ f.missed.text }}</code> (history ops
{{ f.missed.invoke_index }}&ndash;{{ f.missed.complete_index }}), invoked after every op that
could write it had completed, replaced it and completed before this op was invoked: a stale
read. No linearization puts the value back in between; this was found before any search.</p>
{% else %}
After the longest linearizable prefix found ({{ f.prefix_length }} ops)
the state is <code>{{ f.state|show }}</code>.</p>
{% endif %}
<h2>Concurrent ops</h2>
{% if f.concurrent %}
<table><tr><th>op</th><th>history ops</th><th>status</th><th>in prefix</th></tr>
{% for o in f.concurrent %}<tr><td><code>{{ o.text }}</code></td>
<td>{{ o.invoke_index }}&ndash;{{ o.complete_index if o.complete_index is not none else "" }}</td>
<td>{{ o.status }}</td><td>{{ "yes" if o.in_prefix else "no" }}</td></tr>
{% endfor %}</table>
{% else %}<p>None: no other op on this key overlaps it in time.</p>{% endif %}
{% if f.prefix_tail %}
<h2>End of the longest linearizable prefix</h2>
<table><tr><th>#</th><th>op</th><th>state after</th></tr>
{% for o in f.prefix_tail %}
<tr><td>{{ f.prefix_length - f.prefix_tail|length + loop.index }}</td>
<td><code>{{ o.text }}</code></td><td><code>{{ o.state_after|show }}</code></td></tr>
{% endfor %}</table>
{% endif %}
{% endif %}
{% if steps %}
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("steps-data").textContent);
  var steps = data.steps, rects = {};
  document.querySelectorAll(".scroll svg rect.op[data-op]").forEach(function (r) {
    rects[r.getAttribute("data-op")] = r;
  });
  var text = document.getElementById("step-text"), at = steps.length - 1;
  function show(k) {
    at = Math.max(0, Math.min(steps.length - 1, k));
    steps.forEach(function (s, j) {
      var r = rects[String(s.op)];
      if (!r) return;
      r.classList.toggle("current", j === at);
      r.classList.toggle("future", j > at);
    });
    var s = steps[at], where = "step " + (at + 1) + " of " + steps.length + ": ";
    text.textContent = s.failing
      ? where + s.text + " cannot be linearized next: it needs " + s.need
        + ", and the state is " + s.state
      : where + "#" + s.n + " of the " + data.total + " ops linearized: " + s.text
        + ", after which the state is " + s.state;
    var r = rects[String(s.op)];
    if (r && r.scrollIntoView) r.scrollIntoView({block: "nearest", inline: "center"});
    if (history.replaceState) history.replaceState(null, "", "#step=" + (s.failing ? "fail" : s.n));
  }
  function go(k) { return function () { show(k()); }; }
  document.getElementById("step-first").onclick = go(function () { return 0; });
  document.getElementById("step-prev").onclick = go(function () { return at - 1; });
  document.getElementById("step-next").onclick = go(function () { return at + 1; });
  document.getElementById("step-last").onclick = go(function () { return steps.length - 1; });
  document.addEventListener("keydown", function (e) {
    var k = {ArrowLeft: at - 1, ArrowRight: at + 1, Home: 0, End: steps.length - 1}[e.key];
    if (k !== undefined) { show(k); e.preventDefault(); }
  });
  // #step=N opens at op #N of the linearization (as numbered on the boxes), #step=fail at
  // the op that cannot be linearized
  var m = /step=(\\d+)/.exec(location.hash), start = steps.length - 1;
  if (m) steps.forEach(function (s, j) { if (s.n === parseInt(m[1], 10)) start = j; });
  document.getElementById("stepper").hidden = false;
  show(start);
})();
</script>
{% endif %}
</body></html>
"""
)


def _svg(timeline: dict[str, Any], nodes: dict[int, str] | None = None) -> str:
    ops = timeline["ops"]
    if not ops:
        return ""
    lo = min(o["call"] for o in ops)
    hi = max(max(o["call"], o["return"] or 0) for o in ops) + 2
    procs: list[Any] = []
    for o in ops:
        if o["process"] not in procs:
            procs.append(o["process"])
    try:
        procs.sort()
    except TypeError:
        pass
    row = {p: k for k, p in enumerate(procs)}
    span = max(1, hi - lo)
    # fit about 1150 px (a laptop window) unless that squeezes an event below 4 px
    unit = max(4.0, min(40.0, 1150.0 / span))
    left, top, rh = 70, 24, 26
    # at least a laptop window wide: the scroll box is right-to-left, a narrower drawing
    # would hang off its right edge
    width = max(1240, int(left + span * unit + 20))
    height = top + rh * len(procs) + 10

    def x(pos: float) -> float:
        return left + (pos - lo) * unit

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
    ]
    f_from, f_to = timeline["from"], timeline["to"]
    fail = next((o for o in ops if o["role"] == "failing"), None)
    if fail is not None:
        a, b = fail["call"], fail["return"] if fail["return"] is not None else hi
        parts.append(
            f'<rect x="{x(a):.1f}" y="0" width="{max(2.0, x(b) - x(a)):.1f}" '
            f'height="{height}" fill="#f28b82" opacity="0.18"/>'
        )
    del f_from, f_to
    for p, k in row.items():
        y = top + k * rh
        parts.append(
            f'<text x="4" y="{y + 16}">{html.escape(str(p))}</text>'
            f'<line x1="{left}" x2="{width}" y1="{y + rh - 2}" y2="{y + rh - 2}" '
            'stroke="#eee"/>'
        )
    # a label may run past its op's box, up to the next op in the same row
    room: dict[int, float] = {}
    by_row: dict[Any, list[dict[str, Any]]] = {}
    for o in ops:
        by_row.setdefault(o["process"], []).append(o)
    for row_ops in by_row.values():
        row_ops.sort(key=lambda o: o["call"])
        for here, after in zip(row_ops, row_ops[1:] + [None], strict=True):
            end = x(after["call"]) if after is not None else width
            room[id(here)] = end - x(here["call"]) - 4
    for o in ops:
        y = top + row[o["process"]] * rh + 2
        a = o["call"]
        open_ended = o["return"] is None
        b = hi if open_ended else o["return"]
        w = max(3.0, x(b) - x(a) - 1)
        where = "" if o.get("linearized") is None else f", linearized #{o['linearized']}"
        tip = html.escape(
            f"{o['text']}  [ops {o['invoke_index']}-{o['complete_index']}] {o['role']}{where}"
        )
        node = (nodes or {}).get(o["invoke_index"])
        if node:
            tip += html.escape(f", served by {node}")
        dash = ' stroke-dasharray="4 3"' if open_ended else ""
        parts.append(
            f'<rect class="op {o["role"]}" data-op="{o["invoke_index"]}" x="{x(a):.1f}" '
            f'y="{y}" width="{w:.1f}" height="{rh - 6}" rx="3"{dash}><title>{tip}</title></rect>'
        )
        label = o.get("label") or o["text"].split(" ", 1)[-1]
        if o.get("linearized") is not None:
            label = f"#{o['linearized']} {label}"
        if node and o["role"] in ("failing", "missed", "source"):
            label += f" on {node}"
        space = max(w, room.get(id(o), w))
        if space > 30:
            max_chars = int(space / 6.6)
            if len(label) > max_chars:
                label = label[: max(1, max_chars - 1)] + "\u2026"
            parts.append(f'<text x="{x(a) + 3:.1f}" y="{y + 14}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(result: dict[str, Any], title: str = "Linearizability check",
                context: dict[str, Any] | None = None) -> str:
    """A self-contained page (inline CSS, SVG and a small script that steps through the
    partial linearization; no external resources; without scripts it loses only the stepper).

    `context`, from whoever ran the history, places the failure in the run: `rows` (the ops
    that matter, each with role, text, process, node, start_s, end_s, latency_ms, href),
    `faults` in force (detail, start_s, end_s), `links` (text, href) and `nodes` (invoke index
    to the node that served it, shown on the timeline's labels)."""
    v = result.get("valid")
    verdict_class = {True: "valid", False: "invalid"}.get(v, "unknown")  # type: ignore[arg-type]
    verdict_text = {True: "Linearizable", False: "Not linearizable"}.get(
        v, "Unknown"  # type: ignore[arg-type]
    )
    f = result.get("failure")
    svg = _svg(f["timeline"], (context or {}).get("nodes") or {}) if f else ""
    steps = _steps_json(f) if f and f.get("timeline") else None
    return _TEMPLATE.render(
        steps=markupsafe.Markup(steps) if steps else None,
        ctx=context,
        title=title,
        result=result,
        f=f,
        reason=result.get("reason"),
        verdict_class=verdict_class,
        verdict_text=verdict_text,
        svg=markupsafe.Markup(svg),
    )


def _steps_json(f: dict[str, Any]) -> str | None:
    """The partial linearization as steps for the page's stepper: each prefix op drawn on the
    timeline, in linearization order, with the state it left, then the op that cannot be
    linearized; None when nothing was linearized (a refutation found before any search)."""
    ops = [o for o in f["timeline"]["ops"] if o.get("linearized") is not None]
    if not ops:
        return None
    ops.sort(key=lambda o: o["linearized"])
    steps = [{"op": o["invoke_index"], "n": o["linearized"], "text": o["text"],
              "state": o.get("state_after_text", "?")} for o in ops]
    steps.append({"op": f["op"]["invoke_index"], "failing": True, "text": f["op"]["text"],
                  "need": f["requires"], "state": _state_text(f["state"])})
    # no "<" inside a <script> element, where "</script" or "<!--" would end or change it
    return json.dumps({"steps": steps, "total": f["prefix_length"]}).replace("<", "\\u003c")
