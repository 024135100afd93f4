"""Batch mode (`service.batch`): each official SDK against local servers implementing the providers' batch endpoints
(`llamaduo.fakes.BatchServer`), answering as the offline demo does — same replies and records as online, at half price,
split at the limits, failures retried and counted, expired/cancelled/failed jobs handled, a killed client resumed."""
import json, os, random, signal, subprocess, sys, threading, time
from pathlib import Path
import pytest
sys.path.insert(0, str(Path(__file__).parent))
from llamaduo.fakes import BatchServer, FakeLLMServer
from llamaduo.config import ServiceCfg, load_recipe
from llamaduo.service import ServiceClient, ServiceError
from llamaduo.ledger import BudgetExceeded, CallCache, check_budget
from llamaduo.batch import JobsFile, OpenAIBatch, AnthropicBatch, GeminiBatch, batch_client
from llamaduo.demo import make_task, task_record, CATEGORIES
from llamaduo.judge import judge_responses, compute_metrics

SECRETS = {'OPENAI_API_KEY': 'sk-fake-openai-SECRET-0123456789', 'ANTHROPIC_API_KEY': 'sk-ant-fake-SECRET-0123456789',
           'GEMINI_API_KEY': 'AIza-fake-gemini-SECRET-0123456789'}
PROVIDERS = ['openai', 'anthropic', 'gemini']
PRICE = [1000.0, 2000.0]   # USD per 1M tokens (in, out): batch rows default to half

@pytest.fixture(scope='module')
def server():
    with BatchServer() as s: yield s

@pytest.fixture
def srv(server):
    server.reset(); yield server; server.reset()

@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.delenv('GOOGLE_API_KEY', raising=False)
    for k, v in SECRETS.items(): monkeypatch.setenv(k, v)

def cfg_for(srv, provider, **kw)->ServiceCfg:
    base = srv.url + '/v1' if provider == 'openai' else srv.url
    return ServiceCfg(**{**dict(provider=provider, model='fake-model', base_url=base, max_retries=2, timeout=5.0, max_tokens=32,
                                batch_poll_s=0.02, prices={'fake-model': PRICE}), **kw})

def client(srv, provider, cache, **kw)->ServiceClient:
    return batch_client(cfg_for(srv, provider, **kw), cache_dir=cache, backoff=(0.01, 0.05), progress=False)

def reqs(n, tag='f', start=0):
    "Distinct requests the demo answers deterministically: system prompts, JSON mode, samples and temperatures mixed."
    out = []
    for i in range(start, start + n):
        m = [{'role': 'user', 'content': f'Write a Python function named {tag}{i} that takes a number x and returns x plus {i}.'}]
        if i % 2 == 0: m = [{'role': 'system', 'content': 'You write short Python.'}] + m
        out.append({'messages': m, 'json': i % 3 == 0, 'sample': i % 2, **({'temperature': 0.5} if i % 4 == 1 else {})})
    return out

def bodies(srv, in_job:bool)->list[str]:
    return sorted(json.dumps(r, sort_keys=True) for _, r, cid in srv.executed if (cid is not None) == in_job)

SAME = ('status', 'text', 'tokens_in', 'tokens_out', 'request_hash', 'provider', 'model', 'cached', 'attempts', 'error')

# --- the same requests, replies, records and cache keys as online, at half price --------------------------------

