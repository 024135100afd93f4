"""Build the docs site offline: the notebooks rendered by mkdocs (material + mkdocs-jupyter), no Quarto needed.

    python tools/docs.py                      # execute the notebooks (as nbdev_test does), render -> site/index.html
    python tools/docs.py --no-execute         # render with the outputs the notebooks have (committed: none)
    python tools/docs.py --run outputs/demo   # add that run's executed cycle/report notebooks + plots ("Example run")
    python tools/docs.py --only 00_config 01_data --out /tmp/site --check

Build source goes to `_docs/` (git-ignored; the notebooks in nbs/ are never modified), the site to `site/`.
Pages: index.ipynb is the home page, then the phase notebooks in numeric order (`_`-prefixed ones excluded), an
API reference page per module (signatures, docstrings and per-parameter docments of the `#| export`-ed names, read
from the kept library `llamaduo.<module>`), and the example run.  nbdev directives are stripped, `#| hide` cells
dropped (still executed), `#| eval: false` and `slow|gpu|api` flagged cells not executed.  nbdev + Quarto
(`nbdev_docs`, nbs/_quarto.yml) still render the same notebooks where Quarto exists.
"""
from __future__ import annotations
import argparse, ast, configparser, copy, importlib, inspect, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
_DIR = re.compile(r'^\s*#\s?\|\s?(.*?)\s*$')

def settings() -> dict:
    cp = configparser.ConfigParser(); cp.read(ROOT/'settings.ini')
    return dict(cp['DEFAULT'])

def directives(src: str) -> tuple[dict, str]:
    "Leading `#| ...` lines of a code cell as {name: value}, and the source without them."
    lines, d = src.splitlines(), {}
    i = 0
    while i < len(lines):
        m = _DIR.match(lines[i])
        if not m:
            if lines[i].strip() == '' and i == 0: i += 1; continue
            break
        k, _, v = m.group(1).partition(':') if ':' in m.group(1) else (m.group(1).split(' ')[0], '', ' '.join(m.group(1).split(' ')[1:]))
        d[k.strip()] = v.strip()
        i += 1
    return d, '\n'.join(lines[i:]).strip('\n')

def _false(v) -> bool: return str(v).strip().lower() in ('false', 'no', '0')

def title_summary(nb) -> tuple[str, str]:
    for c in nb.cells:
        if c.cell_type != 'markdown': continue
        t = re.search(r'^#\s+(.+)$', c.source, re.M); s = re.search(r'^>\s*(.+)$', c.source, re.M)
        return (t.group(1).strip() if t else ''), (s.group(1).strip() if s else '')
    return '', ''

def skip_exec(d: dict, flags: list[str]) -> bool:
    return _false(d.get('eval', 'true')) or any(f in d for f in flags)

# ---------------------------------------------------------------- execution
def execute(nb_path: Path, flags: list[str], timeout: int) -> tuple[str, list[str], float]:
    """Execute a notebook the way `nbdev_test` does (execnb's CaptureShell, cwd = its folder, `#| eval: false`,
    `tst_flags` and `nbdev_export(` cells skipped) but without stopping at an error; runs in a worker process.
    Returns (the notebook with outputs as JSON, errors, seconds)."""
    from execnb.shell import CaptureShell
    from execnb.nbio import read_nb, nb2str
    for k, v in dict(HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', HF_DATASETS_OFFLINE='1', TOKENIZERS_PARALLELISM='false',
                     PYTHONHASHSEED='0', MPLBACKEND='Agg').items(): os.environ.setdefault(k, v)
    t0, errors = time.time(), []
    nb = read_nb(nb_path)
    def no_eval(c):
        return c.cell_type != 'code' or 'nbdev_export' + '(' in c.source or skip_exec(directives(c.source)[0], flags)
    sh = CaptureShell(nb_path, timeout=timeout)
    cwd = os.getcwd(); os.chdir(nb_path.parent); sys.path.insert(0, str(ROOT))
    try:
        for i, c in enumerate(nb.cells):
            if no_eval(c): continue
            sh.cell(c)
            if sh.exc: errors.append(f'cell {i}: {type(sh.exc).__name__}: {str(sh.exc)[:200]}')
    except Exception as e: errors.append(f'{type(e).__name__}: {str(e)[:300]}')
    finally: os.chdir(cwd)
    return nb2str(nb), errors, time.time() - t0

