"""`runs/<id>/report.html`: one self-contained page (inline CSS, JS and images; nothing fetched) next to report.md.

The stage table with dev-report intervals, the paired comparisons, the fitted ensemble and post-processing, per-source
score distributions and score against length (inline PNGs), and a per-dialogue explorer over dev: the dialogue, its
reference, every candidate with its source, its score against the reference and its consensus utility, the pick and
the best candidate marked, the gap between them; sortable by gap, score or source, filterable by source and topic.
Opened with `?explore` it opens on the explorer; with `?selftest` it sorts itself and writes what it saw into
`#selftest` (the browser test reads it).
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from dialsum.io.files import atomic_write_text

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th.sort{cursor:pointer;background:#eef}tr.row{cursor:pointer}tr.row:hover{background:#f5f5ff}
.num{text-align:right;font-variant-numeric:tabular-nums}.pick{background:#e6f4ea}.best{outline:2px solid #e0a000}
.detail td{background:#fafafa;white-space:pre-wrap}.tag{font-size:11px;padding:0 4px;border-radius:3px;background:#ddd}
img{max-width:100%}
"""

JS = r"""
const data = JSON.parse(document.getElementById('data').textContent);
const errors = [];
window.addEventListener('error', e => errors.push(String(e.message)));
let key = 'gap', desc = true;
function esc(s){const d=document.createElement('div');d.textContent=s==null?'':String(s);return d.innerHTML;}
function rows(){
  const src = document.getElementById('fsource').value, top = document.getElementById('ftopic').value;
  let r = data.dialogues.filter(d => (!src || d.pick_source === src || d.candidates.some(c => c.source === src))
                                 && (!top || d.topic === top));
  r.sort((a, b) => { const x = a[key], y = b[key];
    const c = (typeof x === 'number') ? x - y : String(x).localeCompare(String(y));
    return desc ? -c : c; });
  return r;
}
function render(){
  const body = document.getElementById('explorer-body'); body.innerHTML = '';
  for (const d of rows()) {
    const tr = document.createElement('tr'); tr.className = 'row'; tr.dataset.fname = d.fname;
    tr.innerHTML = `<td>${esc(d.fname)}</td><td>${esc(d.topic)}</td><td>${esc(d.part)}</td>` +
      `<td>${esc(d.pick_source)}</td><td class="num">${d.pick_score.toFixed(2)}</td>` +
      `<td class="num">${d.best_score.toFixed(2)}</td><td class="num">${d.gap.toFixed(2)}</td>` +
      `<td class="num">${d.length}</td>`;
    tr.onclick = () => toggle(tr, d);
    body.appendChild(tr);
  }
  document.getElementById('count').textContent = body.children.length;
}
function toggle(tr, d){
  if (tr.nextSibling && tr.nextSibling.classList && tr.nextSibling.classList.contains('detail')) { tr.nextSibling.remove(); return; }
  const det = document.createElement('tr'); det.className = 'detail';
  const cands = d.candidates.map(c => `<tr class="${c.chosen ? 'pick' : ''} ${c.best ? 'best' : ''}"><td>${esc(c.source)}` +
    `${c.chosen ? ' <span class="tag">pick</span>' : ''}${c.best ? ' <span class="tag">best</span>' : ''}</td>` +
    `<td class="num">${c.score.toFixed(2)}</td><td class="num">${c.utility == null ? '' : c.utility.toFixed(4)}</td>` +
    `<td>${esc(c.text)}</td></tr>`).join('');
  det.innerHTML = `<td colspan="8"><b>Dialogue</b>\n${esc(d.dialogue)}\n\n<b>Reference</b>\n${esc(d.reference)}\n\n` +
    `<b>Submitted (post-processed)</b>\n${esc(d.final)}\n<table><tr><th>source</th><th>score</th><th>utility</th>` +
    `<th>candidate</th></tr>${cands}</table></td>`;
  tr.after(det);
}
function sortBy(k){ if (key === k) desc = !desc; else { key = k; desc = (k !== 'fname' && k !== 'pick_source'); } render(); }
function options(id, values){ const s = document.getElementById(id);
  for (const v of [...new Set(values)].sort()) { const o = document.createElement('option'); o.value = v; o.textContent = v; s.appendChild(o); } }
options('fsource', data.dialogues.flatMap(d => d.candidates.map(c => c.source)));
options('ftopic', data.dialogues.map(d => d.topic).filter(t => t));
document.getElementById('fsource').onchange = render; document.getElementById('ftopic').onchange = render;
document.querySelectorAll('th.sort').forEach(th => th.onclick = () => sortBy(th.dataset.key));
render();
if (location.search.includes('explore')) {  // open on the explorer, the largest-gap dialogue expanded
  document.body.prepend(document.getElementById('explorer-section'));
  document.querySelector('#explorer-body tr.row').click();
}
if (location.search.includes('selftest')) {
  const order = () => [...document.querySelectorAll('#explorer-body tr.row')].map(t => t.dataset.fname);
  const first = order(); sortBy('fname'); const byName = order(); sortBy('gap'); const byGap = order();
  const gaps = byGap.map(f => data.dialogues.find(d => d.fname === f).gap);
  document.querySelector('#explorer-body tr.row').click();
  const out = {rows: first.length, dialogues: data.dialogues.length, reordered: byName.join() !== byGap.join(),
               gap_sorted_desc: gaps.every((g, i) => i === 0 || gaps[i - 1] >= g), expanded: document.querySelectorAll('tr.detail').length,
               errors: errors};
  const pre = document.createElement('pre'); pre.id = 'selftest'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plots(data: dict) -> dict[str, str]:
    """Per-source score distributions and pick score against pick length, as inline PNG data URLs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    out = {}
    by_source: dict[str, list[float]] = {}
    for d in data["dialogues"]:
        for c in d["candidates"]:
            by_source.setdefault(c["source"], []).append(c["score"])
    if by_source:
        names = sorted(by_source, key=lambda s: -sum(by_source[s]) / len(by_source[s]))
        fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(names)), 3.2))
        ax.boxplot([by_source[n] for n in names], showmeans=True)
        ax.set_xticks(range(1, len(names) + 1), [n[:24] for n in names], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("score vs reference (dev)")
        out["distributions"] = _png(fig)
        plt.close(fig)
    if data["dialogues"]:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.scatter([d["length"] for d in data["dialogues"]], [d["pick_score"] for d in data["dialogues"]], s=9)
        ax.set_xlabel("pick length (words)")
        ax.set_ylabel("pick score (dev)")
        out["length"] = _png(fig)
        plt.close(fig)
    return out


def _table(head: list[str], body: list[list]) -> str:
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in body)
    return f"<table><tr>{h}</tr>{b}</table>"


