"""Packaging: a wheel built from the repo holds the run templates, recipes, prompt templates and accelerate configs,
and, installed non-editable into a fresh virtual environment, runs a short demo loop from a folder outside the repo."""
import os, sys, json, shutil, subprocess, sysconfig, tarfile, time, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
# what is not source: VCS, virtualenvs, build outputs, run folders, rendered docs, caches
IGNORE = shutil.ignore_patterns('.git', '.ci', '.venv', 'build', 'dist', '*.egg-info', 'outputs', '_docs', '_proc', 'site',
                                '__pycache__', '*.pyc', '.ipynb_checkpoints', '.pytest_cache', '.cache')
# the short offline demo loop: one cycle of 4 training steps on 36 examples, judged once
SHORT = ['data.demo_size=48', 'data.test_frac=0.25', 'train.max_steps=4', 'train.batch_size=16', 'infer.k=1',
         'infer.max_new_tokens=8', 'judge.m=1', 'loop.max_cycles=1']

def _data_files(src:Path)->list[str]:
    "The non-code files the wheel must hold, as wheel paths, from the source tree `src`."
    pkg = src/'llamaduo'
    files = [f'llamaduo/runs/{p.name}' for p in sorted((src/'nbs'/'_runs').glob('*.ipynb'))]
    for sub, pat in (('recipes', '*.yaml'), ('templates', '*.txt'), ('accelerate', '*.yaml')):
        found = sorted((pkg/sub).glob(pat)); assert found, f'no llamaduo/{sub}/{pat} in the repo'
        files += [f'llamaduo/{sub}/{p.name}' for p in found]
    return files

def _run(cmd, env, cwd, timeout=600):
    r = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f'{cmd} exited {r.returncode}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}'
    return r.stdout.strip()

def _fresh_venv(venv:Path)->Path:
    "A venv that sees the current interpreter's installed packages (appended, after its own) but not the editable llamaduo."
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    py = venv/'bin'/'python'
    site = Path(subprocess.check_output([py, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'], text=True).strip())
    # plain path lines: appended to sys.path, while the .pth files in those folders (the editable finder) are not run
    paths = dict.fromkeys(sysconfig.get_path(k) for k in ('purelib', 'platlib'))
    (site/'_llamaduo_test_deps.pth').write_text(''.join(f'{p}\n' for p in paths))
    return py

def _env(venv:Path)->dict:
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'JUPYTER_PATH', 'CONDA_PREFIX')}
    return {**env, 'VIRTUAL_ENV': str(venv), 'PATH': f"{venv/'bin'}{os.pathsep}{env.get('PATH', '')}", 'PYTHONNOUSERSITE': '1',
            'JUPYTER_PATH': str(venv/'share'/'jupyter'), 'PYTHONDONTWRITEBYTECODE': '1',
            'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}

def _wheel_names(tmp_path, src, dist:Path)->set[str]:
    "Build a wheel of `src` (a folder or an sdist) the way pip does; its file list."
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '--disable-pip-version-check', '-q',
          '-w', dist, src], dict(os.environ), tmp_path)
    whl, = dist.glob('llamaduo-*.whl')
    with zipfile.ZipFile(whl) as z: return set(z.namelist())

def test_sdist_rebuilds_the_same_wheel(tmp_path):
    "The sdist holds what the build needs (settings.ini, nbs/_runs): a wheel built from it equals the one built from the tree."
    src = tmp_path/'src'
    shutil.copytree(ROOT, src, ignore=IGNORE)
    sd = _run([sys.executable, '-c', f'from setuptools.build_meta import __legacy__ as b; print(b.build_sdist({str(tmp_path/"sdist")!r}))'],
              dict(os.environ), src).splitlines()[-1]
    sdist = tmp_path/'sdist'/sd
    with tarfile.open(sdist) as t: members = {m.split('/', 1)[1] for m in t.getnames() if '/' in m}
    assert {'setup.py', 'settings.ini', 'README.md', 'nbs/_runs/cycle.ipynb', 'nbs/_runs/report.ipynb'} <= members, sorted(members)
    from_sdist = _wheel_names(tmp_path, sdist, tmp_path/'dist_sdist')
    shutil.rmtree(src/'build', ignore_errors=True)
    from_tree = _wheel_names(tmp_path, src, tmp_path/'dist_tree')
    for f in _data_files(src): assert f in from_sdist, f'{f} missing from the wheel built from {sd}'
    assert from_sdist == from_tree, from_sdist ^ from_tree

