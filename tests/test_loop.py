"The loop: the demo end to end on a reduced recipe, the run-folder layout, resume after SIGKILL at several points."
import os, sys, json, time, signal, sqlite3, subprocess, shutil
from pathlib import Path
import pandas as pd, pytest
from llamaduo.loop import run_loop, resume, metrics_table, metrics_markdown
from llamaduo.files import read_jsonl

# A reduced demo: 48 coverage examples (12 test), one synthesis round of 128, two cycles, 4 epochs of tiny training.
SMALL = {'data.demo_size': 48, 'data.test_frac': 0.25, 'train.epochs': 4, 'train.max_steps': -1, 'train.batch_size': 16, 'train.save_steps': 2,
         'train.logging_steps': 1, 'infer.k': 1, 'infer.max_new_tokens': 24, 'judge.m': 2, 'judge.epsilon': 100,
         'synth.volumes': [128], 'synth.per_call': 8, 'loop.max_cycles': 2}
SCORES = ['cycle', 'train_size', 'similarity_V', 'similarity_C@50', 'similarity_C@70', 'precision_V', 'precision_C@50', 'precision_C@70']

def _cli(args, env=None, **kw):
    return subprocess.Popen([sys.executable, '-m', 'llamaduo.cli', *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)

def _sets(over): return ['--set', *[f'{k}={json.dumps(v)}' for k, v in over.items()]]

LAYOUT = ['config.yaml', 'manifest.json', 'data/coverage_train.jsonl', 'data/coverage_test.jsonl', 'metrics.csv', 'summary.json',
          'plots/score_vs_volume.png', 'plots/score_vs_volume_by_category.png', 'plots/cost.png']
CYCLE = ['train.jsonl', 'model', 'train_metrics.json', 'responses.jsonl', 'judgments.jsonl', 'metrics.json', 'decision.json',
         'usage.json', 'calls.jsonl', 'cycle.ipynb']
SYNTH = ['synth_raw.jsonl', 'synth_kept.jsonl', 'synth_report.json']

@pytest.mark.slow
def test_demo_loop_end_to_end_writes_the_whole_layout(tmp_path, monkeypatch):
    out = tmp_path/'run'
    secret = 'sk-test-SECRET-0123456789abcdef'
    for k in ('OPENAI_API_KEY', 'ANTHROPIC_API_KEY', 'GEMINI_API_KEY', 'HF_TOKEN'): monkeypatch.setenv(k, secret)
    s = run_loop('demo', out, {**SMALL, 'judge.base_model': True}, quiet=True)
    for f in LAYOUT: assert (out/f).exists(), f
    for f in ['responses.jsonl', 'judgments.jsonl', 'metrics.json', 'calls.jsonl']: assert (out/'base_eval'/f).exists(), f'base_eval/{f}'
    for f in CYCLE + SYNTH: assert (out/'cycle_00'/f).exists(), f'cycle_00/{f}'
    for f in CYCLE: assert (out/'cycle_01'/f).exists(), f'cycle_01/{f}'
    assert not (out/'cycle_01'/'synth_kept.jsonl').exists()            # last cycle: nothing to synthesize for
    assert s['cycles'] == 2 and 'max_cycles' in s['stop']
    d = json.loads((out/'cycle_00'/'decision.json').read_text())   # one judge, M = 2: its self-consistency is the gate
    assert d['trusted'] and d['verdict'] == 'synthesize' and [c['check'] for c in d['trust']['checks']] == ['self']
    assert 'demo/demo also wrote the synthetic data' in d['self_preference']
    # the judge grades the text answers; the tool-call answers are graded by structure, without a call
    assert {j['judge'] for j in read_jsonl(out/'cycle_00'/'judgments.jsonl')} == {'demo/demo', 'structural'}
    df = pd.read_csv(out/'metrics.csv')
    # the untrained base is judged first: the row before cycle 0, no training data, its own judge calls
    assert list(df.cycle) == ['base', '0', '1'] and df.train_size[2] > df.train_size[1] == 36 and df.train_size[0] == 0
    assert (df.network_calls > 0).all() and df.cost.notna().all()
    table = metrics_markdown(df).splitlines()
    assert len(table) == 2 + 3 and 'untrained base' in table[2] and table[3].startswith('| 0 | 36 | 0 |')
    nb = json.loads((out/'cycle_00'/'cycle.ipynb').read_text())
    assert any('parameters' in c['metadata'].get('tags', []) for c in nb['cells'])
    assert any('injected-parameters' in c['metadata'].get('tags', []) for c in nb['cells'])
    assert any(o.get('output_type') == 'display_data' and 'image/png' in o.get('data', {}) for c in nb['cells'] for o in c.get('outputs', []))
    # no key from the environment reaches any file of the run: config, manifest, cache, call logs, executed notebooks
    for f in out.rglob('*'):
        if f.is_file(): assert secret.encode() not in f.read_bytes(), f
    # a rerun of the finished folder does nothing and pays nothing
    before = [len((out/f'cycle_0{t}'/'calls.jsonl').read_text().splitlines()) for t in (0, 1)]
    s2 = resume(out, quiet=True)
    assert [len((out/f'cycle_0{t}'/'calls.jsonl').read_text().splitlines()) for t in (0, 1)] == before
    assert pd.read_csv(out/'metrics.csv')[SCORES].equals(df[SCORES])
    # the report notebook aggregates the cycles
    from llamaduo.loop import report
    nb = json.loads(report(out, quiet=True).read_text())
    assert sum('image/png' in o.get('data', {}) for c in nb['cells'] for o in c.get('outputs', [])) >= 3

def _wait(pred, proc, timeout=240, poll=0.05):
    "Poll every `poll` seconds until `pred()`; an error if the run ends first."
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred(): return True
        if proc.poll() is not None: raise AssertionError('run ended before the kill point:\n' + proc.stdout.read()[-3000:])
        time.sleep(poll)
    raise AssertionError('kill point not reached in time')

def _lines(p): return Path(p).read_text().splitlines() if Path(p).exists() else []
def _cached(run): 
    db = run/'cache'/'calls.sqlite'
    return {k for (k,) in sqlite3.connect(db).execute('SELECT key FROM calls')} if db.exists() else set()

@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp('ref')/'run'
    log = out.parent/'calls.log'
    p = _cli(['run', 'demo', '--out', str(out), *_sets({**SMALL, 'loop.papermill': False})], env={'LLAMADUO_DEMO_CALL_LOG': str(log)})
    assert p.wait(600) == 0, p.stdout.read()[-3000:]
    return out, _lines(log)

def _kill_at(point, out, log, p):
    "Wait for a kill point of a running demo, then SIGKILL its whole process group."
    c0 = out/'cycle_00'
    if point == 'inside training':
        _wait(lambda: any((c0/'checkpoints').glob('checkpoint-*')) and not (c0/'.align.done').exists(), p)
    elif point == 'between judge calls':
        _wait(lambda: len(_lines(log)) >= 4 and not (c0/'.judge.done').exists(), p)
    elif point == 'during synthesis':
        _wait(lambda: (c0/'.judge.done').exists(), p)
        n_judge = len(_lines(log))
        _wait(lambda: len(_lines(log)) > n_judge and not (c0/'.synth.done').exists(), p)
    elif point == 'after synthesis':      # inside the next cycle's training
        _wait(lambda: (c0/'.synth.done').exists() and any((out/'cycle_01'/'checkpoints').glob('checkpoint-*')), p)
    os.killpg(p.pid, signal.SIGKILL); p.wait()

@pytest.mark.slow
def test_sigkill_at_three_points_then_resume_equals_uninterrupted_run(tmp_path, reference):
    """Kill one run inside training, resume it; kill it between judge calls, resume; kill it during synthesis, resume to
    the end. Final metrics equal the uninterrupted run's, and no call that had been paid for is made again."""
    ref_dir, ref_log = reference
    out, log = tmp_path/'run', tmp_path/'calls.log'
    env = {'LLAMADUO_DEMO_CALL_LOG': str(log), 'LLAMADUO_DEMO_LATENCY': '0.2'}
    p = _cli(['run', 'demo', '--out', str(out), *_sets({**SMALL, 'loop.papermill': False})], env=env)
    segments, synth_stamp = [], None                # (kill point, calls logged at the kill, cache keys at the kill)
    for point in ('inside training', 'between judge calls', 'during synthesis', 'after synthesis'):
        _kill_at(point, out, log, p)
        assert not (out/'metrics.csv').exists(), point
        segments.append((point, len(_lines(log)), _cached(out)))
        if point == 'after synthesis': synth_stamp = [(out/'cycle_00'/f).stat().st_mtime_ns for f in ('.synth.done', 'synth_kept.jsonl')]
        p = _cli(['resume', str(out)], env=env)
    assert p.wait(600) == 0, p.stdout.read()[-3000:]
    # a finished synthesis is not redone by a resume
    assert [(out/'cycle_00'/f).stat().st_mtime_ns for f in ('.synth.done', 'synth_kept.jsonl')] == synth_stamp
    calls = _lines(log)
    for i, (point, n, cached) in enumerate(segments):
        after = set(calls[n:segments[i+1][1]] if i + 1 < len(segments) else calls[n:])
        assert not after & cached, f'after the kill {point}: a call already paid for was made again'
    assert sorted(set(_lines(log))) == sorted(set(ref_log))          # the same calls as the uninterrupted run
    # every column — scores, calls, paid calls, tokens, cost — equals the uninterrupted run's: no paid call lost or re-paid
    assert (out/'metrics.csv').read_text() == (ref_dir/'metrics.csv').read_text()

PRICED = {'service.prices': {'demo': [100.0, 100.0]}}   # $0.0001 a (demo) token: a judge call ~ $0.02, its worst case ~ $0.12

@pytest.mark.slow
def test_budget_stop_is_per_run_resumable_and_raised_on_resume(tmp_path, reference):
    "A priced run hits its cap inside cycle 0; a resume that does not raise it stops at once; raising it finishes the run."
    ref_dir, _ = reference
    out, log = tmp_path/'run', tmp_path/'calls.log'
    env = {'LLAMADUO_DEMO_CALL_LOG': str(log)}
    cap = 0.6
    p = _cli(['run', 'demo', '--out', str(out), *_sets({**SMALL, 'loop.papermill': False, **PRICED, 'service.budget_usd': cap})], env=env)
    text = p.communicate(timeout=600)[0]
    assert p.returncode == 0, text[-3000:]
    s = json.loads((out/'summary.json').read_text())
    assert 'budget cap $0.6 reached in cycle 0' in s['stop'] and '--set service.budget_usd=' in s['stop'] and s['stop'] in text
    stop = json.loads((out/'budget_stop.json').read_text())
    worst = 0.13
    assert cap - 2*worst <= stop['spent'] <= cap, stop                        # spends up to the cap, never past it
    n_calls = len(_lines(log))
    t0 = time.time(); p = _cli(['resume', str(out)], env=env); text = p.communicate(timeout=300)[0]
    assert p.returncode == 0 and 'budget cap $0.6 reached' in text and len(_lines(log)) == n_calls   # stops at once, pays nothing
    assert time.time() - t0 < 30
    p = _cli(['resume', str(out), '--set', 'service.budget_usd=100'], env=env); text = p.communicate(timeout=600)[0]
    assert p.returncode == 0, text[-3000:]
    assert not (out/'budget_stop.json').exists() and 'max_cycles' in json.loads((out/'summary.json').read_text())['stop']
    got, want = pd.read_csv(out/'metrics.csv'), pd.read_csv(ref_dir/'metrics.csv')
    pd.testing.assert_frame_equal(got[SCORES + ['calls', 'network_calls', 'tokens']], want[SCORES + ['calls', 'network_calls', 'tokens']])
    assert got.cost.sum() == pytest.approx(got.tokens.sum() * 100 / 1e6)       # every paid token counted, across the three processes

def test_resume_refuses_settings_that_change_results(tmp_path):
    p = _cli(['run', 'demo', '--out', str(tmp_path/'run'), '--set', 'data.demo_size=16', 'loop.max_cycles=1', 'train.max_steps=1',
              'infer.k=1', 'infer.max_new_tokens=4', 'judge.m=1', 'loop.papermill=false'])
    assert p.wait(300) == 0
    p = _cli(['resume', str(tmp_path/'run'), '--set', 'train.max_steps=5']); text = p.communicate(timeout=120)[0]
    assert p.returncode == 2 and 'train.max_steps cannot change on resume' in text and len(text.strip().splitlines()) == 1

@pytest.mark.slow
def test_sweep_nested_subsets_and_report(tmp_path):
    "The data-volume sweep: one executed notebook per point, nested training sets, metrics by size; then the report."
    from llamaduo.loop import sweep, report
    from llamaduo.files import read_jsonl
    over = {**SMALL, 'loop.sweep_sizes': [24, 60], 'synth.volumes': [64], 'train.max_steps': 6, 'train.epochs': 1}
    df = sweep('demo', tmp_path/'run', over, quiet=True)
    sd = tmp_path/'run'/'sweep'
    assert list(df.train_size) == [24, 60] and {'precision_V', 'similarity_C@50'} <= set(df.columns)
    a, b = read_jsonl(sd/'n_000024'/'train.jsonl'), read_jsonl(sd/'n_000060'/'train.jsonl')
    assert (len(a), len(b)) == (24, 60) and b[:24] == a                          # nested subsets
    assert any(r['source'] == 'synthetic' for r in b)
    for n in ('n_000024', 'n_000060'): assert (sd/n/'point.ipynb').exists() and (sd/n/'metrics.json').exists()
    assert (sd/'metrics.csv').exists() and (sd/'pool'/'synth_report.json').exists()
