"""Build the docs site offline: the notebooks rendered by mkdocs (material + mkdocs-jupyter), no Quarto needed.

    python tools/docs.py                      # execute the notebooks (as nbdev_test does), render -> site/index.html
    python tools/docs.py --no-execute         # render with the outputs the notebooks have (committed: none)
    python tools/docs.py --run outputs/demo   # add that run's executed cycle/report notebooks + plots ("Example run")
    python tools/docs.py --only 00_config 01_data --out /tmp/site --check

Build source goes to `_docs/` (git-ignored; the notebooks in nbs/ are never modified), the site to `site/`.
Pages: index.ipynb is the home page, architecture.ipynb the import graph, then the phase notebooks in numeric order (`_`-prefixed ones excluded), an
API reference page per module and the example run.  nbdev does the notebook work: `nbdev.test.test_nb` executes
(skipping `#| eval: false`, `tst_flags` and `nbdev_export(` cells), `NBProcessor` with nbdev's own processors
parses the directives and drops `#| hide` cells, and the API pages are `nbdev.showdoc.show_doc` entries (signature,
docstring, docments) of the `#| export`-ed names of the kept library `llamaduo.<module>`, with docments' parameter
tables.  nbdev + Quarto (`nbdev_docs`, nbs/_quarto.yml) still render the same notebooks where Quarto exists.
"""
from __future__ import annotations
import argparse, importlib, inspect, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from unittest import mock
import nbdev.test
from execnb.nbio import mk_cell, read_nb, write_nb
from execnb.shell import CaptureShell
from fastcore.basics import AttrDict, ifnone
from fastcore.docments import DocmentTbl, empty
from nbdev.config import get_config
from nbdev.frontmatter import FrontmatterProc
from nbdev.process import NBProcessor, Processor, extract_directives, first_code_ln
from nbdev.processors import (populate_language, strip_ansi, hide_line, filter_stream_, rm_header_dash,
                              clean_show_doc, clean_magics, hide_, strip_hidden_metadata)
from nbdev.showdoc import BasicMarkdownRenderer, show_doc

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_ENV = dict(HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', HF_DATASETS_OFFLINE='1', TOKENIZERS_PARALLELISM='false',
                   PYTHONHASHSEED='0', MPLBACKEND='Agg')

# ---------------------------------------------------------------- execution: nbdev_test's test_nb
class KeepGoingShell(CaptureShell):
    "The shell `test_nb` runs a notebook in, except that a failing cell is recorded and the run goes on."
    timeout, nb, errors = None, None, []
    def __init__(self, path=None, **kw): super().__init__(path, timeout=self.timeout, **kw)
    def run_all(self, nb, exc_stop=False, preproc=None, **kw):
        def record(c):
            if self.exc: self.errors.append(f'cell {c.idx_}: {type(self.exc).__name__}: {str(self.exc)[:200]}')
        type(self).nb = nb
        super().run_all(nb, exc_stop=False, preproc=preproc, postproc=record)

def execute(nb_path: Path, flags: list[str], timeout: int) -> tuple[list|None, list[str], float]:
    """Execute a notebook with `nbdev.test.test_nb` (its frontmatter, `eval: false`, `tst_flags` and `nbdev_export(`
    skips, cwd = the notebook's folder) in a `KeepGoingShell`; runs in a worker process.
    Returns (the code cells' outputs, or None if test_nb did not run it; errors; seconds)."""
    for k, v in OFFLINE_ENV.items(): os.environ.setdefault(k, v)
    KeepGoingShell.timeout, KeepGoingShell.nb, KeepGoingShell.errors = timeout, None, []
    with mock.patch.object(nbdev.test, 'CaptureShell', KeepGoingShell):
        ok, dt = nbdev.test.test_nb(Path(nb_path), skip_flags=flags, basepath=ROOT, showerr=False)
    errors = KeepGoingShell.errors + ([] if ok else ['test_nb failed outside a cell'])
    nb = KeepGoingShell.nb
    return (None if nb is None else [c.get('outputs', []) for c in nb.cells if c.cell_type == 'code']), errors, dt