@pytest.mark.parametrize('provider', PROVIDERS)
def test_same_as_online_at_half_price(srv, provider, tmp_path):
    rs = reqs(6)
    on = client(srv, provider, tmp_path/'online'); r_on = on.batch(rs, phase='synth')
    bt = client(srv, provider, tmp_path/'batch', batch=True); bt.run_id, bt.folder = 'run-1', 'cycle_00'
    r_bt = bt.batch(rs, phase='synth')
    assert all(r.status == 'ok' and r.text.startswith('def f') for r in r_bt), [r.error for r in r_bt]
    assert [[getattr(r, k) for k in SAME] for r in r_bt] == [[getattr(r, k) for k in SAME] for r in r_on]
    rec = lambda c: [{k: v for k, v in x.items() if k not in ('time', 'cost', 'latency', 'batch_job')} for x in c.records]
    assert rec(bt) == rec(on) and [x['phase'] for x in bt.records] == ['synth']*6
    assert bodies(srv, in_job=True) == bodies(srv, in_job=False)          # the server got the very same request bodies
    assert len(srv.jobs) == 1 and srv.online == 6 and sorted(srv.paid) == sorted(r.request_hash for r in r_bt)  # custom_id = cache key
    assert [r.cost for r in r_bt] == pytest.approx([r.cost / 2 for r in r_on]) and all(r.cost > 0 for r in r_bt)
    assert len({r.batch_job for r in r_bt}) == 1 and all(r.batch_job is None for r in r_on)
    led = bt.cache.paid('run-1', 'cycle_00')                                # ledgered like online calls
    assert [x['key'] for x in led] == [r.request_hash for r in r_bt] and {x['phase'] for x in led} == {'synth'}
    assert sum(x['cost'] for x in led) == pytest.approx(bt.usage()['synth']['cost']) == pytest.approx(sum(r.cost for r in r_bt))
    job, = JobsFile(tmp_path/'batch').read().values()
    assert (job['state'], job['n'], job['ok'], job['keys'], job['phase'], job['run']) == ('collected', 6, 6, [], 'synth', 'run-1')
    again = client(srv, provider, tmp_path/'batch', batch=True).batch(rs, phase='synth')   # a rerun: all from the cache
    assert all(r.cached for r in again) and len(srv.jobs) == 1 and [r.text for r in again] == [r.text for r in r_on]

def test_cached_requests_not_sent_and_phases_chosen(srv, tmp_path):
    c = client(srv, 'openai', tmp_path, batch=['synth'])
    c.batch(reqs(3), phase='synth')
    assert len(srv.jobs) == 1
    rs = c.batch(reqs(5) + reqs(3), phase='synth')                         # 3 cached, 2 new, 3 duplicates of cached ones
    new = list(srv.jobs.values())[-1]
    assert len(srv.jobs) == 2 and [cid for cid, _, _ in new['requests']] == [r.request_hash for r in rs[3:5]]
    assert [r.cached for r in rs] == [True]*3 + [False]*2 + [True]*3 and max(srv.paid.values()) == 1
    c.batch(reqs(2, tag='g'), phase='judge')                               # judging stays online
    assert len(srv.jobs) == 2 and srv.online == 2

# --- split at the provider's limits -----------------------------------------------------------------------------

@pytest.mark.parametrize('provider', PROVIDERS)
def test_split_at_limits(srv, provider, tmp_path, monkeypatch):
    rs = reqs(7)
    api = {'openai': OpenAIBatch, 'anthropic': AnthropicBatch, 'gemini': GeminiBatch}[provider]
    c = client(srv, provider, tmp_path, batch=True)
    if provider == 'openai': monkeypatch.setattr(api, 'max_requests', 3)
    else:   # a byte limit that holds two requests
        sizes = [api(c).size(k, 'fake-model', b) for k, b in (c._body(r) for r in rs)]
        monkeypatch.setattr(api, 'max_bytes', int(2.5 * max(sizes)))
        if provider == 'gemini': monkeypatch.setattr(api, 'inline_bytes', int(1.5 * max(sizes)))   # jobs of two as a file, the last one inline
    out = c.batch(rs, phase='synth')
    jobs = list(srv.jobs.values()); sizes = [len(j['requests']) for j in jobs]
    assert all(r.status == 'ok' for r in out) and sum(sizes) == 7
    if provider == 'openai': assert sizes == [3, 3, 1] and len(srv.uploads) == 3
    else: assert sizes == [2, 2, 2, 1]
    if provider == 'gemini': assert ['input_file' in j for j in jobs] == [True]*3 + [False] and len(srv.uploads) == 3
    assert [cid for j in jobs for cid, _, _ in j['requests']] == [r.request_hash for r in out]   # in order, each once
    assert [r.text for r in out] == [r.text for r in client(srv, provider, tmp_path/'on').batch(rs)]

# --- per-request errors inside a job: transient retried online, permanent reported, all counted -------------------