@pytest.mark.slow
def test_wheel_installs_and_runs_a_loop_outside_the_repo(tmp_path):
    t0 = time.time()
    # 1. build a wheel from the repo's sources (a copy, so that no build/ or egg-info of the checkout is read or written)
    src, dist = tmp_path/'src', tmp_path/'dist'
    shutil.copytree(ROOT, src, ignore=IGNORE)
    names = _wheel_names(tmp_path, src, dist)
    whl, = dist.glob('llamaduo-*.whl')
    with zipfile.ZipFile(whl) as z:
        for f in _data_files(src): assert f in names, f'{f} missing from {whl.name}'
        for nb in ('cycle', 'report'):
            assert z.read(f'llamaduo/runs/{nb}.ipynb') == (src/'nbs'/'_runs'/f'{nb}.ipynb').read_bytes()
    assert {'llamaduo/__init__.py', 'llamaduo/cli.py', 'llamaduo/loop.py'} <= names
    assert not any(n.startswith(('nbs/', 'tests/', 'tools/')) for n in names), sorted(names)

    # 2. a fresh venv on top of the installed dependencies: llamaduo is not importable until the wheel is installed
    venv, work = tmp_path/'venv', tmp_path/'work'
    work.mkdir()
    py, env = _fresh_venv(venv), _env(venv)
    r = subprocess.run([py, '-c', 'import llamaduo'], env=env, cwd=work, capture_output=True, text=True)
    assert r.returncode != 0 and 'No module named' in r.stderr, r.stdout + r.stderr
    _run([py, '-m', 'pip', 'install', '--no-deps', '--no-index', '--ignore-installed', '--disable-pip-version-check', '-q', whl], env, work)
    # the python3 kernel papermill starts must be this venv's interpreter
    _run([py, '-m', 'ipykernel', 'install', '--prefix', venv, '--name', 'python3'], env, work)
    spec = json.loads(_run([py, '-c', 'import json; from jupyter_client.kernelspec import KernelSpecManager as K; '
                                      'print(json.dumps(K().get_kernel_spec("python3").argv))'], env, work))
    assert Path(spec[0]) == py, spec
    where = json.loads(_run([py, '-c', 'import json, os, sys, llamaduo, llamaduo.loop as l; print(json.dumps('
                                       '[llamaduo.__file__, str(l.runs_notebook("cycle")), [os.path.realpath(p) for p in sys.path]]))'], env, work))
    pkg = Path(where[0]).parent
    assert pkg.is_relative_to(venv) and not pkg.is_relative_to(ROOT), where
    assert Path(where[1]) == pkg/'runs'/'cycle.ipynb', where
    assert str(ROOT.resolve()) not in where[2] and str((ROOT/'llamaduo').resolve()) not in where[2], where[2]   # the repo is not on sys.path

    # 3. a short offline demo loop with the installed console script, from a folder outside the repo, PYTHONPATH unset
    assert not work.resolve().is_relative_to(ROOT.resolve())
    r = subprocess.run([venv/'bin'/'llamaduo', 'run', 'demo', '--out', 'RUN', '--set', *SHORT], env=env, cwd=work,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f'llamaduo run exited {r.returncode}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}'
    run = work/'RUN'
    for f in ('cycle_00/cycle.ipynb', 'metrics.csv', 'config.yaml', 'manifest.json'): assert (run/f).exists(), f
    nb = json.loads((run/'cycle_00'/'cycle.ipynb').read_text())
    assert any('injected-parameters' in c['metadata'].get('tags', []) for c in nb['cells'])
    assert not any(o.get('output_type') == 'error' for c in nb['cells'] for o in c.get('outputs', []))
    print(f'packaging test wall time: {time.time() - t0:.0f} s')