# ---------------------------------------------------------------- notebook -> docs notebook
def clean_for_docs(nb) -> tuple[nbformat.NotebookNode, str|None]:
    "Strip nbdev directives, drop hidden cells; returns (nb, default_exp module)."
    module, cells = None, []
    for c in nb.cells:
        if c.cell_type == 'raw': continue
        if c.cell_type != 'code': cells.append(c); continue
        d, src = directives(c.source)
        if 'default_exp' in d: module = d['default_exp'].split()[0] if d['default_exp'] else module
        if 'hide' in d or _false(d.get('include', 'true')) or not src.strip(): continue
        c.source = src
        c.metadata = {k: v for k, v in c.metadata.items() if k in ('tags',)}
        if _false(d.get('echo', 'true')): c.metadata.setdefault('tags', []).append('hide_input')
        if _false(d.get('output', 'true')): c.outputs = []
        cells.append(c)
    nb.cells = cells
    nb.metadata = {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'},
                   'language_info': {'name': 'python'}}
    return nb, module

# ---------------------------------------------------------------- API reference (from the kept library)
def _unq(s: str) -> str:
    "Annotations are strings under `from __future__ import annotations`: show them unquoted."
    return re.sub(r"(:\s|->\s)'([^']*)'", r'\1\2', s)

def _sig(name, obj, drop_first=False) -> str:
    try:
        sig = inspect.signature(obj)
        if drop_first and sig.parameters: sig = sig.replace(parameters=list(sig.parameters.values())[1:])
        s = str(sig)
    except (TypeError, ValueError): s = '(...)'
    return f'{name}{_unq(s)}'

def _esc(s) -> str: return str(s).replace('|', '\\|').replace('\n', ' ')

def _fmt_anno(a) -> str:
    if a is inspect.Parameter.empty or a is None: return ''
    return a if isinstance(a, str) else getattr(a, '__name__', str(a)).replace('typing.', '')

def _params_table(f) -> str:
    from fastcore.docments import docments
    try: dm = docments(f, full=True)
    except Exception: return ''
    rows, any_doc = [], False
    for k, v in dm.items():
        if k in ('self', 'cls'): continue
        doc, anno, dflt = _esc(v.get('docment') or ''), _esc(_fmt_anno(v.get('anno'))), v.get('default')
        dflt = '' if dflt is inspect.Parameter.empty else _esc(f'`{dflt!r}`')
        any_doc = any_doc or bool(doc)
        if k == 'return':
            if doc or anno: rows.append(f'| **returns** | {("`"+anno+"`") if anno else ""} | | {doc} |')
            continue
        rows.append(f'| `{k}` | {("`"+anno+"`") if anno else ""} | {dflt} | {doc} |')
    if not any_doc: return ''   # no docments at all: the signature says it all
    return '\n| | type | default | details |\n|---|---|---|---|\n' + '\n'.join(rows) + '\n'

def _doc(obj) -> str: return inspect.cleandoc(obj.__doc__) if getattr(obj, '__doc__', None) else ''

