"""Developer helper: write notebooks from percent-format scripts and back (via jupytext).

    python tools/nbsync.py to-nb  src.py nbs/00_config.ipynb   # percent script -> notebook
    python tools/nbsync.py to-py  nbs/00_config.ipynb out.py    # notebook -> percent script

The notebooks in nbs/ stay the committed source; this only saves hand-editing JSON.
"""
import sys, jupytext, nbformat

def to_nb(src, dst):
    nb = jupytext.read(src, fmt='py:percent')
    nb.metadata = {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}
    for c in nb.cells:
        tags = c.metadata.get('tags')
        c.metadata = {'tags': tags} if tags else {}
        if c.cell_type == 'code': c.outputs, c.execution_count = [], None
    nbformat.validator.normalize(nb)
    nbformat.write(nb, dst)

def to_py(src, dst): jupytext.write(jupytext.read(src), dst, fmt='py:percent')

if __name__ == '__main__':
    cmd, src, dst = sys.argv[1:4]
    {'to-nb': to_nb, 'to-py': to_py}[cmd](src, dst)