@pytest.mark.parametrize('provider', PROVIDERS)
def test_per_request_failures_retried_and_counted(srv, provider, tmp_path):
    rs = [{'messages': [{'role': 'user', 'content': f'Write a Python function named {w} that takes a number x and returns x plus 1.'}]}
          for w in ('fine', 'flaky', 'broken', 'doomed')]
    srv.faults = {'flaky': [500], 'broken': ['echo'], 'doomed': [500, 503, 500]}
    c = client(srv, provider, tmp_path, batch=True, max_retries=2)
    out = c.batch(rs, phase='judge')
    assert [(r.status, r.attempts) for r in out] == [('ok', 1), ('ok', 2), ('api_error', 1), ('api_error', 3)], [r.error for r in out]
    assert out[0].batch_job and out[1].batch_job is None and out[1].text == 'def flaky(x): return x + 1'
    assert out[1].cost == pytest.approx(2 * out[0].cost)                   # the online retry is paid at online prices
    assert 'invalid request of key ***' in out[2].error and ('503' in out[3].error or '500' in out[3].error)
    u = c.usage()['judge']
    assert (u['calls'], u['failures'], u['attempts'], u['network_calls']) == (4, 2, 7, 4)
    assert srv.online == 1 and len(srv.executed) == 4 + 1 + 2              # in the job, then flaky once and doomed twice online
    assert CallCache(tmp_path).get(out[2].request_hash) is None            # errors are never cached
    key = SECRETS[f'{provider.upper()}_API_KEY']                             # the server echoed the key in the 400 ...
    assert '***' in out[2].error and key not in json.dumps(c.records) + repr(out)
    for f in tmp_path.rglob('*'):                                              # ... and it is written nowhere
        if f.is_file(): assert key.encode() not in f.read_bytes(), f

# --- expired, cancelled and failed jobs -------------------------------------------------------------------------

@pytest.mark.parametrize('provider', PROVIDERS)
@pytest.mark.parametrize('fate', ['expired', 'cancelled'])
def test_expired_or_cancelled_job_resubmits_the_rest(srv, provider, fate, tmp_path):
    setattr(srv, 'expire_next' if fate == 'expired' else 'cancel_next', 1)
    rs = reqs(6)
    c = client(srv, provider, tmp_path, batch=True)
    out = c.batch(rs, phase='synth')
    first, second = srv.jobs.values()
    ran = 0 if provider == 'gemini' and fate == 'expired' else 3             # an expired Gemini job returns nothing
    assert all(r.status == 'ok' for r in out) and len(second['requests']) == 6 - ran
    assert [r.batch_job for r in out] == [first['name']]*ran + [second['name']]*(6 - ran)
    assert [r.attempts for r in out] == [1]*ran + [2]*(6 - ran)
    assert sorted(srv.paid) == sorted(r.request_hash for r in out) and set(srv.paid.values()) == {1}   # each paid once
    states = [j['state'] for j in JobsFile(tmp_path).read().values()]
    assert states == ['collected', 'collected']

@pytest.mark.parametrize('provider', PROVIDERS)
def test_failing_polls_are_tried_again(srv, provider, tmp_path):
    "A job waits for hours: polls failing past their retries (503s) are tried again at the next poll."
    srv.polls, srv.poll_faults = 2, 5
    out = client(srv, provider, tmp_path, batch=True, max_retries=1).batch(reqs(3))
    assert all(r.status == 'ok' for r in out) and len(srv.jobs) == 1 and srv.poll_faults == 0

def test_jobs_that_never_finish_end_as_errors(srv, tmp_path):
    srv.expire_next, srv.partial = 99, 0.0
    out = client(srv, 'openai', tmp_path, batch=True, max_retries=1).batch(reqs(2))
    assert [r.status for r in out] == ['api_error']*2 and 'not run by 2 batch job(s)' in out[0].error and len(srv.jobs) == 2