def api_markdown(module: str, pkg: str, nb_page: str, title: str) -> tuple[str, list[str]]:
    "Markdown API page of `pkg.module`: every name in `__all__`, in notebook order."
    mod = importlib.import_module(f'{pkg}.{module}')
    names = list(getattr(mod, '__all__', [n for n in vars(mod) if not n.startswith('_')]))
    out = [f'# `{pkg}.{module}` API', '', f'Exported from [{title}]({nb_page}) (`#| export` cells). '
           f'Signatures, docstrings and per-parameter comments are read from the installed library.', '']
    for n in names:
        obj = getattr(mod, n, None)
        out += [f'## {n}', '']
        if inspect.isclass(obj):
            bases = ', '.join(b.__name__ for b in obj.__bases__ if b is not object)
            init = obj.__init__ if '__init__' in vars(obj) else None
            fields = getattr(obj, 'model_fields', None) if hasattr(obj, 'model_fields') else None
            code = [f'class {n}({bases}):' if bases else f'class {n}:']
            if init: code.append(_sig(n, init, drop_first=True))
            elif fields is None and not issubclass(obj, BaseException): code.append(_sig(n, obj))
            out += ['```python', *code, '```', '', _doc(obj), '']
            if init: out.append(_params_table(init))
            if fields:
                rows = []
                for fn, fi in fields.items():
                    dflt = 'required' if fi.is_required() else ('factory' if fi.default_factory is not None else f'`{fi.default!r}`')
                    an = fi.annotation.__name__ if isinstance(fi.annotation, type) else str(fi.annotation).replace('typing.', '')
                    rows.append(f"| `{fn}` | `{_esc(an)}` | {_esc(dflt)} | {_esc(fi.description or '')} |")
                out += ['| field | type | default | details |', '|---|---|---|---|', *rows, '']
            for mn, m in vars(obj).items():
                f = m.__func__ if isinstance(m, (classmethod, staticmethod)) else m
                if mn.startswith('_') or not inspect.isfunction(f) or 'pydantic' in (f.__module__ or ''): continue
                pre = '@classmethod\n' if isinstance(m, classmethod) else '@staticmethod\n' if isinstance(m, staticmethod) else ''
                s = _sig(mn, f, drop_first=not isinstance(m, staticmethod))
                out += [f'### {n}.{mn}', '', '```python', f'{pre}{n}.{s}', '```', '', _doc(f), '', _params_table(f)]
        elif callable(obj):
            out += ['```python', _sig(n, obj), '```', '', _doc(obj), '', _params_table(obj)]
        else:
            r = repr(obj); r = r if len(r) <= 300 else r[:300] + ' …'
            out += ['```python', f'{n} = {r}', '```', '']
    return re.sub(r'\n{3,}', '\n\n', '\n'.join(out)).strip() + '\n', names

# ---------------------------------------------------------------- site
def md_cell(src: str): return nbformat.v4.new_markdown_cell(src)

def page_title(stem: str, title: str) -> str:
    m = re.match(r'(\d+)_', stem)
    return f'{m.group(1)} · {title}' if m else title

