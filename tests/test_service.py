"""Acceptance tests of the service layer: the real SDKs over real local HTTP (`llamaduo.fakes`)."""
import asyncio, json, os, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
sys.path.insert(0, str(Path(__file__).parent))
from llamaduo.fakes import FakeLLMServer
from llamaduo.config import ServiceCfg
from llamaduo.service import ServiceClient, ServiceError, extract_json
from llamaduo.ledger import Reply, CallCache
from llamaduo.config import load_recipe
from llamaduo.run import Run, write_calls

SECRETS = {'OPENAI_API_KEY': 'sk-fake-openai-SECRET-0123456789', 'ANTHROPIC_API_KEY': 'sk-ant-fake-SECRET-0123456789',
           'GEMINI_API_KEY': 'AIza-fake-gemini-SECRET-0123456789'}
PROVIDERS = ['openai', 'anthropic', 'gemini']

@pytest.fixture(scope='module')
def server():
    with FakeLLMServer() as s: yield s

@pytest.fixture
def srv(server):
    server.reset(); server.latency = 0.0
    yield server
    server.reset(); server.latency = 0.0

@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.delenv('GOOGLE_API_KEY', raising=False)
    for k, v in SECRETS.items(): monkeypatch.setenv(k, v)

def client(srv, provider, cache_dir, **kw):
    base = srv.url + '/v1' if provider == 'openai' else srv.url
    cfg = dict(provider=provider, model='fake-model', base_url=base, max_retries=2, timeout=0.5, max_tokens=16)
    return ServiceClient(ServiceCfg(**{**cfg, **kw}), cache_dir=cache_dir, backoff=(0.01, 0.05), progress=False)

def msgs(text, system=None):
    return ([{'role': 'system', 'content': system}] if system else []) + [{'role': 'user', 'content': text}]

# --- one request per scenario: (script of faults, expected status, expected attempts)
SCENARIOS = {
    'ok':            ([], 'ok', 1),
    '429_then_500':  ([('429', 0.3), '500'], 'ok', 3),
    'always_500':    (['500', '500', '500'], 'api_error', 3),
    'timeout':       ([('timeout', 1.0)], 'ok', 2),
    'malformed':     (['malformed'], 'ok', 2),
    'truncated':     (['truncated'], 'ok', 2),
    'bad_request':   (['400'], 'api_error', 1),
}

@pytest.mark.parametrize('provider', PROVIDERS)
def test_faults_each_end_accounted(srv, provider, tmp_path):
    c = client(srv, provider, tmp_path)
    for name, (script, status, attempts) in SCENARIOS.items():
        srv.reset(script); t0 = time.monotonic()
        r, = c.batch([{'messages': msgs(f'{name} please', system='be brief')}], phase=name)
        dt = time.monotonic() - t0
        assert (name, r.status, r.attempts, len(srv.requests)) == (name, status, attempts, attempts), r.error
        if status == 'ok': assert r.text.startswith('echo: ') and r.tokens_in > 0 and r.tokens_out > 0
        else: assert r.text is None and r.error
        if name == '429_then_500':
            assert dt >= 0.3                                   # Retry-After honoured (the backoff alone is < 0.1 s)
            assert srv.requests[1]['t'] - srv.requests[0]['t'] >= 0.29
        u = c.usage()[name]
        assert (u['calls'], u['network_calls'], u['failures'], u['attempts']) == (1, 1, int(status != 'ok'), attempts)
    sent = [r['body'] for r in srv.requests]
    if provider == 'anthropic': assert sent[0]['system'] == 'be brief'
    if provider == 'gemini': assert 'be brief' in json.dumps(sent[0].get('systemInstruction'))