# ---------------------------------------------------------------- notebook -> docs notebook (nbdev's processors)
class mkdocs_options(Processor):
    "Quarto's cell options, which nbdev leaves in the source (`echo`, `output`, `include`), as mkdocs-jupyter does them."
    def cell(self, cell):
        if cell.cell_type != 'code': return
        d, lines = extract_directives(cell, remove=False), cell.source.splitlines(True)   # also clean_show_doc's
        cell.source = ''.join(lines[ifnone(first_code_ln(lines), len(lines)):])
        opt = lambda k: ' '.join(d.get(k + ':', [])).lower()
        if not cell.source.strip() or opt('include') == 'false': del cell['source']; return
        if opt('echo') == 'false': cell.metadata.setdefault('tags', []).append('hide_input')
        if opt('output') == 'false': cell.outputs = []

DOC_PROCS = [FrontmatterProc, populate_language, strip_ansi, hide_line, filter_stream_, rm_header_dash,
             clean_show_doc, clean_magics, hide_, strip_hidden_metadata, mkdocs_options]

def docs_nb(nb) -> tuple[AttrDict, str|None, dict]:
    "The docs notebook of `nb` (read with execnb) by nbdev's processors; returns (nb, default_exp module, frontmatter)."
    proc = NBProcessor(nb=nb, procs=DOC_PROCS)
    module = next((c.directives_['default_exp'][0] for c in proc.nb.cells if c.directives_.get('default_exp')), None)
    proc.process()
    fm = getattr(nb, 'frontmatter_', {})
    nb.cells = [c for c in nb.cells if c.cell_type != 'raw']   # the frontmatter (Quarto's) becomes the title again
    if fm.get('title'):
        nb.cells.insert(0, mk_cell(f"# {fm['title']}" + (f"\n\n> {fm['description']}" if fm.get('description') else ''), 'markdown'))
    nb.metadata = {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'},
                   'language_info': {'name': 'python'}}
    return nb, module, fm

# ---------------------------------------------------------------- API reference: nbdev's showdoc on the kept library
def is_model(o) -> bool: return inspect.isclass(o) and hasattr(o, 'model_fields')   # pydantic

class ParamTable(DocmentTbl):
    "docments' parameter table (for a pydantic model: its fields and their descriptions), `|` escaped for Markdown."
    def __init__(self, obj):
        super().__init__(obj)
        if is_model(obj):
            self.returns, self.params = False, list(obj.model_fields)
            self.dm = {k: AttrDict(anno=inspect.formatannotation(f.annotation, obj.__module__), docment=f.description or empty,
                                   default=empty if f.is_required() else f.default if f.default_factory is None
                                   else f'{f.default_factory.__name__}()') for k, f in obj.model_fields.items()}
        for d in self.dm.values():
            for k, v in d.items():
                if k in self._map and v is not empty: d[k] = str(getattr(v, '__name__', v)).replace('|', r'\|').replace('\n', '<br>')
    @property
    def has_docment(self): return self._row_list if is_model(self.obj) else super().has_docment

class ApiEntry(BasicMarkdownRenderer):
    "`show_doc`'s entry (heading, source link, signature with docments, docstring), then the parameter table."
    def __init__(self, sym, **kw):
        super().__init__(sym, **kw)
        if not callable(sym) or not sym.__doc__: self.docs = ''   # not a constant's type's or a base class's docstring
        if is_model(sym): self.dm = f"class {self.nm}({', '.join(b.__name__ for b in sym.__bases__)})"  # not **data
    def _repr_markdown_(self):   # nbdev 2.4.14 looks the source line up by the full name: `#LNone`
        return super()._repr_markdown_().replace('#LNone)', ')') + '\n\n' + str(ParamTable(self.sym)) + '\n'

def api_markdown(module: str, pkg: str, nb_page: str, title: str) -> tuple[str, list[str]]:
    "Markdown API page of `pkg.module`: a `show_doc` entry for every name in `__all__` (notebook order) and its methods."
    mod = importlib.import_module(f'{pkg}.{module}')
    names = list(getattr(mod, '__all__', [n for n in vars(mod) if not n.startswith('_')]))
    out = [f'# `{pkg}.{module}` API\n\nExported from [{title}]({nb_page}) (`#| export` cells), documented by nbdev\'s '
           '`show_doc` from the installed library: signatures, docstrings and per-parameter comments (docments).']
    for n in names:
        obj = getattr(mod, n, None)
        out.append(show_doc(obj, renderer=ApiEntry, name=n, title_level=2)._repr_markdown_())
        for mn, m in (vars(obj).items() if inspect.isclass(obj) else ()):
            f = getattr(m, '__func__', m)
            if mn[0] != '_' and inspect.isfunction(f) and 'pydantic' not in (f.__module__ or ''):
                out.append(show_doc(getattr(obj, mn), renderer=ApiEntry, name=f'{n}.{mn}', title_level=3)._repr_markdown_())
    return re.sub(r'\n{3,}', '\n\n', '\n\n'.join(out)).strip() + '\n', names

