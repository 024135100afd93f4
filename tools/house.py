"""Measure the library the way issue 29 does: line lengths, `;` statements, exported cell sizes, definitions per
exported cell, import circles and private names imported across modules.

    python tools/house.py            # the table
    python tools/house.py --json     # one JSON line
    python tools/house.py --check    # exit 1 when an acceptance bound is broken
"""
from __future__ import annotations
import argparse, ast, io, json, statistics, sys, tokenize
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT/'llamaduo'
NBS = ROOT/'nbs'


def library_files() -> list[Path]:
    "The exported modules (nbdev's index excluded)."
    return sorted(p for p in LIB.glob('*.py') if p.name != '_modidx.py')


def semicolons(src: str) -> int:
    "Number of `;` tokens that separate statements."
    toks = tokenize.generate_tokens(io.StringIO(src).readline)
    return sum(1 for t in toks if t.type == tokenize.OP and t.string == ';')


def exported_cells(only: list[str] | None = None) -> list[str]:
    "The source of every `#| export` / `#| exports` cell of the library notebooks (of the notebooks `only` names)."
    out = []
    for f in sorted(NBS.glob('*.ipynb')):
        if f.name.startswith('_'): continue
        if only and f.stem not in only and f.name not in only: continue
        for c in nbformat.read(f, as_version=4).cells:
            first = c.source.lstrip().split('\n', 1)[0].replace(' ', '')
            if c.cell_type == 'code' and first in ('#|export', '#|exports'): out.append(c.source)
    return out


def definitions(src: str) -> int:
    "Top-level functions and classes a cell defines (public or private)."
    body = '\n'.join(l for l in src.splitlines() if not l.startswith('#|'))
    tree = ast.parse(body)
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return sum(isinstance(n, kinds) for n in tree.body)


def imports() -> dict[str, list[tuple[str, str]]]:
    "For each module: the (module, name) pairs it imports from other llamaduo modules."
    out = {}
    for p in library_files():
        pairs = []
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and (n.level or n.module.startswith('llamaduo')):
                mod = n.module.split('.')[-1] if n.module != 'llamaduo' else ''
                for a in n.names: pairs.append((mod or a.name, a.name))
            elif isinstance(n, ast.Import):
                for a in n.names:
                    if a.name.startswith('llamaduo.'): pairs.append((a.name.split('.')[1], '*'))
        out[p.stem] = pairs
    return out


def top_names(path: Path) -> set[str]:
    "Names a module defines or imports at its top level (what `from module import name` can find)."
    out = set()
    for n in ast.parse(path.read_text()).body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): out.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split('.')[0] for a in n.names)
        elif isinstance(n, (ast.Assign, ast.AnnAssign)):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            for t in targets: out.update(x.id for x in ast.walk(t) if isinstance(x, ast.Name))
    return out


def missing_imports(imps: dict[str, list[tuple[str, str]]]) -> list[str]:
    "Imports of a name the llamaduo module does not define (a lazy import inside a function fails only when run)."
    defined = {p.stem: top_names(p) for p in library_files()}
    return sorted({f'{m} <- {src}.{name}' for m, pairs in imps.items() for src, name in pairs
                   if src in defined and name not in ('*', src) and name not in defined[src]})


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    "Strongly connected components with more than one module (Tarjan)."
    index, low, stack, on, res, i = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = i[0]
        i[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v: break
            if len(comp) > 1: res.append(sorted(comp))
    for v in sorted(graph):
        if v not in index: visit(v)
    return res


def cell_figures(cells: list[str]) -> dict:
    "Size (lines, `#|` directives left out) and definitions of exported cells."
    sizes = sorted(len([l for l in c.splitlines() if not l.startswith('#|')]) for c in cells)
    defs = [definitions(c) for c in cells]
    p90 = sizes[int(0.9*(len(sizes)-1))] if sizes else 0
    return dict(cells=len(cells), cell_median=statistics.median(sizes) if sizes else 0, cell_p90=p90,
                cell_max=max(sizes, default=0), defs_per_cell=round(sum(defs)/max(len(defs), 1), 2),
                over_80=sum(s > 80 for s in sizes), over_40=sum(s > 40 for s in sizes))


def measure() -> dict:
    "Every figure of the issue's table, on the current tree."
    lines, long_, semis, longest = 0, 0, 0, 0
    for p in library_files():
        src = p.read_text()
        ls = src.splitlines()
        lines += len(ls)
        long_ += sum(len(l) > 120 for l in ls)
        longest = max([longest] + [len(l) for l in ls])
        semis += semicolons(src)
    cells = cell_figures(exported_cells())
    imps = imports()
    graph = {m: {src for src, _ in pairs if src != m} for m, pairs in imps.items()}
    private = sorted({f'{m} <- {src}.{name}' for m, pairs in imps.items() for src, name in pairs
                      if name.startswith('_') and src != m})
    return dict(lines=lines, over_120=long_, over_120_pct=round(100*long_/max(lines, 1), 2), longest=longest,
                semicolons=semis, **cells, circles=circles(graph), private_imports=private,
                missing_imports=missing_imports(imps))


def broken(m: dict) -> list[str]:
    "The acceptance bounds of issue 29 that `m` breaks."
    out = []
    if m['over_120_pct'] > 1: out.append(f"{m['over_120_pct']}% of lines over 120 characters (at most 1%)")
    if m['semicolons']: out.append(f"{m['semicolons']} `;` statements (none)")
    if m['cell_median'] > 12: out.append(f"exported cells median {m['cell_median']} lines (at most 12)")
    if m['cell_p90'] > 40: out.append(f"exported cells p90 {m['cell_p90']} lines (at most 40)")
    for c in m['circles']: out.append('import circle: ' + ' <-> '.join(c))
    for p in m['private_imports']: out.append('private name imported across modules: ' + p)
    for p in m['missing_imports']: out.append('imported name the module does not define: ' + p)
    return out


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--json', action='store_true')
    ap.add_argument('--check', action='store_true')
    ap.add_argument('--nb', nargs='+', help='only the exported cells of these notebooks (names or stems)')
    a = ap.parse_args()
    m = cell_figures(exported_cells(a.nb)) if a.nb else measure()
    if a.json: print(json.dumps(m))
    else:
        for k, v in m.items(): print(f'{k:16} {v}')
    if a.check and not a.nb:
        bad = broken(m)
        for b in bad: print('FAIL:', b)
        sys.exit(1 if bad else 0)