def _score(s: dict | None) -> str:
    if not s:
        return "—"
    ci = f" [{s['ci_low']:.2f}, {s['ci_high']:.2f}]" if "ci_low" in s else ""
    return f"{s['final']:.4f}{ci}"


def _final_section(final: dict | None, rows: list[dict]) -> str:
    """The refit's file, the plain statement that no dev number exists for it, the estimate, the pseudo-label probe."""
    if not final:
        return ""
    post = next((r for r in rows if r["stage"] == "postprocess"), {})
    text = (f"<h2>Final refit</h2><p>{html.escape(Path(final['path']).name)}: every model retrained on train + dev, "
            f"the dev-select choices applied unchanged. <b>No dev number exists for the refit models</b>; the "
            f"estimate is the selection run's dev-report score, {_score(post.get('report'))}.</p>")
    probe = final.get("pseudo_label_probe")
    if probe:
        text += (f"<p>Pseudo-labels measured on dev-report: {probe['with']:.4f} with vs {probe['without']:.4f} "
                 f"without, {probe['diff']:+.4f} [{probe['ci_low']:+.4f}, {probe['ci_high']:+.4f}] (paired, "
                 f"{probe['n']} dialogues).</p>")
    return text


def render(data: dict, images: dict[str, str]) -> str:
    stage_rows = [[r["stage"], r["detail"], _score(r.get("select")), _score(r.get("report"))] for r in data["rows"]]
    comp = [[c["a_name"], c["b_name"], f"{c['a']:.4f}", f"{c['b']:.4f}",
             f"{c['diff']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]", f"{c['p_value']:.3f}"]
            for c in data["comparisons"]]
    fit = data.get("fit") or {}
    cv = fit.get("cross_validation") or {}
    gains = [[g["rule"], f"{g.get('gain', 0):+.4f}", f"{g.get('se', 0):.4f}", "yes" if g["enabled"] else "no",
              g.get("why", "")] for g in (data.get("postprocess") or {}).get("gains", [])]
    e = data["ensemble"]
    parts = [
        f"<h1>dialsum report: {html.escape(data['run_id'])}</h1>",
        "<p><b>Trust dev-report</b>: everything that chose saw only dev-select. Intervals are 95 % bootstrap "
        "intervals over dialogues.</p>",
        _table(["stage", "detail", "dev-select", "dev-report [95 %]"], stage_rows),
        ("<h2>Leaderboard (dialsum submitted)</h2>" + _table(
            ["time", "file", "dev-report [95 %]", "public", "private", "note"],
            [[b["time"], b["file"], f"{b['dev_report']} [{b['ci_low']}, {b['ci_high']}]", b["public"],
              b.get("private") or "—", b.get("note") or ""] for b in data["leaderboard"]])
         if data.get("leaderboard") else ""),
        _final_section(data.get("final"), data["rows"]),
        "<h2>Is the difference real? (paired, dev-report)</h2>",
        _table(["A", "B", "A", "B", "A − B [95 %]", "p"], comp),
        f"<h2>Ensemble</h2><p>{html.escape(str(e.get('method')))}; chosen: {html.escape(str(e.get('chosen')))}; "
        f"best single source on dev-select: {html.escape(str(e.get('best_source')))}; {e.get('n_sources')} sources."
        f"{' Chosen by ' + html.escape(str(fit.get('chosen_by'))) + '.' if fit else ''}</p>",
        _table(["held-out (k-fold on dev-select)", "score"],
               [[k, f"{cv[k]:.4f}"] for k in ("fitted", "best_single", "uniform", "oracle") if k in cv]) if cv else "",
        _table(["source", "quality (dev-select)", "weight in the fitted rule"],
               [[s, f"{q:.3f}", f"{fit.get('members', {}).get(s, 0):.3f}"]
                for s, q in sorted(fit.get("source_quality", {}).items(), key=lambda kv: -kv[1])]) if fit else "",
        "<h2>Post-processing (one-standard-error rule on dev-select)</h2>",
        _table(["rule", "held-out gain", "SE", "kept", "why"], gains),
        "<h2>Scores by source and by length (dev)</h2>",
        *[f'<img alt="{k}" src="{v}">' for k, v in images.items()],
        "<div id='explorer-section'><h2>Dialogues</h2><p>source <select id='fsource'><option value=''>all</option></select> topic "
        "<select id='ftopic'><option value=''>all</option></select> · <span id='count'></span> dialogues · click a row "
        "for the dialogue, its reference and every candidate (pick and best marked)</p>",
        "<table id='explorer'><thead><tr>" + "".join(
            f"<th class='sort' data-key='{k}'>{n}</th>" for k, n in
            (("fname", "fname"), ("topic", "topic"), ("part", "dev part"), ("pick_source", "pick source"),
             ("pick_score", "pick score"), ("best_score", "best score"), ("gap", "gap"), ("length", "length"))) +
        "</tr></thead><tbody id='explorer-body'></tbody></table></div>",
    ]
    blob = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>dialsum report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}"
            f"<script type='application/json' id='data'>{blob}</script><script>{JS}</script></body></html>\n")


def write_html(path: Path, data: dict) -> Path:
    atomic_write_text(Path(path), render(data, plots(data)))
    return Path(path)