def build(out='site', build_dir='_docs', execute_nbs=False, run=None, only=None, n_workers=2, timeout=900,
          check=False, quiet=False) -> dict:
    t0 = time.time()
    cfg = settings(); pkg = cfg.get('lib_name', 'llamaduo'); flags = [f for f in cfg.get('tst_flags', '').split('|') if f]
    nbs_dir = ROOT/cfg.get('nbs_path', 'nbs')
    out, bdir = Path(out).resolve(), Path(build_dir).resolve()
    docs = bdir/'docs'
    if docs.exists(): shutil.rmtree(docs)
    docs.mkdir(parents=True)
    if (nbs_dir/'images').is_dir(): shutil.copytree(nbs_dir/'images', docs/'images')   # images the notebooks link to
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))

    nbs = sorted(p for p in nbs_dir.glob('[0-9]*.ipynb'))
    if only: nbs = [p for p in nbs if any(p.stem == o or p.stem.startswith(o) or p.stem.split('_', 1)[-1] == o for o in only)]
    pages = [nbs_dir/'index.ipynb'] + nbs
    report = {'pages': [], 'api': [], 'example': [], 'errors': {}, 'timings': {}}

    # execute (in parallel, each in its own kernel) or read as committed
    loaded = {}
    if execute_nbs:
        say(f'executing {len(pages)} notebooks ({n_workers} at a time) ...')
        import multiprocessing as mp
        with ProcessPoolExecutor(n_workers, mp_context=mp.get_context('spawn'), max_tasks_per_child=1) as ex:
            futs = [ex.submit(execute, p, flags, timeout) for p in pages]
            for p, f in zip(pages, futs):
                nbjs, errs, dt = f.result()
                loaded[p] = nbformat.reads(nbjs, as_version=4); report['timings'][p.stem] = round(dt, 1)
                if errs: report['errors'][p.stem] = errs
                say(f'  {p.name}: {dt:.1f} s' + (f'  ({len(errs)} error(s): {errs[0]})' if errs else ''))
    else:
        for p in pages: loaded[p] = nbformat.read(p, as_version=4)

    # run folder: example section + plots
    run_dir = Path(run) if run else None
    run_pages, plots = [], []
    if run_dir and run_dir.is_dir():
        ex_dir = docs/'example'; ex_dir.mkdir()
        for c in sorted(run_dir.glob('cycle_*/cycle.ipynb')):
            nb, _ = clean_for_docs(nbformat.read(c, as_version=4))
            dst = ex_dir/f'{c.parent.name}.ipynb'; nbformat.write(nb, dst)
            n = int(re.sub(r'\D', '', c.parent.name) or 0)
            run_pages.append((f'Cycle {n}', f'example/{dst.name}'))
        if (run_dir/'report.ipynb').exists():
            nb, _ = clean_for_docs(nbformat.read(run_dir/'report.ipynb', as_version=4))
            nbformat.write(nb, ex_dir/'report.ipynb'); run_pages.insert(0, ('Report', 'example/report.ipynb'))
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
    for p in pages:
        nb = loaded[p]
        title, summary = title_summary(nb)
        nb, module = clean_for_docs(nb)
        if p.stem == 'index':
            site_title, site_desc = title or site_title, summary or site_desc
            stems = {q.stem for q in nbs}
            for c in nb.cells:   # link the phases table to the pages
                if c.cell_type == 'markdown':
                    c.source = re.sub(r'`(\d\d_\w+)`', lambda m: f'[`{m.group(1)}`]({m.group(1)}.html)' if m.group(1) in stems else m.group(0), c.source)
            if plots:
                main = 'score_vs_volume.png' if 'score_vs_volume.png' in plots else plots[0]
                nb.cells.append(md_cell('## Example run\n\nScore vs. data volume from the demo run '
                                        f'(`{run_dir}`), from its run folder’s `plots/`; see the '
                                        '[report](example/report.html) and the executed cycle notebooks.\n\n'
                                        f'![score vs volume](example/plots/{main})'))
            nbformat.write(nb, docs/'index.ipynb'); home = 'index.ipynb'
            continue
        if module:
            try:
                md, names = api_markdown(module, pkg, f'../{p.stem}.html', title or p.stem)
                (docs/'api').mkdir(exist_ok=True); (docs/'api'/f'{module}.md').write_text(md, encoding='utf-8')
                nav_api.append((f'{pkg}.{module}', f'api/{module}.md')); report['api'].append(module)
                # under the summary: a pointer to the API page
                for i, c in enumerate(nb.cells):
                    if c.cell_type == 'markdown':
                        nb.cells.insert(i + 1, md_cell(f'*Module `{pkg}.{module}` — [API reference](api/{module}.html) '
                                                       f'({len(names)} exported names).*')); break
            except Exception as e:
                report['errors'].setdefault(p.stem, []).append(f'API page: {type(e).__name__}: {e}')
                say(f'  WARNING: API page for {pkg}.{module}: {type(e).__name__}: {e}')
        nbformat.write(nb, docs/p.name)
        nav_phases.append((page_title(p.stem, title or p.stem), p.name)); report['pages'].append(p.stem)

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
        'markdown_extensions': ['tables', 'admonition', 'pymdownx.superfences', 'pymdownx.highlight', 'toc'],
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