@pytest.mark.parametrize('provider', PROVIDERS)
def test_auth_error_is_clear_and_not_retried(srv, provider, tmp_path):
    c = client(srv, provider, tmp_path)
    srv.reset(['401'])
    with pytest.raises(ServiceError) as e: c.batch([{'messages': msgs('hi')}])
    env = {'openai': 'OPENAI_API_KEY', 'anthropic': 'ANTHROPIC_API_KEY', 'gemini': 'GEMINI_API_KEY'}[provider]
    assert env in str(e.value) and 'fake-model' in str(e.value) and provider in str(e.value)
    assert SECRETS[env] not in str(e.value)
    assert len(srv.requests) == 1

@pytest.mark.parametrize('provider', PROVIDERS)
def test_mixed_faults_in_a_concurrent_batch(srv, provider, tmp_path):
    "Faults hit whichever requests arrive first; every request still ends ok or api_error, attempts add up."
    c = client(srv, provider, tmp_path, max_in_flight=4, max_retries=3)
    srv.reset([('429', 0.05), '500', 'malformed', 'truncated', '400', '500', ('timeout', 0.8), '500', '500', '500', '500'])
    rs = c.batch([{'messages': msgs(f'q{i}')} for i in range(12)], phase='judge')
    assert len(rs) == 12 and all(r.status in ('ok', 'api_error') for r in rs)
    assert sum(r.attempts for r in rs) == len(srv.requests) == c.usage()['judge']['attempts']
    assert sum(r.status == 'api_error' for r in rs) == c.usage()['judge']['failures'] >= 1  # the 400 at least
    assert [r.text for r in rs if r.status == 'ok'] == [f'echo: q{i}' for i, r in enumerate(rs) if r.status == 'ok']

def test_json_mode_native(srv, tmp_path):
    for provider in PROVIDERS:
        c = client(srv, provider, tmp_path/provider)
        r, = c.batch([{'messages': msgs('grade'), 'json': True}])
        if provider != 'anthropic': assert extract_json(r.text) == {'echo': 'grade'}   # anthropic: asked in the system prompt
    openai_, anthropic_, gemini_ = [r['body'] for r in srv.requests]
    assert openai_['response_format'] == {'type': 'json_object'}
    assert 'JSON' in anthropic_['system']
    assert gemini_['generationConfig']['responseMimeType'] == 'application/json'

def test_cache_zero_calls_on_rerun(srv, tmp_path):
    reqs = [{'messages': msgs(f'q{i}'), 'sample': 0} for i in range(5)]
    r1 = client(srv, 'openai', tmp_path).batch(reqs, phase='judge')
    assert len(srv.requests) == 5
    c2 = client(srv, 'openai', tmp_path)                   # a new process would see the same files
    r2 = c2.batch(reqs, phase='judge')
    assert len(srv.requests) == 5 and c2.usage()['judge']['network_calls'] == 0 and c2.usage()['judge']['cached'] == 5
    assert [r.text for r in r2] == [r.text for r in r1] and all(r.cached for r in r2)
    assert [r.request_hash for r in r2] == [r.request_hash for r in r1]
    c2.batch([{**r, 'sample': 1} for r in reqs])            # M gradings are M distinct calls
    assert len(srv.requests) == 10
    c2.batch([{**reqs[0], 'temperature': 0.0}])             # the body is part of the key
    assert len(srv.requests) == 11

def test_errors_never_cached(srv, tmp_path):
    c = client(srv, 'openai', tmp_path)
    srv.reset(['400'])
    assert c.batch([{'messages': msgs('x')}])[0].status == 'api_error'
    r, = c.batch([{'messages': msgs('x')}])
    assert (r.status, r.cached, len(srv.requests)) == ('ok', False, 2)

def test_duplicates_in_one_batch_run_once(srv, tmp_path):
    rs = client(srv, 'openai', tmp_path).batch([{'messages': msgs('same')}]*3)
    assert len(srv.requests) == 1 and [r.text for r in rs] == ['echo: same']*3

