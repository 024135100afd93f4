"""Render README.md from nbs/index.ipynb without Quarto (nbconvert's Markdown exporter).

    python tools/readme.py          # write README.md
    python tools/readme.py --check  # exit 1 when README.md is stale
"""
import sys, re, nbformat
from pathlib import Path
from nbconvert import MarkdownExporter

MARKER = re.compile(r'<!-- metrics-table: (\S+?)(?: zeta=(\d+))? -->')

def tables(text:str, root:Path=Path('nbs'))->str:
    "Replace each `<!-- metrics-table: images/x.csv -->` with that recorded metrics.csv as a table (`loop.metrics_markdown`)."
    import pandas as pd
    from llamaduo.loop import metrics_markdown
    return MARKER.sub(lambda m: metrics_markdown(pd.read_csv(root/m.group(1)), int(m.group(2) or 70)), text)

CSV = re.compile(r'<!-- csv-table: (\S+?) -->')

def csv_table(path:Path)->str:
    "A recorded CSV (tools/record_run.py) as a Markdown table."
    import csv
    from llamaduo.files import md_table
    rows = list(csv.reader(path.open(encoding='utf-8')))
    return md_table(rows[1:], rows[0])

def recorded_tables(text:str, root:Path)->str:
    "A markdown cell with its `metrics-table` and `csv-table` markers replaced by the tables (README and docs site)."
    return CSV.sub(lambda m: csv_table(root/m.group(1)), tables(text, root))

def render(nb_path='nbs/index.ipynb')->str:
    nb = nbformat.read(nb_path, as_version=4)
    nb.metadata['language_info'] = {'name': 'python'}   # code cells as ```python blocks
    for c in nb.cells:
        if c.cell_type == 'markdown': c.source = recorded_tables(c.source, Path(nb_path).parent)
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
