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
    r = subprocess.run([sys.executable, 'tools/docs.py', '--only', '00_config', '01_data', '--out', str(out),
                        '--build', str(build), '--run', str(run), '--check', '--execute'],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'check: ok' in r.stdout and r.stdout.strip().splitlines()[-1] == str(out/'index.html')
    # pages: home, the two phases in order, API pages, the example run with its plot
    home = (out/'index.html').read_text()
    for f in ['00_config.html', '01_data.html', 'api/config.html', 'api/data.html', 'example/report.html',
              'example/cycle_00.html', 'example/cycle_01.html', 'example/plots/score_vs_volume.png', 'search/search_index.js']:
        assert (out/f).exists(), f
    nav = re.findall(r'href="(00_config|01_data)\.html"', home)
    assert nav and nav.index('00_config') <= nav.index('01_data')
    assert 'example/plots/score_vs_volume.png' in home and 'Move a task off a paid service LLM' in home
    # API entries from the kept library: signature, docstring, per-parameter docments
    api = (out/'api'/'config.html').read_text()
    assert 'id="load_recipe"' in api and 'id="atomic_write"' in api and 'destination file' in api
    assert 'id="split_coverage"' in (out/'api'/'data.html').read_text()
    # nbdev directives stripped, hidden cells dropped; the example's committed outputs shown
    page = (out/'00_config.html').read_text()
    assert '#| export' not in page and '#| hide' not in page and 'default_exp' not in page
    assert 'class _Boom' not in page            # a `#| hide` cell of 00_config
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

def test_directives():
    sys.path.insert(0, str(ROOT/'tools'))
    import docs
    d, src = docs.directives('#| export\n#| eval: false\ndef f(): pass')
    assert d == {'export': '', 'eval': 'false'} and src == 'def f(): pass'
    assert docs.skip_exec(d, ['slow']) and docs.skip_exec({'slow': ''}, ['slow']) and not docs.skip_exec({'export': ''}, ['slow'])
    assert docs.directives('#| default_exp config')[0] == {'default_exp': 'config'}