# ---------------------------------------------------------------- site
def page_title(stem: str, title: str) -> str:
    m = re.match(r'(\d+)_', stem)
    return f'{m.group(1)} · {title}' if m else title

def build(out='site', build_dir='_docs', execute_nbs=False, run=None, only=None, n_workers=2, timeout=900,
          check=False, quiet=False) -> dict:
    t0 = time.time()
    cfg = get_config(path=ROOT); pkg = cfg.lib_name; flags = cfg.get('tst_flags', '').split()   # as nbdev_test
    nbs_dir = cfg.nbs_path
    out, bdir = Path(out).resolve(), Path(build_dir).resolve()
    docs = bdir/'docs'
    if docs.exists(): shutil.rmtree(docs)
    docs.mkdir(parents=True)
    if (nbs_dir/'images').is_dir(): shutil.copytree(nbs_dir/'images', docs/'images')   # images the notebooks link to
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))

    nbs = sorted(p for p in nbs_dir.glob('[0-9]*.ipynb'))
    if only: nbs = [p for p in nbs if any(p.stem == o or p.stem.startswith(o) or p.stem.split('_', 1)[-1] == o for o in only)]
    arch = [nbs_dir/'architecture.ipynb'] if (nbs_dir/'architecture.ipynb').exists() and not only else []
    pages = [nbs_dir/'index.ipynb'] + arch + nbs   # the home page, the import graph, then the library in order
    report = {'pages': [], 'api': [], 'example': [], 'errors': {}, 'timings': {}}

    # read as committed; executed: test_nb in a fresh worker process per notebook, its outputs put in
    loaded = {p: read_nb(p) for p in pages}
    if execute_nbs:
        say(f'executing {len(pages)} notebooks ({n_workers} at a time) ...')
        import multiprocessing as mp
        with ProcessPoolExecutor(n_workers, mp_context=mp.get_context('spawn'), max_tasks_per_child=1) as ex:
            futs = [ex.submit(execute, p, flags, timeout) for p in pages]
            for p, f in zip(pages, futs):
                outs, errs, dt = f.result()
                for c, o in zip([c for c in loaded[p].cells if c.cell_type == 'code'], outs or []): c.outputs = o
                report['timings'][p.stem] = round(dt, 1)
                if errs: report['errors'][p.stem] = errs
                say(f'  {p.name}: {dt:.1f} s' + (f'  ({len(errs)} error(s): {errs[0]})' if errs else ''))

    # run folder: example section + plots
    run_dir = Path(run) if run else None
    run_pages, plots = [], []
    if run_dir and run_dir.is_dir():
        ex_dir = docs/'example'; ex_dir.mkdir()
        for c in sorted(run_dir.glob('cycle_*/cycle.ipynb')):
            write_nb(docs_nb(read_nb(c))[0], ex_dir/f'{c.parent.name}.ipynb')
            n = int(re.sub(r'\D', '', c.parent.name) or 0)
            run_pages.append((f'Cycle {n}', f'example/{c.parent.name}.ipynb'))
        if (run_dir/'report.ipynb').exists():
            write_nb(docs_nb(read_nb(run_dir/'report.ipynb'))[0], ex_dir/'report.ipynb')
            run_pages.insert(0, ('Report', 'example/report.ipynb'))
        if (run_dir/'plots').is_dir():
            (ex_dir/'plots').mkdir()
            for png in sorted((run_dir/'plots').glob('*.png')): shutil.copy2(png, ex_dir/'plots'/png.name); plots.append(png.name)
        if plots:
            md = '# Example run plots\n\n' + f'From the run folder `{run_dir}`.\n\n' + \
                 '\n\n'.join(f'## {Path(p).stem.replace("_", " ")}\n\n![{p}](plots/{p})' for p in plots) + '\n'
            (ex_dir/'plots.md').write_text(md, encoding='utf-8'); run_pages.append(('Plots', 'example/plots.md'))
        report['example'] = [p for _, p in run_pages]

    # library notebooks -> docs notebooks + API pages
    nav_phases, nav_api, home = [], [], None
    site_title, site_desc = cfg.get('title', pkg), cfg.get('description', '')
    sys.path.insert(0, str(Path(__file__).parent))
    from readme import recorded_tables
    for p in pages:
        nb, module, fm = docs_nb(loaded[p])
        title = fm.get('title') or p.stem
        for c in nb.cells:   # the recorded runs' and benches' tables (`<!-- csv-table: ... -->`), as in the README
            if c.cell_type == 'markdown': c.source = recorded_tables(c.source, nbs_dir)
        if p.stem == 'index':
            site_title, site_desc = fm.get('title') or site_title, fm.get('description') or site_desc
            stems = {q.stem for q in nbs}
            for c in nb.cells:   # link the phases table to the pages
                if c.cell_type == 'markdown':
                    c.source = re.sub(r'`(\d\d_\w+)`', lambda m: f'[`{m.group(1)}`]({m.group(1)}.html)' if m.group(1) in stems else m.group(0), c.source)
            if plots:
                main = 'score_vs_volume.png' if 'score_vs_volume.png' in plots else plots[0]
                nb.cells.append(mk_cell('## Example run\n\nScore vs. data volume from the demo run '
                                        f'(`{run_dir}`), from its run folder’s `plots/`; see the '
                                        '[report](example/report.html) and the executed cycle notebooks.\n\n'
                                        f'![score vs volume](example/plots/{main})', 'markdown'))
            write_nb(nb, docs/'index.ipynb'); home = 'index.ipynb'
            continue
        if module:
            try:
                md, names = api_markdown(module, pkg, f'../{p.stem}.html', title)
                (docs/'api').mkdir(exist_ok=True); (docs/'api'/f'{module}.md').write_text(md, encoding='utf-8')
                nav_api.append((f'{pkg}.{module}', f'api/{module}.md')); report['api'].append(module)
                nb.cells.insert(1, mk_cell(f'*Module `{pkg}.{module}` — [API reference](api/{module}.html) '   # under the title
                                           f'({len(names)} exported names).*', 'markdown'))
            except Exception as e:
                report['errors'].setdefault(p.stem, []).append(f'API page: {type(e).__name__}: {e}')
                say(f'  WARNING: API page for {pkg}.{module}: {type(e).__name__}: {e}')
        write_nb(nb, docs/p.name)
        nav_phases.append((page_title(p.stem, title), p.name)); report['pages'].append(p.stem)

    # styles: nbs/styles.css is Quarto's; a few rules for the notebook pages
    (docs/'assets').mkdir(exist_ok=True)
    (docs/'assets'/'extra.css').write_text(
        '.jupyter-wrapper .jp-InputPrompt, .jupyter-wrapper .jp-OutputPrompt {display:none}\n'
        '.jupyter-wrapper .jp-RenderedHTMLCommon blockquote {border-left:.2rem solid var(--md-primary-fg-color);'
        'color:var(--md-default-fg-color--light);font-size:1.05em}\n'
        '.md-typeset table:not([class]) {font-size:.7rem}\n', encoding='utf-8')

    def yl(items): return [{t: f} for t, f in items]
    nav = [{'Home': home}, {'Phases': yl(nav_phases)}]
    if nav_api: nav.append({'API reference': yl(nav_api)})
    if run_pages: nav.append({'Example run': yl(run_pages)})
    mk = {
        'site_name': site_title, 'site_description': site_desc, 'docs_dir': 'docs', 'site_dir': str(out),
        'use_directory_urls': False,    # plain NAME.html files: browsable from file:// without a server
        'repo_url': cfg.get('git_url', ''),
        'theme': {'name': 'material', 'font': False, 'features': ['navigation.sections', 'navigation.top', 'content.code.copy'],
                  'palette': {'primary': 'indigo'}},
        'extra_css': ['assets/extra.css'],
        'markdown_extensions': ['tables', 'admonition', 'attr_list', 'pymdownx.superfences', 'pymdownx.highlight', 'toc'],
        'plugins': ['search', 'offline',
                    {'mkdocs-jupyter': {'include': ['*.ipynb'], 'execute': False, 'include_source': False,
                                        'ignore_h1_titles': True, 'allow_errors': True, 'no_prompt': True,
                                        'remove_tag_config': {'remove_input_tags': ['hide_input']},
                                        'include_requirejs': False,
                                        'custom_mathjax_url': 'data:text/javascript,',   # no CDN: offline
                                        'cache': False}}],
        'nav': nav,
    }
    import yaml
    (bdir/'mkdocs.yml').write_text(yaml.safe_dump(mk, sort_keys=False, allow_unicode=True), encoding='utf-8')
    if out.exists(): shutil.rmtree(out)
    t1 = time.time()
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '-q', '-f', str(bdir/'mkdocs.yml')], cwd=bdir,
                       capture_output=True, text=True, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    report['timings']['mkdocs_build'] = round(time.time() - t1, 1); report['timings']['total'] = round(time.time() - t0, 1)
    if r.returncode: sys.stderr.write(r.stdout + r.stderr); raise SystemExit(f'mkdocs build failed ({r.returncode})')
    warn = [l for l in (r.stdout + r.stderr).splitlines() if 'WARNING' in l]
    for w in warn: say('  mkdocs: ' + w.strip())
    report['index'] = str(out/'index.html'); report['site'] = str(out)
    problems = check_site(out, report, plots) if check else []
    report['problems'] = problems
    return report