@pytest.mark.parametrize('provider', ['openai', 'anthropic'])
def test_failed_validation_is_an_error_with_the_providers_message(srv, provider, tmp_path):
    srv.invalid_next = 'max_tokens: must be at most 4096'
    c = client(srv, provider, tmp_path, batch=True)
    with pytest.raises(ServiceError, match='must be at most 4096') as e: c.batch(reqs(2))
    assert SECRETS[f'{provider.upper()}_API_KEY'] not in str(e.value) and not srv.paid
    if provider == 'openai': assert [j['state'] for j in JobsFile(tmp_path).read().values()] == ['failed']
    out = c.batch(reqs(2))                                                   # fixed: a new job, no stale one polled
    assert all(r.status == 'ok' for r in out)

# --- a client killed while waiting: the resumed run polls the same job, nothing is paid twice ----------------------

KILLED = r'''
import sys
from llamaduo.config import ServiceCfg
from llamaduo.batch import batch_client
sys.path.insert(0, sys.argv[3]); from test_batch import cfg_for, reqs
class S: url = sys.argv[1]
c = batch_client(cfg_for(S, sys.argv[4], batch=True), cache_dir=sys.argv[2], progress=False)
c.run_id, c.folder = 'run-1', 'cycle_00'
c.batch(reqs(5), phase='synth')
print('finished')   # never: the job is held
'''

