"""Money and keys, driven through the CLI with the official OpenAI SDK against a local server (`llamaduo.fakes`) that
requires a key, injects 20% faults (429 + Retry-After, 500s that echo the caller's key, hangs past the timeout, malformed
and truncated bodies) and answers the real judge and synthesis prompts as the offline demo service does."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd, pytest
sys.path.insert(0, str(Path(__file__).parent))
from llamaduo.fakes import DemoLLMServer
from functools import partial
from test_loop import SMALL, _sets, _wait
_wait = partial(_wait, timeout=300, poll=0.01)   # the faulty server's runs are short: look often

KEY, ENV = 'sk-planted-0123456789abcdefSECRET', 'LLM_AUTH'   # a variable whose name does not look secret
PRICE = 100.0                                              # USD per 1M tokens, in and out

@pytest.fixture(scope='module')
def server():
    with DemoLLMServer(KEY, fault_rate=0.2) as s: yield s

def _over(server, **kw):
    return {**SMALL, 'loop.papermill': False, 'service.provider': 'openai', 'service.model': 'fake-gpt',
            'service.base_url': server.url + '/v1', 'service.api_key_env': ENV, 'service.timeout': 1.0, 'service.max_retries': 8,
            'service.max_tokens': 256, 'service.prices': {'fake-gpt': [PRICE, PRICE]}, **kw}

def _cli(args, key=KEY):
    env = {k: v for k, v in os.environ.items() if k != 'OPENAI_API_KEY'}
    return subprocess.Popen([sys.executable, '-m', 'llamaduo.cli', *args], env={**env, ENV: key}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)

def _no_key_anywhere(folder, *texts):
    for t in texts: assert KEY not in t
    for f in Path(folder).rglob('*'):
        if f.is_file(): assert KEY.encode() not in f.read_bytes(), f

@pytest.fixture(scope='module')
def reference(server, tmp_path_factory):
    "An uninterrupted run against the faulty server, its cycles executed as papermill notebooks (kept in the run folder)."
    out, ok0 = tmp_path_factory.mktemp('ref')/'run', server.ok
    p = _cli(['run', 'demo', '--out', str(out), *_sets(_over(server, **{'loop.papermill': True}))])
    o, e = p.communicate(timeout=900)
    assert p.returncode == 0, (o + e)[-3000:]
    return out, o + e, server.ok - ok0

def test_wrong_key_fails_in_seconds_with_one_line(server, tmp_path):
    wrong = 'sk-wrong-key-9999999999'
    t0 = time.time()
    p = _cli(['run', 'demo', '--out', str(tmp_path/'run'), *_sets(_over(server))], key=wrong)
    o, e = p.communicate(timeout=120)
    lines = [l for l in e.splitlines() if l.strip()]
    assert p.returncode == 2 and time.time() - t0 < 10, e
    assert len(lines) == 1 and ENV in lines[0] and '401' in lines[0], e
    assert wrong not in o + e and not (tmp_path/'run'/'cycle_00').exists()   # the server echoed it; nobody repeats it

def test_planted_key_echoed_by_the_server_appears_nowhere(reference, server):
    out, text, _ = reference
    _no_key_anywhere(out, text)                             # config, manifest, cache, ledger, call logs, executed notebooks
    assert (out/'cycle_00'/'cycle.ipynb').exists()
    calls = [json.loads(l) for c in sorted(out.glob('cycle_*')) for l in (c/'calls.jsonl').read_text().splitlines()]
    assert any(c['attempts'] > 1 for c in calls)            # faults happened and were retried ...
    assert all(c['status'] == 'ok' for c in calls)          # ... and none was turned into a score of 0

def _synth_requests(server): return sum('<count>' in json.dumps(r['body']) for r in list(server.requests))

def _kill_at(point, out, p, server):
    c0, c1 = out/'cycle_00', out/'cycle_01'
    if point == 'inside training':
        _wait(lambda: any((c0/'checkpoints').glob('checkpoint-*')) and not (c0/'.align.done').exists(), p)
    elif point == 'during inference':
        _wait(lambda: (c0/'.align.done').exists() and not (c0/'.infer.done').exists(), p)
    elif point == 'between judge calls':
        n = server.ok
        _wait(lambda: (c0/'.infer.done').exists() and server.ok >= n + 4 and not (c0/'.judge.done').exists(), p)
    elif point == 'during synthesis':     # the synthesis requests have started, the phase has not finished
        n = _synth_requests(server)
        _wait(lambda: _synth_requests(server) >= n + 2 and not (c0/'.synth.done').exists(), p)
    elif point == 'inside the next training':
        _wait(lambda: (c0/'.synth.done').exists() and any((c1/'checkpoints').glob('checkpoint-*')), p)
    os.killpg(p.pid, signal.SIGKILL); p.wait()

@pytest.mark.slow
def test_kill_at_five_moments_resume_to_byte_identical_metrics(reference, server, tmp_path):
    "SIGKILL in training, inference, judging, synthesis and the next training; each resumed: every column of metrics.csv equal."
    ref, _, ref_ok = reference
    out, texts = tmp_path/'run', []
    ok0, server.latency = server.ok, 0.3           # slow enough calls that every kill point is seen
    try:
        p = _cli(['run', 'demo', '--out', str(out), *_sets(_over(server))])
        for point in ('inside training', 'during inference', 'between judge calls', 'during synthesis', 'inside the next training'):
            _kill_at(point, out, p, server)
            texts.append(p.stdout.read() + p.stderr.read())
            p = _cli(['resume', str(out)])
        o, e = p.communicate(timeout=900)
    finally: server.latency = 0.0
    assert p.returncode == 0, (o + e)[-3000:]
    assert (out/'metrics.csv').read_text() == (ref/'metrics.csv').read_text()   # calls, paid calls, tokens, cost: to the call
    df = pd.read_csv(out/'metrics.csv')
    assert df.cost.sum() == pytest.approx(df.tokens.sum() * PRICE / 1e6) and df.cost.sum() > 0
    assert 0 <= server.ok - ok0 - ref_ok <= 5 * 8     # answered twice: at most the calls in flight at each kill
    _no_key_anywhere(out, o + e, *texts)

@pytest.mark.slow
def test_budget_per_run_spends_to_the_cap_stops_and_raises_on_resume(reference, server, tmp_path):
    ref, _, _ = reference
    out, cap = tmp_path/'run', 1.0
    p = _cli(['run', 'demo', '--out', str(out), *_sets(_over(server, **{'service.budget_usd': cap}))])
    o, e = p.communicate(timeout=900)
    assert p.returncode == 0, (o + e)[-3000:]
    stop = json.loads((out/'budget_stop.json').read_text())
    assert 0.9*cap <= stop['spent'] <= cap, stop                                # spends the cap, never more
    assert 'budget cap $1 reached in cycle 0' in o and '--set service.budget_usd=' in o
    n = len(server.requests)
    t0 = time.time(); p = _cli(['resume', str(out)]); o, e = p.communicate(timeout=300)
    assert p.returncode == 0 and 'budget cap $1 reached' in o and len(server.requests) == n and time.time() - t0 < 30
    p = _cli(['resume', str(out), '--set', 'service.budget_usd=100']); o, e = p.communicate(timeout=900)
    assert p.returncode == 0, (o + e)[-3000:]
    assert not (out/'budget_stop.json').exists() and 'max_cycles' in json.loads((out/'summary.json').read_text())['stop']
    assert (out/'metrics.csv').read_text() == (ref/'metrics.csv').read_text()   # refused calls were sent again; nothing lost

def test_budget_stop_before_any_cycle_finishes_writes_the_summary(server, tmp_path):
    out = tmp_path/'run'
    over = _over(server, **{'service.budget_usd': 0.1, 'train.epochs': 1, 'loop.max_cycles': 1})
    p = _cli(['run', 'demo', '--out', str(out), *_sets(over)]); o, e = p.communicate(timeout=600)
    assert p.returncode == 0, (o + e)[-3000:]
    s = json.loads((out/'summary.json').read_text())
    assert s['cycles'] == 0 and 'budget cap $0.1 reached in cycle 0' in s['stop'] and 0 < s['spent'] <= 0.1
