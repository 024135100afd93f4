"""Draw the package's import graph with pydeps (graphviz) into nbs/images/architecture.svg.

    python tools/architecture.py            # redraw (needs `pip install pydeps` and graphviz's `dot`)
    python tools/architecture.py --check    # the drawn modules are the notebooks' modules (no graphviz needed)

Arrows point from a module to the modules it imports (`--reverse`), function-level imports included (pydeps reads
the byte code). nbs/architecture.ipynb shows the picture and checks it against the notebook list.
"""
import argparse, json, re, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT/'nbs'/'images'/'architecture.svg'


def notebook_modules() -> dict[str, str]:
    "module -> notebook, from each library notebook's `#| default_exp`."
    out = {}
    for nb in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        for c in cells:
            m = re.search(r'#\|\s*default_exp\s+(\w+)', ''.join(c['source']))
            if c['cell_type'] == 'code' and m: out[m.group(1)] = nb.stem
    return out


def drawn_modules(svg: Path = SVG) -> set[str]:
    "The modules that are nodes of the drawing."
    titles = re.findall(r'<title>([^<]*)</title>', svg.read_text())
    return {t.removeprefix('llamaduo_') for t in titles
            if '&#45;&gt;' not in t and t.startswith('llamaduo_')}


def draw(svg: Path = SVG):
    "Run pydeps over the installed package (the cwd is a temp folder, so it reads the files under llamaduo/)."
    cmd = [sys.executable, '-m', 'pydeps', str(ROOT/'llamaduo'), '--only', 'llamaduo', '--no-show', '-T', 'svg',
           '-o', str(svg), '--reverse', '--rankdir', 'TB', '--rmprefix', 'llamaduo.', '--max-bacon', '0']
    subprocess.run(cmd, check=True, cwd=tempfile.mkdtemp())


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--check', action='store_true')
    a = ap.parse_args()
    if not a.check: draw()
    want, got = set(notebook_modules()), drawn_modules()
    if want != got:
        print(f'architecture.svg is stale: missing {sorted(want - got)}, extra {sorted(got - want)}; '
              'run python tools/architecture.py')
        sys.exit(1)
    print(f'{SVG.relative_to(ROOT)}: {len(got)} modules, one per notebook')