@pytest.mark.parametrize('provider', PROVIDERS)
def test_killed_while_waiting_then_resumed(srv, provider, tmp_path):
    srv.hold = True
    p = subprocess.Popen([sys.executable, '-c', KILLED, srv.url, str(tmp_path), str(Path(__file__).parent), provider],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        t0 = time.time()
        while not JobsFile(tmp_path).read():
            assert p.poll() is None, p.stderr.read()[-2000:]
            assert time.time() - t0 < 60, 'no job id written'
            time.sleep(0.02)
        job, = JobsFile(tmp_path).read().values()
        while not any(m == 'GET' for m, path in srv.log if job['id'].split('/')[-1] in path):   # it is polling
            assert time.time() - t0 < 60, 'the job is not polled'; time.sleep(0.02)
    finally:
        os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert job['state'] == 'open' and len(job['keys']) == 5 and not srv.paid   # on disk before the wait; nothing ran yet
    srv.hold = False
    c = client(srv, provider, tmp_path, batch=True); c.run_id, c.folder = 'run-1', 'cycle_00'
    out = c.batch(reqs(5), phase='synth')
    assert all(r.status == 'ok' and r.batch_job == job['id'] for r in out), [r.error for r in out]
    assert len(srv.jobs) == 1 and sorted(srv.paid) == sorted(job['keys']) and set(srv.paid.values()) == {1}
    assert [r.text for r in out] == [r.text for r in client(srv, provider, tmp_path/'online').batch(reqs(5))]
    led = CallCache(tmp_path).paid('run-1')
    assert sorted(x['key'] for x in led) == sorted(job['keys']) and {x['folder'] for x in led} == {'cycle_00'}
    assert JobsFile(tmp_path).read()[job['id']]['state'] == 'collected'
    assert all(r.cached for r in c.batch(reqs(5), phase='synth')) and len(srv.jobs) == 1

@pytest.mark.parametrize('provider', PROVIDERS)
def test_cancel_batch_jobs_then_collected(srv, provider, tmp_path):
    "Cancelled from another process while a client waits: the client collects what ran and resubmits the rest."
    srv.hold = True
    c = client(srv, provider, tmp_path, batch=True)
    t = threading.Thread(target=lambda: setattr(t, 'out', c.batch(reqs(4), phase='synth')), daemon=True); t.start()
    t0 = time.time()
    while not JobsFile(tmp_path).read(): assert time.time() - t0 < 30; time.sleep(0.02)
    other = client(srv, provider, tmp_path, batch=True)
    ids = other.cancel_batch_jobs()
    assert ids == list(JobsFile(tmp_path).read()) and JobsFile(tmp_path).read()[ids[0]]['status'] == 'cancelling'
    while len(srv.jobs) < 2: assert time.time() - t0 < 30; time.sleep(0.02)   # the rest went out again
    srv.hold = False; t.join(30)
    assert [r.status for r in t.out] == ['ok']*4 and [r.batch_job for r in t.out][:2] == [ids[0]]*2 and set(srv.paid.values()) == {1}
    assert other.cancel_batch_jobs() == []

def test_demo_jobs_lost_with_the_process_are_resubmitted(tmp_path):
    "The demo's jobs live in the process: an open job found after a restart is gone, its requests go out again."
    cfg = ServiceCfg(provider='demo', batch=True, batch_poll_s=0.01)
    c = batch_client(cfg, cache_dir=tmp_path, progress=False)
    keys = [c._body(r)[0] for r in reqs(3)]
    JobsFile(tmp_path).add(dict(id='demo-batch-gone', provider='demo', model='demo', endpoint=None, phase='synth', run=None, folder=None,
                                n=3, worst_usd=0.0, created=time.time(), state='open', status='submitted', keys=keys))
    out = c.batch(reqs(3), phase='synth')
    online = batch_client(ServiceCfg(provider='demo'), cache_dir=tmp_path/'on', progress=False).batch(reqs(3), phase='synth')
    assert [r.text for r in out] == [r.text for r in online] and all(r.attempts == 2 and r.batch_job != 'demo-batch-gone' for r in out)
    jobs = JobsFile(tmp_path).read()
    assert jobs['demo-batch-gone']['state'] == 'collected' and jobs['demo-batch-gone']['unfinished'] == 3 and len(jobs) == 2

# --- the budget cap holds for jobs (worst case at batch prices), and a resumed run pays nothing twice ----------------

def test_budget_cap_refuses_jobs_past_it(srv, tmp_path):
    kw = dict(prices={'fake-model': [1000.0, 1000.0]}, max_tokens=32)        # $0.0005 a token in batch
    c = client(srv, 'openai', tmp_path, batch=True, budget_usd=0.1, **kw); c.run_id = 'run-1'
    out = c.batch(reqs(12), phase='synth')
    st = [r.status for r in out]
    assert 'ok' in st and 'budget_exceeded' in st and set(st) <= {'ok', 'budget_exceeded'}
    assert CallCache(tmp_path).spent('run-1') == pytest.approx(c.spent) and c.spent <= 0.1
    jobs = list(JobsFile(tmp_path).read().values())
    assert len(jobs) >= 2 and all(j['worst_usd'] <= 0.1 for j in jobs)         # after a job settles, the room it freed is used
    with pytest.raises(BudgetExceeded): check_budget(out)
    c2 = client(srv, 'openai', tmp_path, batch=True, budget_usd=10.0, **kw); c2.run_id = 'run-1'
    assert all(r.status == 'ok' for r in c2.batch(reqs(12), phase='synth')) and set(srv.paid.values()) == {1} and len(srv.paid) == 12

# --- the progress bar shows each job's state and counts -----------------------------------------------------------

def test_progress_shows_job_state(srv, tmp_path, capfd):
    srv.polls = 4
    c = batch_client(cfg_for(srv, 'openai', batch=True), cache_dir=tmp_path, backoff=(0.01, 0.05), progress=True)
    c.batch(reqs(3), phase='synth', desc='synthesize')
    cap = capfd.readouterr(); err = cap.out + cap.err
    job, = srv.jobs
    assert f'submitted openai batch job {job} (3 requests' in err and str(tmp_path/'batch_jobs.json') in err
    assert f'{job}: in_progress 0/3' in err and 'synthesize' in err

# --- a server without a batch API: a warning, then online calls ---------------------------------------------------

def test_no_batch_api_falls_back_online(tmp_path):
    with FakeLLMServer() as s:
        c = batch_client(ServiceCfg(provider='openai', model='m', base_url=s.url + '/v1', batch=True), cache_dir=tmp_path, progress=False)
        with pytest.warns(UserWarning, match='no batch API'): out = c.batch(reqs(2))
        assert [r.status for r in out] == ['ok']*2 and 'echo' in out[0].text and out[0].batch_job is None and len(s.requests) == 2

# --- the judge phase gives the same judgments and metrics in batch mode (the demo, and the OpenAI SDK) ---------------

def _judge_set():
    tests = [task_record(make_task(c, random.Random(100*i + j))) for i, c in enumerate(CATEGORIES) for j in range(2)]
    right = [dict(prompt_id=t['prompt_id'], k=0, response=t['messages'][1]['content']) for t in tests]
    wrong = [dict(prompt_id=t['prompt_id'], k=1, response='I do not know.') for t in tests]
    return tests, right + wrong

@pytest.mark.parametrize('provider', ['demo', 'openai'])
def test_judge_phase_same_metrics_in_batch_mode(srv, provider, tmp_path):
    tests, resps = _judge_set()
    def judge(batch, cache):
        if provider == 'demo':
            cfg = load_recipe('demo', ['service.judge_noise=3', f'service.batch={json.dumps(batch)}', 'service.batch_poll_s=0.01']).service
            c = batch_client(cfg, cache_dir=cache, seed=42, progress=False)
        else: c = client(srv, 'openai', cache, batch=batch)
        return judge_responses(c, tests, resps, m=3), c
    on, _ = judge(False, tmp_path/'on')
    bt, c = judge(['judge'], tmp_path/'bt')
    drop = lambda js: [{k: v for k, v in j.items() if k != 'cost'} for j in js]
    assert drop(bt) == drop(on) and all(j['status'] == 'ok' for j in bt)
    assert compute_metrics(bt) == compute_metrics(on)
    assert compute_metrics(on)['overall']['precision']['C@50'] == 50          # right half pass, wrong half do not
    assert all(r['batch_job'] for r in c.records)

# --- the full demo loop in batch mode: the same metrics.csv (two small loops: 50-110 s on 2 cores, so run on demand:
#     LLAMADUO_BATCH_LOOP=1 .venv/bin/pytest tests/test_batch.py -k demo_loop) -----------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get('LLAMADUO_BATCH_LOOP'), reason='two demo loops (50-110 s); set LLAMADUO_BATCH_LOOP=1 to run')
def test_demo_loop_batch_mode_same_metrics(srv, tmp_path):
    "The demo loop against the batch server, online and with `service.batch: true`: the same metrics.csv."
    import pandas as pd
    from test_loop import SMALL, _sets
    over = {**SMALL, 'loop.papermill': False, 'service.provider': 'openai', 'service.model': 'fake-gpt', 'service.base_url': srv.url + '/v1',
            'service.max_tokens': 256, 'service.batch_poll_s': 0.05, 'service.prices': {'fake-gpt': [100.0, 100.0]}}
    df = {}
    for mode in (False, True):
        out = tmp_path/f'batch_{mode}'
        p = subprocess.run([sys.executable, '-m', 'llamaduo.cli', 'run', 'demo', '--out', str(out), *_sets({**over, 'service.batch': mode})],
                           capture_output=True, text=True, timeout=1800)
        assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
        df[mode] = pd.read_csv(out/'metrics.csv')
    assert len(srv.jobs) > 0 and len(df[True]) == len(df[False]) > 0
    pd.testing.assert_frame_equal(df[True].drop(columns='cost'), df[False].drop(columns='cost'))
    assert df[True].cost.tolist() == pytest.approx((df[False].cost / 2).tolist())   # the same calls at half price

@pytest.mark.parametrize('provider', PROVIDERS)
def test_tool_calls_in_batch_jobs_as_online(srv, provider, tmp_path):
    "A batch line offers the tools in the provider's own form and its result carries the calls, as online."
    from llamaduo.demo import DEMO_TOOLS
    rs = [{'messages': [{'role': 'user', 'content': f'Use the calculator: what is {i} times 7?'}], 'tools': DEMO_TOOLS}
          for i in range(2, 5)]
    on = client(srv, provider, tmp_path/'online').batch(rs, phase='baseline')
    bt = client(srv, provider, tmp_path/'batch', batch=True).batch(rs, phase='baseline')
    assert all(r.status == 'ok' and r.batch_job for r in bt), [r.error for r in bt]
    assert [r.tool_calls for r in bt] == [r.tool_calls for r in on]
    assert [json.loads(r.tool_calls[0]['function']['arguments']) for r in bt] == [{'a': i, 'op': 'times', 'b': 7} for i in range(2, 5)]