# material's offline plugin adds this shim so search works from file:// when a network exists; pages render without it
OPTIONAL_REMOTE = {'https://unpkg.com/iframe-worker/shim'}

def check_site(out: Path, report: dict, plots: list[str]) -> list[str]:
    "What a reader would look for: home page, a page per phase, API entries, example plots; nothing from a CDN."
    probs = []
    if not (out/'index.html').exists(): probs.append('no index.html')
    for s in report['pages']:
        if not (out/f'{s}.html').exists(): probs.append(f'no page for {s}')
    for m in report['api']:
        f = out/'api'/f'{m}.html'
        if not f.exists(): probs.append(f'no API page for {m}')
    known = {'config': 'load_recipe', 'data': 'split_coverage', 'demo': 'verify', 'judge': 'compute_metrics'}
    for m, n in known.items():
        f = out/'api'/f'{m}.html'
        if m in report['api'] and (not f.exists() or f'id="{n}"' not in f.read_text(encoding='utf-8')):
            probs.append(f'API entry {n} missing from api/{m}.html')
    for p in plots:
        if not (out/'example'/'plots'/p).exists(): probs.append(f'plot {p} not in site')
    for img in re.findall(r'<img[^>]+src="([^"]+)"', (out/'index.html').read_text(encoding='utf-8')):
        if not re.match(r'https?:|data:', img) and not (out/img).exists(): probs.append(f'home page image {img} missing')
    if plots and 'example/plots/' not in (out/'index.html').read_text(encoding='utf-8'): probs.append('home page lacks the demo plot')
    for h in out.rglob('*.html'):
        t = h.read_text(encoding='utf-8', errors='replace')
        for u in re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', t):
            if u in OPTIONAL_REMOTE: continue
            probs.append(f'{h.relative_to(out)} loads {u}'); break
    if report['errors']: probs += [f'{k}: {e}' for k, v in report['errors'].items() for e in v[:3]]
    return probs

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='site', help='site folder (default site/)')
    ap.add_argument('--build', default='_docs', help='build source folder (default _docs/, git-ignored)')
    ap.add_argument('--execute', dest='execute', action='store_true', default=True,
                    help='execute the library notebooks first, like nbdev_test (default; ~2 min for all on 2 cores)')
    ap.add_argument('--no-execute', dest='execute', action='store_false', help='render the outputs the notebooks have')
    ap.add_argument('--run', default=None, help='run folder for the "Example run" section (default outputs/demo if it exists)')
    ap.add_argument('--no-run', action='store_true', help='no example run section')
    ap.add_argument('--only', nargs='+', help='only these notebooks (e.g. 00_config 01_data); index is always in')
    ap.add_argument('--workers', type=int, default=2, help='notebooks executed at a time')
    ap.add_argument('--timeout', type=int, default=900, help='per-cell timeout when executing (s)')
    ap.add_argument('--check', action='store_true', help='verify the built site; exit 1 on problems')
    a = ap.parse_args(argv)
    os.chdir(ROOT)
    run = None if a.no_run else (a.run or ('outputs/demo' if (ROOT/'outputs/demo').is_dir() else None))
    if a.run and not Path(a.run).is_dir(): sys.exit(f'--run {a.run}: no such folder')
    rep = build(a.out, a.build, a.execute, run, a.only, a.workers, a.timeout, check=a.check)
    print(f"{len(rep['pages'])} phase pages, {len(rep['api'])} API pages, {len(rep['example'])} example pages; "
          f"timings (s): {json.dumps(rep['timings'])}")
    for k, v in rep['errors'].items(): print(f'  errors in {k}: ' + '; '.join(v[:3]))
    if a.check:
        for p in rep['problems']: print('  CHECK FAIL: ' + p)
        if rep['problems']: sys.exit(1)
        print('check: ok')
    print(rep['index'])

if __name__ == '__main__': main()
