"""Render README.md from nbs/index.ipynb without Quarto (nbconvert's Markdown exporter).

    python tools/readme.py          # write README.md
    python tools/readme.py --check  # exit 1 when README.md is stale
"""
import sys, re, nbformat
from pathlib import Path
from nbconvert import MarkdownExporter

def render(nb_path='nbs/index.ipynb')->str:
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells = [c for c in nb.cells if not c.source.lstrip().startswith('#| hide')]
    for c in nb.cells:
        if c.cell_type == 'code': c.source = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|'))
    body, _ = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    body = re.sub(r'\]\((?!https?:|/|#)([^)]+)\)', r'](nbs/\1)', body)  # links relative to nbs/ -> relative to the repo root
    return "<!-- generated from nbs/index.ipynb by tools/readme.py: edit the notebook -->\n\n" + re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'

if __name__ == '__main__':
    root = Path(__file__).resolve().parents[1]
    import os; os.chdir(root)
    text = render()
    if '--check' in sys.argv:
        if Path('README.md').read_text(encoding='utf-8') != text: sys.exit('README.md is stale: run python tools/readme.py')
    else: Path('README.md').write_text(text, encoding='utf-8')
