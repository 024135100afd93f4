"The offline docs site (tools/docs.py): built for a subset of notebooks, with a fake run folder, checked as a reader would."
import json, re, shutil, subprocess, sys
from pathlib import Path
import nbformat, pytest

ROOT = Path(__file__).resolve().parents[1]

def fake_run(d: Path) -> Path:
    "A run folder shaped like `llamaduo demo`'s: cycle_*/cycle.ipynb, report.ipynb, plots/score_vs_volume.png."
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    for i in (0, 1):
        (d/f'cycle_{i:02d}').mkdir(parents=True)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f'# Cycle {i}\n> one cycle'),
                                             nbformat.v4.new_code_cell('#| hide\nsecret_setup = 1'),
                                             nbformat.v4.new_code_cell(f'print("cycle {i} metrics")')])
        nb.cells[2].outputs = [nbformat.v4.new_output('stream', name='stdout', text=f'CYCLE{i}-OUTPUT\n')]
        nbformat.write(nb, d/f'cycle_{i:02d}'/'cycle.ipynb')
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('# Run report\n> all cycles')]), d/'report.ipynb')
    (d/'plots').mkdir()
    fig, ax = plt.subplots(figsize=(3, 2)); ax.plot([100, 200, 400], [40, 55, 71], marker='o'); ax.set_title('score vs volume')
    fig.savefig(d/'plots'/'score_vs_volume.png'); plt.close(fig)
    return d

