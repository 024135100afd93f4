"""Developer helper: write notebooks from percent-format scripts and back (via jupytext).

    python tools/nbsync.py to-nb  src.py nbs/00_config.ipynb   # percent script -> notebook
    python tools/nbsync.py to-py  nbs/00_config.ipynb out.py    # notebook -> percent script

The notebooks in nbs/ stay the committed source; this only saves hand-editing JSON. Writing over a notebook keeps the
ids of its cells where the cells are the same or edited in place, so the exported modules' cell references (and the
diffs) change only where the cells did.
"""
import sys, difflib, jupytext, nbformat
from pathlib import Path

def keep_ids(old, new):
    "Give `new`'s cells the ids of `old`'s where they match: the same cell, or one edited in place."
    key = lambda c: (c.cell_type, c.source)
    a, b = [key(c) for c in old.cells], [key(c) for c in new.cells]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == 'equal' or (op == 'replace' and i2 - i1 == j2 - j1):
            for i, j in zip(range(i1, i2), range(j1, j2)): new.cells[j].id = old.cells[i].id
    seen = set()
    for c in new.cells:   # an id used twice (a cell split in two): the second gets a fresh one
        if c.id in seen: c.id = nbformat.v4.new_code_cell().id
        seen.add(c.id)

def to_nb(src, dst):
    nb = jupytext.read(src, fmt='py:percent')
    nb.metadata = {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}
    for c in nb.cells:
        tags = c.metadata.get('tags')
        c.metadata = {'tags': tags} if tags else {}
        if c.cell_type == 'code': c.outputs, c.execution_count = [], None
    nbformat.validator.normalize(nb)
    if Path(dst).exists(): keep_ids(nbformat.read(dst, as_version=4), nb)
    nbformat.write(nb, dst)

def to_py(src, dst): jupytext.write(jupytext.read(src), dst, fmt='py:percent')

if __name__ == '__main__':
    cmd, src, dst = sys.argv[1:4]
    {'to-nb': to_nb, 'to-py': to_py}[cmd](src, dst)
