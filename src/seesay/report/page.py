"""One self-contained HTML page: every figure inline (``data:`` URLs), the style and the gallery filter
inline, no network at all (no CDN, fonts or scripts from elsewhere)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from .gallery import png_of
from .model import KINDS, Figure, Section, Table, TraceView

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c9cfdb;font-size:12px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #dde1e8;padding:8px 24px;z-index:2}
nav a{margin-right:16px;color:#2a5db0;text-decoration:none}
main{padding:8px 24px 40px;max-width:1280px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:18px 0;padding:12px 18px}
section h2{font-size:17px;margin:4px 0 2px}.source{color:#6b7385;font-size:12px;margin:0 0 8px}
figure{display:inline-block;margin:6px 12px 6px 0}figure img{max-width:100%;border:1px solid #eceef2}
figcaption{font-size:12px;color:#6b7385}
table{border-collapse:collapse;margin:8px 0 12px;font-size:12.5px}
th,td{border:1px solid #e1e4ea;padding:3px 8px;text-align:right}th{background:#f0f2f5}
td:first-child,th:first-child{text-align:left}caption{text-align:left;font-weight:600;padding:4px 0}
.notes li{margin:2px 0}.filters button{margin:0 6px 6px 0;padding:3px 10px;border:1px solid #b9c1cf;
background:#fff;border-radius:12px;cursor:pointer}.filters button.on{background:#2a5db0;color:#fff}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #dde1e8;border-radius:6px;padding:8px;
background:#fafbfc}.card .tiles{display:flex;gap:4px}.card .tiles figure{margin:0}.card p{margin:4px 0}
.ok{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}.tag{font-size:11px;color:#6b7385}
.trace td{vertical-align:top;text-align:left}.trace img{display:block}
"""

SCRIPT = """
(function(){
  function setFilter(section, tag){
    section.querySelectorAll('.filters button').forEach(function(b){
      b.classList.toggle('on', b.dataset.tag === tag);});
    section.querySelectorAll('.card').forEach(function(c){
      var tags = (c.dataset.tags || '').split(' ');
      c.style.display = (tag === 'all' || tags.indexOf(tag) >= 0) ? '' : 'none';});
  }
  document.querySelectorAll('section.gallery').forEach(function(section){
    section.querySelectorAll('.filters button').forEach(function(b){
      b.addEventListener('click', function(){ setFilter(section, b.dataset.tag); });});
  });
  function countFigures(){
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function(i){ return i.complete && i.naturalWidth > 0; }).length;
    document.body.dataset.figures = String(imgs.length);
    document.body.dataset.figuresLoaded = String(ok);
  }
  window.addEventListener('load', countFigures);
  countFigures();
})();
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def figure_html(fig: Figure) -> str:
    caption = f"<figcaption>{esc(fig.caption)}</figcaption>" if fig.caption else ""
    image = f'<img src="{data_url(fig.png)}" alt="{esc(fig.name)}" data-name="{esc(fig.name)}">'
    return f"<figure>{image}{caption}</figure>"


def table_html(table: Table) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{esc(table.title)}</caption>"
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def gallery_html(section: Section) -> str:
    methods = section.gallery_methods or sorted({m for item in section.gallery for m in item.answers})
    tags = ["all"] + [f"{kind}:{m}" for m in methods if m != "base" for kind in ("fixed", "broken")]
    buttons = "".join(
        f'<button type="button" data-tag="{esc(t)}" class="{"on" if t == "all" else ""}">'
        f"{esc(t.replace(':', ' by ') if t != 'all' else 'all questions')} "
        f"({sum(1 for i in section.gallery if t == 'all' or t in i.tags())})</button>"
        for t in tags
    )
    cards = []
    for item in section.gallery:
        tiles = "".join(
            f'<figure><img src="{data_url(png_of(im))}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
            for caption, im in item.panels()
        )
        answers = "".join(
            (
                '<p><span class="ok">&#10003;</span> '
                if item.correct.get(m)
                else '<p><span class="bad">&#10007;</span> '
            )
            + f"{esc(m)}: {esc(item.answers.get(m, ''))}</p>"
            for m in methods
            if m in item.answers
        )
        group = f" [{esc(item.group)}]" if item.group else ""
        cards.append(
            f'<div class="card" data-tags="{esc(" ".join(item.tags()))}"><div class="tiles">{tiles}</div>'
            f"<p><b>{esc(item.question)}</b>{group}</p><p>reference: {esc(' | '.join(item.references))}</p>"
            f'{answers}<p class="tag">{esc(", ".join(item.tags()))}</p></div>'
        )
    return f'<div class="filters">{buttons}</div><div class="cards">{"".join(cards)}</div>'


def trace_html(view: TraceView) -> str:
    rows = []
    for k, tok in enumerate(view.tokens):
        heads = "; ".join(
            f"L{layer}: {', '.join(map(str, hs))}" for layer, hs in tok.suppressed.items() if hs
        )
        plot = f'<img src="{data_url(tok.figure.png)}" alt="shift profile">' if tok.figure else ""
        rows.append(
            f"<tr><td>{k}</td><td><code>{esc(repr(tok.token))}</code></td>"
            f"<td>{'' if tok.basic_layer is None else tok.basic_layer}</td><td>{plot}</td>"
            f"<td>{esc(heads or '-')}</td></tr>"
        )
    columns = ("step", "token", "basic layer", "Hellinger shift by layer", "suppressed heads")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    return f'<table class="trace"><caption>{esc(view.label)}</caption>{head}{"".join(rows)}</table>'


def render(sections: Sequence[Section], title: str, subtitle: str = "") -> str:
    """The page's HTML (see the module docstring)."""
    kinds = [k for k in KINDS if any(s.kind == k for s in sections)]
    nav = "".join(f'<a href="#{k}">{esc(KINDS[k])}</a>' for k in kinds)
    parts = []
    for kind in kinds:
        for n, section in enumerate(s for s in sections if s.kind == kind):
            anchor = f' id="{kind}"' if n == 0 else ""
            body = [f"<h2>{esc(section.title)}</h2>"]
            if section.source:
                body.append(f'<p class="source">from {esc(section.source)}</p>')
            if section.notes:
                body.append(
                    '<ul class="notes">' + "".join(f"<li>{esc(t)}</li>" for t in section.notes) + "</ul>"
                )
            body += [figure_html(f) for f in section.figures]
            body += [table_html(t) for t in section.tables]
            if section.gallery:
                body.append(gallery_html(section))
            body += [trace_html(v) for v in section.traces]
            parts.append(f'<section class="{kind}" data-kind="{kind}"{anchor}>{"".join(body)}</section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{''.join(parts)}</main><script>{SCRIPT}</script></body></html>\n"
    )