def test_budget_stop_and_resume(srv, tmp_path):
    kw = dict(prices={'fake-model': [1000.0, 1000.0]}, max_in_flight=1)  # $0.001 a token
    c = client(srv, 'openai', tmp_path, budget_usd=0.1, **kw)
    reqs = [{'messages': msgs(f'question number {i}')} for i in range(40)]
    rs = c.batch(reqs, phase='synth')
    st = [r.status for r in rs]
    assert 'ok' in st and 'budget_exceeded' in st and set(st) <= {'ok', 'budget_exceeded'}
    assert c.spent <= 0.1 and len(srv.requests) == st.count('ok') == c.usage()['synth']['network_calls']
    assert c.usage()['synth']['budget_exceeded'] == st.count('budget_exceeded')
    c2 = client(srv, 'openai', tmp_path, budget_usd=10.0, **kw)  # resume with a larger budget: nothing re-paid
    rs2 = c2.batch(reqs, phase='synth')
    assert all(r.status == 'ok' for r in rs2) and len(srv.requests) == 40
    assert sum(r.cached for r in rs2) == st.count('ok')

def test_budget_is_per_run_checked_in_flight_and_ledgered(srv, tmp_path):
    "Two clients of one run (two processes) share the cap; only calls in flight are reserved; every paid call is in the ledger."
    kw = dict(prices={'fake-model': [1000.0, 1000.0]}, max_in_flight=4, max_tokens=4)    # $0.001 a token
    reqs = [{'messages': msgs(f'question number {i} of many')} for i in range(160)]
    c1 = client(srv, 'openai', tmp_path, budget_usd=0.5, **kw); c1.run_id, c1.folder = 'run-1', 'cycle_00'
    rs = c1.batch(reqs[:80], phase='judge')
    paid = CallCache(tmp_path).spent('run-1')
    assert 0.9*0.5 <= paid <= 0.5 and paid == pytest.approx(sum(r.cost for r in rs))   # spends up to the cap, not past it
    c2 = client(srv, 'openai', tmp_path, budget_usd=0.5, **kw); c2.run_id, c2.folder = 'run-1', 'cycle_01'  # a resumed process
    n, rs2 = len(srv.requests), c2.batch(reqs[80:], phase='judge')
    worst = (len(reqs[0]['messages'][0]['content'])//3 + 4 + 4) * 0.001                # one call's worst case
    assert rs2[-1].status == 'budget_exceeded' and len(srv.requests) - n <= 0.5*0.1/worst + 1
    assert 0.5 - worst <= CallCache(tmp_path).spent('run-1') <= 0.5                    # the cap holds across processes
    c3 = client(srv, 'openai', tmp_path, budget_usd=0.5, **kw); c3.run_id = 'run-2'      # another run: its own budget
    assert any(r.status == 'ok' for r in c3.batch(reqs[80:90], phase='judge'))
    led = CallCache(tmp_path).paid('run-1', 'cycle_00')
    assert len(led) == sum(r.status == 'ok' for r in rs) and {r['phase'] for r in led} == {'judge'}
    assert len(CallCache(tmp_path).paid('run-1', 'cycle_01')) == sum(r.status == 'ok' for r in rs2)

def test_concurrency_bound(srv, tmp_path):
    srv.latency = 0.05
    c = client(srv, 'openai', tmp_path, max_in_flight=4)
    rs = c.batch([{'messages': msgs(f'q{i}')} for i in range(32)])
    assert all(r.status == 'ok' for r in rs) and srv.max_in_flight == 4

def test_batch_inside_running_loop(srv, tmp_path):
    c = client(srv, 'openai', tmp_path)
    async def main(): return c.batch([{'messages': msgs('from a kernel')}]), await c.abatch([{'messages': msgs('async')}])
    (a,), (b,) = asyncio.run(main())
    assert (a.text, b.text) == ('echo: from a kernel', 'echo: async')

def test_secrets_never_written(srv, tmp_path):
    run = tmp_path/'run'; r = Run(run); run.mkdir()
    for provider in PROVIDERS:
        c = client(srv, provider, run/'cache')
        srv.reset(['500', '400'])
        rs = c.batch([{'messages': msgs(f'{provider} {i}')} for i in range(3)], phase='judge')
        assert {r.status for r in rs} == {'ok', 'api_error'}
        env = {'openai': 'OPENAI_API_KEY', 'anthropic': 'ANTHROPIC_API_KEY', 'gemini': 'GEMINI_API_KEY'}[provider]
        assert any(SECRETS[env] in json.dumps(r['headers']) for r in srv.requests)  # the key went where it must, only there
        r.write_config(load_recipe({'service': dict(provider=provider, model='fake-model')}))
        write_calls(r, r.cycle(0), f'judge_{provider}', c.records)
        srv.reset(['401'])
        with pytest.raises(ServiceError): c.batch([{'messages': msgs('bad key')}])
        assert not any(v in repr(c) for v in SECRETS.values())
    files = [p for p in run.rglob('*') if p.is_file()]
    assert {'calls.sqlite', 'usage.json', 'calls.jsonl'} <= {p.name for p in files}
    for p in files:
        data = p.read_bytes()
        for v in SECRETS.values(): assert v.encode() not in data, f'{v} leaked into {p}'
    usage = json.loads((run/'cycle_00'/'usage.json').read_text())
    assert usage['phases']['judge']['calls'] == 9 and usage['phases']['judge']['failures'] == 3   # the folder's whole log
    assert len((run/'cycle_00'/'calls.jsonl').read_text().splitlines()) == 9   # 3 per provider

def test_missing_key_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv('GEMINI_API_KEY')
    with pytest.raises(ServiceError, match='GEMINI_API_KEY or GOOGLE_API_KEY'):
        ServiceClient(ServiceCfg(provider='gemini', model='gemini-2.5-flash'), cache_dir=tmp_path)
    c = ServiceClient(ServiceCfg(provider='openai', model='m', base_url='http://127.0.0.1:9/v1', api_key_env='NO_SUCH_KEY'), cache_dir=tmp_path)
    assert c.key_env == 'NO_SUCH_KEY'                      # compatible servers without a key get 'EMPTY'

def test_demo_provider_uses_demo_reply(tmp_path):
    from llamaduo.demo_service import demo_reply
    cfg = ServiceCfg(provider='demo', judge_noise=10)
    m = msgs('<instruction>\nWhat is 2+2?\n</instruction>\n<reference>\n4\n</reference>\n<response>\n4\n</response>')
    c = ServiceClient.from_config(cfg, cache_dir=tmp_path, seed=7, progress=False)
    rs = c.batch([{'messages': m, 'sample': s, 'json': True} for s in range(4)], phase='judge')
    assert [r.text for r in rs] == [demo_reply(m, seed=7, sample=s, noise=10) for s in range(4)]
    assert all(r.status == 'ok' and r.tokens_in > 0 and r.cost == 0 for r in rs)
    assert c.usage()['judge']['network_calls'] == 4
    c2 = ServiceClient.from_config(cfg, cache_dir=tmp_path, seed=8, progress=False)   # another seed, another answer
    c2.batch([{'messages': m}]); assert c2.usage()['default']['cached'] == 0

# --- a real third-party OpenAI-compatible server: `transformers serve` on the tiny demo model
def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.mark.slow
def test_transformers_serve(tmp_path):
    from llamaduo.demo import build_demo_base
    model = build_demo_base(tmp_path/'base')
    port, env = _free_port(), {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1'}
    exe = Path(sys.executable).parent/'transformers'
    proc = subprocess.Popen([str(exe), 'serve', str(model), '--host', '127.0.0.1', '--port', str(port), '--device', 'cpu'],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url, t0 = f'http://127.0.0.1:{port}', time.monotonic()
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                if urllib.request.urlopen(url + '/health', timeout=1).status == 200: break
            except OSError: pass
            assert time.monotonic() - t0 < 60, 'transformers serve did not come up'
            time.sleep(0.3)
        cfg = ServiceCfg(provider='openai', model=str(model), base_url=url + '/v1', max_tokens=8, temperature=0.0, max_in_flight=2)
        c = ServiceClient(cfg, cache_dir=tmp_path/'cache', progress=False)
        reqs = [{'messages': msgs(f'Classify the sentiment: I love it {i}')} for i in range(3)]
        rs = c.batch(reqs, phase='judge')
        assert all(r.status == 'ok' and r.text is not None and r.tokens_in > 0 and 0 < r.tokens_out <= 8 for r in rs), [r.error for r in rs]
        assert all(c.batch(reqs)[i].cached for i in range(3))
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()

# --- tools: offered, called and answered in each provider's own protocol, through its SDK ---------------------------

@pytest.mark.parametrize('provider', PROVIDERS)
def test_tool_calls_through_each_protocol(provider, tmp_path):
    "A request offering tools gets the service's calls back in OpenAI's schema; a result goes back as the protocol's own."
    from llamaduo.fakes import ToolLLMServer
    from llamaduo.demo import DEMO_TOOLS
    ask = [{'role': 'system', 'content': 'Use the tools.'}, {'role': 'user', 'content': 'What will the weather be in Oslo tomorrow?'}]
    with ToolLLMServer() as s:
        c = client(s, provider, tmp_path)
        r, plain = c.batch([{'messages': ask, 'tools': DEMO_TOOLS}, {'messages': ask}], phase='baseline')
        assert r.status == 'ok' and plain.status == 'ok', (r.error, plain.error)
        got = [(x['function']['name'], json.loads(x['function']['arguments'])) for x in r.tool_calls]
        assert got == [('get_weather', {'city': 'Oslo', 'day': 'tomorrow'})] and r.tool_calls[0]['id']
        assert plain.tool_calls is None and 'get_weather' in plain.text        # no tools offered: text
        with_tools = [q['body'] for q in s.requests if 'tools' in q['body']]     # the batch sends both at once
        assert len(with_tools) == 1 and len(s.requests) == 2, s.requests
        sent = with_tools[0]
        if provider == 'anthropic': assert sent['tools'][0]['input_schema'] == DEMO_TOOLS[0]['function']['parameters']
        elif provider == 'gemini': assert sent['tools'][0]['functionDeclarations'][0]['name'] == 'get_weather'
        else: assert sent['tools'] == DEMO_TOOLS
        follow = ask + [{'role': 'assistant', 'content': None, 'tool_calls': r.tool_calls},
                        {'role': 'tool', 'tool_call_id': r.tool_calls[0]['id'], 'content': 'rain, 4 degrees'}]
        s.reset()
        f, = c.batch([{'messages': follow, 'tools': DEMO_TOOLS}], phase='baseline')
        assert f.status == 'ok' and f.tool_calls is None and f.text, f.error
        body = s.requests[0]['body']
        if provider == 'openai':
            assert body['messages'][2]['tool_calls'][0]['id'] == r.tool_calls[0]['id'] and body['messages'][3]['tool_call_id']
        elif provider == 'anthropic':
            use, res = body['messages'][1]['content'][0], body['messages'][2]['content'][0]
            assert (use['type'], use['input'], res['type'], res['tool_use_id'], res['content']) == (
                'tool_use', {'city': 'Oslo', 'day': 'tomorrow'}, 'tool_result', use['id'], 'rain, 4 degrees')
        else:
            call, res = body['contents'][1]['parts'][0], body['contents'][2]['parts'][0]
            assert call['functionCall']['args'] == {'city': 'Oslo', 'day': 'tomorrow'}
            assert res['functionResponse'] == {'name': 'get_weather', 'response': {'result': 'rain, 4 degrees'}}
    again, = client(s, provider, tmp_path).batch([{'messages': ask, 'tools': DEMO_TOOLS}], phase='baseline')
    assert again.cached and again.tool_calls == r.tool_calls          # the cache keeps the calls