def test_docs_site(tmp_path):
    run = fake_run(tmp_path/'run')
    out, build = tmp_path/'site', tmp_path/'_docs'
    r = subprocess.run([sys.executable, 'tools/docs.py', '--only', '00_config', '00a_files', '01_data', '--out', str(out),
                        '--build', str(build), '--run', str(run), '--check', '--execute'],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'check: ok' in r.stdout and r.stdout.strip().splitlines()[-1] == str(out/'index.html')
    # pages: home, the two phases in order, API pages, the example run with its plot
    home = (out/'index.html').read_text()
    for f in ['00_config.html', '00a_files.html', '01_data.html', 'api/config.html', 'api/files.html', 'api/data.html', 'example/report.html',
              'example/cycle_00.html', 'example/cycle_01.html', 'example/plots/score_vs_volume.png', 'search/search_index.js']:
        assert (out/f).exists(), f
    nav = re.findall(r'href="(00_config|01_data)\.html"', home)
    assert nav and nav.index('00_config') <= nav.index('01_data')
    assert 'example/plots/score_vs_volume.png' in home and 'Move a task off a paid service LLM' in home
    # API entries from the kept library: signature, docstring, per-parameter docments
    api = (out/'api'/'files.html').read_text()
    assert 'id="load_recipe"' in (out/'api'/'config.html').read_text()
    assert 'id="atomic_write"' in api and 'destination file' in api
    # show_doc's signature, docments' parameter table (`str | Path` kept in one cell), a pydantic model's fields table
    assert 'atomic_write' in re.sub(r'<[^>]+>', '', api.split('id="atomic_write"')[1].split('<table>')[0])
    tbl = api.split('id="atomic_write"')[1].split('<table>')[1].split('</table>')[0]
    assert re.search(r'<td>path</td>\s*<td>str \| Path</td>\s*<td>destination file</td>', tbl), tbl
    fields = (out/'api'/'config.html').read_text().split('id="datacfg"')[1].split('<table>')[1].split('</table>')[0]
    assert re.search(r'<td>test_frac</td>\s*<td>float</td>\s*<td>0.2</td>\s*<td>share of each category held out', fields), fields
    assert 'id="split_coverage"' in (out/'api'/'data.html').read_text()
    # nbdev directives stripped, hidden cells dropped; the example's committed outputs shown
    page = (out/'00a_files.html').read_text()
    assert '#| export' not in page and '#| hide' not in page and 'default_exp' not in page
    assert 'class _Boom' not in page            # a `#| hide` cell of 00a_files
    assert 'class="jp-OutputArea-child' in (out/'01_data.html').read_text()   # executed: examples show outputs
    cyc = (out/'example'/'cycle_00.html').read_text()
    assert 'CYCLE0-OUTPUT' in cyc and 'secret_setup' not in cyc
    # offline: no CDN scripts or fonts (material's optional file:// search shim aside)
    for h in out.rglob('*.html'):
        for u in re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', h.read_text()):
            assert u == 'https://unpkg.com/iframe-worker/shim', (h, u)
    # a person's look: render the home page with headless chromium when there is one
    chrome = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
    if chrome:
        png = tmp_path/'home.png'
        subprocess.run([chrome, '--headless', '--no-sandbox', '--disable-gpu', '--window-size=1280,1600',
                        f'--screenshot={png}', (out/'index.html').as_uri()], capture_output=True, timeout=60)
        assert png.exists() and png.stat().st_size > 20_000

def _docs_module():
    sys.path.insert(0, str(ROOT/'tools'))
    import docs
    return docs

def test_docs_nb(tmp_path):
    "nbdev's processors turn a notebook into the docs notebook: directives parsed by nbdev, Quarto options done for mkdocs."
    docs = _docs_module()
    from execnb.nbio import read_nb
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[md('# Widgets\n> all about widgets'), code('#| default_exp widgets'),
        code('#| export\ndef f(x): return x'), code('#| hide\nsecret = 1'), code('#|eval: false\nslow_thing()'),
        code('#| echo: false\nprint("shown")'), code('#| output: false\nnoisy()'), code('#| include: false\nquiet = 1'),
        code('show_doc(f)')])
    nb.cells[6].outputs = [nbformat.v4.new_output('stream', name='stdout', text='NOISE\n')]
    nbformat.write(nb, tmp_path/'w.ipynb')
    d, module, fm = docs.docs_nb(read_nb(tmp_path/'w.ipynb'))
    assert module == 'widgets' and fm['title'] == 'Widgets' and fm['description'] == 'all about widgets'
    src = [c.source for c in d.cells]
    assert src == ['# Widgets\n\n> all about widgets', 'def f(x): return x', 'slow_thing()', 'print("shown")', 'noisy()', 'show_doc(f)']
    tags = {c.source: c.metadata.get('tags', []) for c in d.cells}
    assert 'hide_input' in tags['print("shown")'] and 'hide_input' in tags['show_doc(f)']   # echo: false; show_doc by clean_show_doc
    assert d.cells[4].outputs == []                                                        # output: false

def test_execute(tmp_path):
    "Execution is nbdev_test's (skips `eval: false`, tst_flags, `nbdev_export(`; cwd = the notebook's folder) but goes past errors."
    docs = _docs_module()
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from nbdev.config import get_config
    flags = get_config(path=ROOT).tst_flags.split()
    assert 'slow' in flags
    code = nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('# T'), code('x = 41'),
        code('#| eval: false\nprint("EVAL-RAN")'), code('#| slow\nprint("SLOW-RAN")'), code('1/0'),
        code('import os; print("after", x + 1, os.getcwd())'), code('nbdev_export()')])
    nbformat.write(nb, tmp_path/'t.ipynb')
    with ProcessPoolExecutor(1, mp_context=mp.get_context('spawn')) as ex:
        outs, errors, dt = ex.submit(docs.execute, tmp_path/'t.ipynb', flags, 60).result()
    assert len(outs) == 6 and outs[1] == outs[2] == outs[5] == []
    assert [o['ename'] for o in outs[3] if o['output_type'] == 'error'] == ['ZeroDivisionError']
    assert len(errors) == 1 and 'ZeroDivisionError' in errors[0]
    assert ''.join(outs[4][0]['text']).split() == ['after', '42', str(tmp_path)]
