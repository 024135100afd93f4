"Capture, route, shadow report and log import (llamaduo.capture): the official OpenAI SDK through the proxy to a local upstream."
import asyncio, hashlib, json, random, time
from pathlib import Path
import httpx2, openai, pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from llamaduo.capture import capture_app
from llamaduo.proxy import serving
from llamaduo.secrets import scrub
from llamaduo.logs import import_log
from llamaduo.route import route_app, shadow_report
from llamaduo.data import DataError, load_coverage, prompt_id, record_id
from llamaduo.files import read_jsonl

KEY = 'sk-test-Qm9vYmFyYmF6cXV4MTIzNDU2Nzg5'

def upstream(name='upstream', answer=None):
    "A deterministic OpenAI-compatible upstream with faults chosen by the requested model; it keeps the headers it saw."
    app, seen = FastAPI(), []
    answer = answer or (lambda text: f'{name} says: {text[::-1]}')
    @app.post('/v1/chat/completions')
    async def chat(request: Request):
        raw = await request.body(); req = json.loads(raw); seen.append(dict(request.headers))
        model, text = req['model'], answer(req['messages'][-1]['content'])
        if model == 'fail-400':
            return JSONResponse({'error': {'message': 'bad thing', 'type': 'invalid_request_error'}}, 400, headers={'x-upstream': 'yes'})
        if model == 'fail-503': return PlainTextResponse('overloaded, try later', 503)
        if model == 'slow': await asyncio.sleep(2)
        cid = 'chatcmpl-' + hashlib.sha1(raw).hexdigest()[:12]
        usage = {'prompt_tokens': 7, 'completion_tokens': len(text.split()), 'total_tokens': 7 + len(text.split())}
        if not req.get('stream'):
            return JSONResponse({'id': cid, 'object': 'chat.completion', 'created': 1, 'model': f'{model}-0613', 'usage': usage,
                                 'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': text}, 'finish_reason': 'stop'}]},
                                headers={'x-upstream': 'yes'})
        def chunk(delta, fin=None, **kw):
            return 'data: ' + json.dumps({'id': cid, 'object': 'chat.completion.chunk', 'created': 1, 'model': f'{model}-0613',
                                          'choices': [{'index': 0, 'delta': delta, 'finish_reason': fin}], **kw}) + '\n\n'
        async def events():
            yield chunk({'role': 'assistant', 'content': ''})
            for i, w in enumerate(text.split(' ')):
                yield chunk({'content': w if i == 0 else ' ' + w}); await asyncio.sleep(0)
                if model == 'drop' and i == 1: raise RuntimeError('upstream died mid-stream')
            yield chunk({}, 'stop')
            if (req.get('stream_options') or {}).get('include_usage'): yield 'data: ' + json.dumps({'id': cid, 'choices': [], 'usage': usage}) + '\n\n'
            yield 'data: [DONE]\n\n'
        return StreamingResponse(events(), media_type='text/event-stream')
    app.state.seen = seen
    return app

@pytest.fixture
def servers(tmp_path):
    "The upstream and a capture proxy in front of it, both served by uvicorn on free ports."
    up = upstream()
    with serving(up) as up_url:
        cap = capture_app(up_url + '/v1', tmp_path/'out', tag='support', timeout=1.0)
        with serving(cap) as cap_url: yield up, up_url, cap, cap_url, tmp_path/'out'

def sdk(url): return openai.OpenAI(base_url=url + '/v1', api_key=KEY, max_retries=0)
MSGS = [{'role': 'system', 'content': 'You answer tersely.'},
        {'role': 'user', 'content': f'My key is {KEY} and my mail is jo.doe@example.com; reverse this sentence please'}]

def recorded(cap, out, n, timeout=5.0):
    "The captured records once `n` are written (a non-streamed answer's record is written just after the client has it)."
    t0 = time.monotonic()
    while cap.state.stats['records'] < n and time.monotonic() - t0 < timeout: time.sleep(0.01)
    return read_jsonl(out/'captured.jsonl')

def files_text(d: Path) -> str: return ''.join(p.read_text(errors='replace') for p in d.rglob('*') if p.is_file())

def test_sdk_answers_identical_and_records_complete(servers):
    up, up_url, cap, cap_url, out = servers
    direct, via = sdk(up_url), sdk(cap_url)
    a = direct.chat.completions.create(model='gpt-4o', messages=MSGS)
    b = via.chat.completions.create(model='gpt-4o', messages=MSGS)
    assert a.model_dump() == b.model_dump()
    sa = [c.model_dump() for c in direct.chat.completions.create(model='gpt-4o', messages=MSGS[1:], stream=True, stream_options={'include_usage': True})]
    sb = [c.model_dump() for c in via.chat.completions.create(model='gpt-4o', messages=MSGS[1:], stream=True, stream_options={'include_usage': True})]
    assert sa == sb and len(sb) > 5
    # byte for byte, headers included (the upstream's own content-type, content-length and custom header)
    ra, rb = httpx2.post(up_url + '/v1/chat/completions', json={'model': 'm', 'messages': MSGS}), httpx2.post(cap_url + '/v1/chat/completions', json={'model': 'm', 'messages': MSGS})
    assert (ra.status_code, ra.content, ra.headers.multi_items()) == (rb.status_code, rb.content, rb.headers.multi_items())
    # the client's key reached the upstream, unchanged
    assert [h['authorization'] for h in up.state.seen[:4]] == [f'Bearer {KEY}'] * 4
    recs = recorded(cap, out, 3)
    assert len(recs) == 3 and cap.state.stats['records'] == 3
    plain, streamed = recs[0], recs[1]
    user = 'My key is <KEY> and my mail is <EMAIL>; reverse this sentence please'
    assert plain['messages'] == [MSGS[0], {'role': 'user', 'content': user}, {'role': 'assistant', 'content': scrub(a.choices[0].message.content)}]
    assert streamed['messages'][-1]['content'] == scrub(''.join(c['choices'][0]['delta']['content'] or '' for c in sb if c['choices']))
    assert streamed['usage'] == {k: v for k, v in sb[-1]['usage'].items() if v is not None} and plain['usage'] == a.usage.model_dump(exclude_none=True)
    for r in recs:
        assert (r['category'], r['tag'], r['source'], r['cycle'], r['seed_prompt_id'], r['finish_reason']) == ('support', 'support', 'captured', 0, None, 'stop')
        assert r['generator'].endswith('-0613') and r['model'] in ('gpt-4o', 'm') and 0 < r['latency_s'] < 5 and r['time'] > 1.7e9
        assert r['prompt_id'] == record_id(r['messages'], 'support')
    # the folder loads as a coverage dataset (the same whole prompt twice: the copy dropped, counted)
    st = {}
    loaded = load_coverage(str(out), stats=st)[None]
    assert len(loaded) == 2 and st['duplicates_dropped'] == 1 and loaded[0]['messages'] == plain['messages'] and loaded[0]['source'] == 'captured'
    text = files_text(out)
    assert KEY not in text and 'jo.doe@example.com' not in text and 'Qm9vYmFy' not in text

def test_a_thread_captured_turn_by_turn_is_kept_whole_and_chats_that_open_alike_are_all_kept(servers, capsys):
    up, up_url, cap, cap_url, out = servers
    via = sdk(cap_url)
    def chat(*users):
        msgs = [{'role': 'system', 'content': 'You are the help desk of a camping shop.'}]
        for u in users:   # the app sends the whole history with every turn, as chat apps do
            msgs.append({'role': 'user', 'content': u})
            reply = via.chat.completions.create(model='gpt-4o', messages=msgs)
            msgs.append({'role': 'assistant', 'content': reply.choices[0].message.content})
        return msgs
    thread = chat('Hi', 'My stove leaks gas at the valve', 'It is order NW-20931')
    other = chat('Hi', 'Do you sell tent pegs?')
    recs = recorded(cap, out, 5)
    assert len(recs) == 5
    st = {}
    loaded = load_coverage(str(out), stats=st)[None]
    # one record per turn, with its history; the second chat's first turn repeats the thread's ("Hi"): dropped, counted
    assert len(loaded) == 4 and st['duplicates_dropped'] == 1
    assert thread in [r['messages'] for r in loaded] and other in [r['messages'] for r in loaded]
    from llamaduo.curate import curate
    rep = curate(str(out/'captured.jsonl'), str(out.parent/'curated'), quiet=False)
    assert rep['kept'] == 4 and rep['dropped_on_load'] == {'duplicate conversation': 1}
    assert '(1 duplicate conversation dropped on load)' in capsys.readouterr().out

def test_what_is_not_recorded_is_counted_by_path_and_warned_once(servers, capsys):
    up, up_url, cap, cap_url, out = servers
    for _ in range(3): httpx2.post(cap_url + '/v1/embeddings', json={'model': 'e', 'input': 'hello'})
    httpx2.get(cap_url + '/v1/models')
    assert cap.state.stats['not recorded: /v1/embeddings'] == 3 and not any('/v1/models' in k for k in cap.state.stats)
    assert capsys.readouterr().err.count('requests to /v1/embeddings are passed through but not recorded') == 1

def test_upstream_errors_pass_through_and_record_nothing(servers):
    up, up_url, cap, cap_url, out = servers
    for model, status in (('fail-400', 400), ('fail-503', 503)):
        body = {'model': model, 'messages': MSGS}
        ra, rb = httpx2.post(up_url + '/v1/chat/completions', json=body), httpx2.post(cap_url + '/v1/chat/completions', json=body)
        assert rb.status_code == ra.status_code == status and rb.content == ra.content and rb.headers.multi_items() == ra.headers.multi_items()
    with pytest.raises(openai.BadRequestError) as e: sdk(cap_url).chat.completions.create(model='fail-400', messages=MSGS)
    assert e.value.status_code == 400 and e.value.body['message'] == 'bad thing'
    # a stream dropped mid-way: the client's stream breaks too, and nothing is recorded
    with pytest.raises(Exception): list(sdk(up_url).chat.completions.create(model='drop', messages=MSGS, stream=True))
    with pytest.raises(Exception): list(sdk(cap_url).chat.completions.create(model='drop', messages=MSGS, stream=True))
    # an upstream slower than the proxy's timeout: a 504 with an OpenAI-style error
    r = httpx2.post(cap_url + '/v1/chat/completions', json={'model': 'slow', 'messages': MSGS}, timeout=10)
    assert r.status_code == 504 and r.json()['error']['type'] == 'upstream_timeout'
    assert (out/'captured.jsonl').read_text() == '' and cap.state.stats['records'] == 0
    with pytest.raises(DataError, match='no rows'): load_coverage(str(out))

def test_unreachable_upstream_is_502(tmp_path):
    cap = capture_app('http://127.0.0.1:9/v1', tmp_path/'out')
    async def go():
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(cap), base_url='http://c') as c:
            return await c.post('/v1/chat/completions', json={'model': 'm', 'messages': MSGS})
    r = asyncio.run(go())
    assert r.status_code == 502 and r.json()['error']['type'] == 'upstream_unreachable'

def test_concurrent_requests_one_whole_record_each(servers):
    up, up_url, cap, cap_url, out = servers
    async def go():
        async with httpx2.AsyncClient(base_url=cap_url, timeout=30) as c:
            rs = await asyncio.gather(*[c.post('/v1/chat/completions', json={'model': 'm', 'stream': i % 2 == 0,
                                       'messages': [{'role': 'user', 'content': f'request number {i} ' + 'pad ' * 300}]}) for i in range(60)])
        return [r.status_code for r in rs]
    assert asyncio.run(go()) == [200] * 60
    recorded(cap, out, 60)
    lines = (out/'captured.jsonl').read_text().splitlines()
    assert len(lines) == 60
    got = sorted(int(json.loads(l)['messages'][0]['content'].split()[2]) for l in lines)
    assert got == list(range(60))

# --- route ------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def two_sides():
    "A local and a service upstream, served by uvicorn on free ports."
    loc, svc = upstream('local'), upstream('service')
    with serving(loc) as loc_url, serving(svc) as svc_url: yield loc, loc_url, svc, svc_url

def test_route_share_within_five_points(two_sides):
    loc, loc_url, svc, svc_url = two_sides
    def run(share, seed, n=1000):
        app = route_app(loc_url + '/v1', svc_url + '/v1', share=share, seed=seed, local_model='tiny')
        with serving(app) as url, httpx2.Client(base_url=url) as c:
            rs = [c.post('/v1/chat/completions', json={'model': 'gpt-4o', 'messages': [{'role': 'user', 'content': f'prompt {i}'}]}) for i in range(n)]
        return [(r.headers['x-llamaduo-route'], r.json()['model'], r.json()['choices'][0]['message']['content'].split()[0]) for r in rs], app.state.counts
    first = {}
    for share in (0.1, 0.5):
        sides, counts = first[share] = run(share, 0)
        n = sum(s == 'local' for s, _, _ in sides)
        assert abs(n / 1000 - share) <= 0.05 and counts['local'] == n and counts['service'] == 1000 - n
        assert all((s, m, who) in (('local', 'tiny-0613', 'local'), ('service', 'gpt-4o-0613', 'service')) for s, m, who in sides)
    again, other = run(0.1, 0, 200)[0], run(0.1, 1, 200)[0]
    assert again == first[0.1][0][:200] and [s for s, *_ in other] != [s for s, *_ in again]   # deterministic, by seed

def demo_prompts(n):
    from llamaduo.demo import make_task, CATEGORIES
    rng = random.Random(0)
    return [(c, make_task(c, rng)) for c in CATEGORIES for _ in range(n)]

def shadow_run(tmp_path, n=3):
    "Shadow mode over demo tasks: the service answers right, the local model right on even requests only."
    from llamaduo.demo import solve
    truth = lambda text: solve(text)[1]
    svc = upstream('service', answer=truth)
    loc = upstream('local', answer=lambda text: truth(text) if int(hashlib.sha1(text.encode()).hexdigest(), 16) % 2 == 0 else 'no idea')
    tasks = demo_prompts(n)
    async def go(url):
        async with httpx2.AsyncClient(base_url=url, timeout=30) as c:
            return await asyncio.gather(*[c.post('/v1/chat/completions', headers={'x-llamaduo-tag': cat, 'authorization': f'Bearer {KEY}'},
                                                 json={'model': 'gpt-4o', 'stream': i % 2 == 1, 'messages': [{'role': 'user', 'content': t['prompt']}]})
                                          for i, (cat, t) in enumerate(tasks)])
    with serving(svc) as svc_url, serving(loc) as loc_url:
        with serving(app := route_app(loc_url + '/v1', svc_url + '/v1', shadow=True, out=tmp_path/'shadow')) as url: rs = asyncio.run(go(url))
        # leaving `serving` shut the router down, which waits for every queued triple
    return app, tasks, rs, svc, loc

def test_route_is_sticky_per_conversation(two_sides):
    "Every turn of a conversation (a tool result's follow-up too) goes to the side its first turn went to."
    loc, loc_url, svc, svc_url = two_sides
    app = route_app(loc_url + '/v1', svc_url + '/v1', share=0.5, seed=3)
    with serving(app) as url:
        client = openai.OpenAI(base_url=url + '/v1', api_key=KEY, max_retries=0)
        sides = {}
        for c in range(30):
            msgs = [{'role': 'system', 'content': 'You book tables.'}, {'role': 'user', 'content': f'Table for {c}, please'}]
            for turn in range(3):
                r = client.chat.completions.with_raw_response.create(model='gpt-4o', messages=msgs)
                sides.setdefault(c, set()).add(r.headers['x-llamaduo-route'])
                msgs += [{'role': 'assistant', 'content': r.parse().choices[0].message.content},
                         {'role': 'user', 'content': f'turn {turn}'}]
            # the app names its sessions: the header wins over the opening
            h = {'X-Llamaduo-Session': f'session-{c % 2}'}
            r = client.chat.completions.with_raw_response.create(model='gpt-4o', messages=msgs[:2], extra_headers=h)
            sides.setdefault(f'session-{c % 2}', set()).add(r.headers['x-llamaduo-route'])
    assert all(len(v) == 1 for v in sides.values()), sides
    assert {next(iter(v)) for k, v in sides.items() if isinstance(k, int)} == {'local', 'service'}   # both sides used

def test_shadow_queues_every_triple_and_answers_with_the_service(tmp_path):
    app, tasks, rs, svc, loc = shadow_run(tmp_path)
    assert all(r.status_code == 200 for r in rs) and len(svc.state.seen) == len(loc.state.seen) == len(tasks)
    assert rs[0].json()['model'] == 'gpt-4o-0613' and 'data: [DONE]' in rs[1].text
    triples = read_jsonl(tmp_path/'shadow'/'shadow.jsonl')
    assert len(triples) == len(tasks) == app.state.counts['queued'] == app.state.counts['shadow']
    by_prompt = {t['request']['messages'][0]['content']: t for t in triples}
    from llamaduo.demo import solve
    for cat, task in tasks:
        t = by_prompt[task['prompt']]
        assert t['category'] == cat and t['service']['text'] == solve(task['prompt'])[1] and t['service']['status'] == t['local']['status'] == 200
        assert t['local']['text'] in (t['service']['text'], 'no idea') and t['prompt_id'] == prompt_id(task['prompt'], cat)
    assert KEY not in files_text(tmp_path/'shadow')
    # the app's key went to the service only
    assert all(h['authorization'] == f'Bearer {KEY}' for h in svc.state.seen) and not any('authorization' in h for h in loc.state.seen)

def test_shadow_report_with_the_demo_judge(tmp_path):
    shadow_run(tmp_path, n=2)
    rep = shadow_report(str(tmp_path/'shadow'), 'demo')
    assert rep['triples'] == rep['pairs'] == 8 and rep['unanswered'] == 0 and rep['judge'] == 'demo/demo'
    assert rep['win'] + rep['tie'] + rep['loss'] + rep['error'] == 8
    assert sorted(rep['per_category']) == ['classification', 'closed_qa', 'coding', 'summarization']
    assert sum(c['pairs'] for c in rep['per_category'].values()) == 8
    assert json.loads((tmp_path/'shadow'/'shadow_report.json').read_text()) == rep
    # every pair judged in both orders; a verdict the demo judge gives matches the truth (loss iff the local answer is wrong)
    triples = {t['prompt_id']: t for t in read_jsonl(tmp_path/'shadow'/'shadow.jsonl')}
    pairs = read_jsonl(tmp_path/'shadow'/'pairwise.jsonl')
    assert len(pairs) == 8 and all(p['raw_ab'] is not None and p['raw_ba'] is not None for p in pairs)
    for p in pairs:
        t = triples[p['prompt_id'].rsplit(':', 1)[0]]
        if p['outcome'] != 'error': assert p['outcome'] == ('loss' if t['local']['text'] == 'no idea' else 'tie'), (p, t)

class ScriptedJudge:
    "A pairwise judge preferring the response that is not 'no idea' (ties when both are), in every order."
    def batch(self, reqs, phase='', desc=''):
        from types import SimpleNamespace
        out = []
        for r in reqs:
            text = r['messages'][0]['content']
            a, b = (text.split(f'<response_{x}>\n')[1].split(f'\n</response_{x}>')[0] for x in 'ab')
            w = 'tie' if (a == 'no idea') == (b == 'no idea') else 'B' if a == 'no idea' else 'A'
            out.append(SimpleNamespace(text=json.dumps({'reason': '.', 'winner': w}), status='ok'))
        return out

def test_shadow_report_counts_per_category(tmp_path, monkeypatch):
    from llamaduo.service import ServiceClient
    _, tasks, _, _, _ = shadow_run(tmp_path, n=3)
    monkeypatch.setattr(ServiceClient, 'from_config', classmethod(lambda cls, *a, **k: ScriptedJudge()))
    rep = shadow_report(str(tmp_path/'shadow'), 'demo')
    triples = read_jsonl(tmp_path/'shadow'/'shadow.jsonl')
    wrong = {c: sum(t['local']['text'] == 'no idea' for t in triples if t['category'] == c) for c in rep['per_category']}
    assert 0 < sum(wrong.values()) < len(tasks)
    for c, r in rep['per_category'].items():
        assert (r['pairs'], r['loss'], r['tie'], r['win']) == (3, wrong[c], 3 - wrong[c], 0)
    assert rep['loss'] == sum(wrong.values()) and rep['not_worse_rate'] == round(100 * (12 - rep['loss']) / 12, 2)
    (tmp_path/'shadow'/'shadow.jsonl').write_text('{"request": {}}\n')
    with pytest.raises(DataError, match=r'shadow.jsonl, row 1: expected a shadow triple'): shadow_report(str(tmp_path/'shadow'))

# --- import ------------------------------------------------------------------------------------------------

def jl(path, rows): path.write_text(''.join(json.dumps(r) + '\n' for r in rows)); return path

def completion(text, status=200):
    return {'status_code': status, 'request_id': 'req_1', 'body': {'id': 'c', 'object': 'chat.completion', 'created': 1700000000, 'model': 'gpt-4o-2024-08-06',
            'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': text}, 'finish_reason': 'stop'}], 'usage': {'prompt_tokens': 3, 'completion_tokens': 2, 'total_tokens': 5}}}

def test_import_batch_output_and_messages_log(tmp_path):
    req = lambda i: {'model': 'gpt-4o', 'messages': [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': f'What is {i} + {i}? Reply to me@corp.com'}]}
    inp = jl(tmp_path/'batch_in.jsonl', [{'custom_id': f'task-{i}', 'method': 'POST', 'url': '/v1/chat/completions', 'body': req(i)} for i in range(4)])
    outp = jl(tmp_path/'batch_out.jsonl', [{'id': 'batch_req_3', 'custom_id': 'task-3', 'response': completion('6'), 'error': None},
                                          {'id': 'batch_req_1', 'custom_id': 'task-1', 'response': completion('2'), 'error': None},
                                          {'id': 'batch_req_2', 'custom_id': 'task-2', 'response': None, 'error': {'code': 'batch_expired', 'message': 'expired'}},
                                          {'id': 'batch_req_0', 'custom_id': 'task-0', 'response': completion('oops', 500), 'error': None}])
    res = import_log(str(outp), str(tmp_path/'data'), batch_input=str(inp), tag='math')
    assert res['records'] == 2 and res['skipped'] == {'failed request': 2}
    recs = read_jsonl(res['out'])
    assert [r['messages'] for r in recs] == [[{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': f'What is {i} + {i}? Reply to <EMAIL>'},
                                             {'role': 'assistant', 'content': a}] for i, a in ((3, '6'), (1, '2'))]
    assert all(r['source'] == 'imported' and r['category'] == 'math' and r['generator'] == 'gpt-4o-2024-08-06' and r['time'] == 1700000000 for r in recs)
    # a request/response log (the request on the line, no batch input) and a plain messages log, into the same folder
    jl(tmp_path/'pairs.jsonl', [{'request': req(7), 'response': completion('14')}, {'custom_id': 'x', 'request': {'body': req(8)}, 'response': completion('16')}])
    jl(tmp_path/'chats.jsonl', [{'messages': [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello!'}], 'category': 'greeting'},
                                {'messages': [{'role': 'user', 'content': 'Look', 'tool_calls': [{}]}, {'role': 'assistant', 'content': 'ok'}]}])
    assert import_log(str(tmp_path/'pairs.jsonl'), str(tmp_path/'data'))['records'] == 2
    r = import_log(str(tmp_path/'chats.jsonl'), str(tmp_path/'data'), format='messages')
    assert r['records'] == 1 and r['skipped'] == {'tool calls outside an assistant turn': 1}
    loaded = load_coverage(str(tmp_path/'data'))[None]
    assert sorted(x['category'] for x in loaded) == ['captured', 'captured', 'greeting', 'math', 'math']

def test_import_bad_line_names_file_and_row(tmp_path):
    bad = tmp_path/'log.jsonl'
    bad.write_text(json.dumps({'messages': [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Yo'}]}) + '\n'
                   + json.dumps({'prompt': 'what is this'}) + '\n')
    with pytest.raises(DataError, match=r'log.jsonl, row 2: expected a Batch output line .* got fields \[.prompt.\]'): import_log(str(bad), str(tmp_path/'o'))
    bad.write_text('{"messages": [{"role": "user", "content": "Hi"}]}\n')
    with pytest.raises(DataError, match=r"log.jsonl, row 1: the last message must be the assistant's response"): import_log(str(bad), str(tmp_path/'o'))
    bad.write_text('{"messages": [}\n')
    with pytest.raises(DataError, match=r'log.jsonl, row 1: not valid JSON'): import_log(str(bad), str(tmp_path/'o'))
    jl(tmp_path/'in.jsonl', [{'custom_id': 'a', 'body': {'messages': []}}])
    jl(bad, [{'custom_id': 'zzz', 'response': completion('x')}])
    with pytest.raises(DataError, match=r"log.jsonl, row 1: custom_id 'zzz' is not in the batch input file"):
        import_log(str(bad), str(tmp_path/'o'), batch_input=str(tmp_path/'in.jsonl'))
    assert not (tmp_path/'o').exists()   # nothing half-written

def test_captured_folder_error_names_file_and_row(tmp_path):
    d = tmp_path/'cap'; d.mkdir()
    jl(d/'a.jsonl', [{'messages': [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Yo'}], 'category': 'x'}])
    jl(d/'b.jsonl', [{'messages': [{'role': 'user', 'content': 'Hey'}, {'role': 'assistant', 'content': 'Yo'}], 'category': 'x'},
                     {'messages': [{'role': 'user', 'content': 'Hey'}], 'category': 'x'}])
    with pytest.raises(DataError, match=r"cap, b.jsonl row 2: the last message must be the assistant's response"): load_coverage(str(d))

@pytest.mark.parametrize('command,sig', [('capture', 'SIGINT'), ('capture', 'SIGTERM'), ('route', 'SIGINT'), ('route', 'SIGTERM')])
def test_ctrl_c_and_sigterm_print_the_summary_and_exit_0(tmp_path, command, sig):
    import os, re, signal, subprocess, sys
    with serving(upstream()) as up_url:
        args = (['capture', '--upstream', up_url + '/v1', '--out', str(tmp_path/'out')] if command == 'capture' else
                ['route', '--local', up_url + '/v1', '--service', up_url + '/v1', '--share', '0.5'])
        p = subprocess.Popen([sys.executable, '-m', 'llamaduo.cli', *args, '--port', '0'], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**os.environ, 'PYTHONUNBUFFERED': '1'})
        first = p.stdout.readline()
        url = first.split('point the app at ' if command == 'capture' else 'routing ')[1].split('/v1')[0]
        r = sdk(url).chat.completions.create(model='gpt-4o', messages=MSGS[1:])
        assert r.choices[0].message.content
        time.sleep(1)   # the record is written just after the answer (by a worker process that starts on the first)
        p.send_signal(getattr(signal, sig))
        rest, _ = p.communicate(timeout=30)
    assert p.returncode == 0 and 'Traceback' not in rest, first + rest
    assert ('captured 1 records' if command == 'capture' else 'routed: ') in rest, first + rest
    if command == 'route': assert sum(map(int, re.findall(r' (\d+)', rest.split('routed: ')[1]))) >= 1, rest

BIG = ' '.join(f'word{i} mail{i}@example.com' for i in range(250_000))[:5_000_000]   # 5 MB with addresses to redact

def small_waits_beside_big(url, recorded):
    "Seconds each small request took, sent one after another while a 5 MB one goes through, until `recorded()`."
    import threading
    client, done, waits = httpx2.Client(timeout=30), threading.Event(), []
    def send_big():
        client.post(url + '/v1/chat/completions', json={'model': 'm', 'messages': [{'role': 'user', 'content': BIG}]})
        done.set()
    threading.Thread(target=send_big).start()
    while not done.is_set() or not recorded():
        t0 = time.perf_counter()
        r = client.post(url + '/v1/chat/completions', json={'model': 'm', 'messages': [{'role': 'user', 'content': 'small one'}]})
        waits.append(time.perf_counter() - t0)
        assert r.status_code == 200
    return sorted(waits)

def test_a_small_request_beside_a_5_mb_one_is_not_held_up(tmp_path):
    "Recording runs off the event loop: while a 5 MB exchange is built and redacted, small requests still get through."
    assert len(BIG) >= 5_000_000
    up = upstream(answer=lambda text: 'ok' if len(text) > 10_000 else text[::-1])
    with serving(up) as up_url:
        cap = capture_app(up_url + '/v1', tmp_path/'out', tag='support')
        with serving(cap) as cap_url: waits = small_waits_beside_big(cap_url, lambda: cap.state.stats['records'] >= 1)
    print(f'small requests while the big one was recorded: {len(waits)}, p50 {waits[len(waits)//2]*1000:.0f} ms, max {waits[-1]*1000:.0f} ms')
    assert waits[-1] < 0.5, waits[-5:]   # 0.93 s when the record was built on the event loop
    recs = read_jsonl(tmp_path/'out'/'captured.jsonl')
    assert any(len(r['messages'][0]['content']) > 2_000_000 and '@example.com' not in r['messages'][0]['content'] for r in recs)

@pytest.mark.parametrize('enc', ['br', 'zstd', 'gzip'])
def test_compressed_answers_are_decoded_for_recording(tmp_path, enc):
    import brotli, gzip, zstandard
    from fastapi.responses import Response
    app = FastAPI()
    @app.post('/v1/chat/completions')
    async def chat(request: Request):
        body = json.dumps({'id': 'c1', 'object': 'chat.completion', 'created': 1, 'model': 'm-1',
                           'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': 'packed hello'},
                                        'finish_reason': 'stop'}]}).encode()
        pack = {'br': brotli.compress, 'zstd': zstandard.ZstdCompressor().compress, 'gzip': gzip.compress}[enc]
        return Response(pack(body), media_type='application/json', headers={'content-encoding': enc})
    with serving(app) as up_url:
        cap = capture_app(up_url + '/v1', tmp_path/'out')
        with serving(cap) as cap_url:
            r = sdk(cap_url).chat.completions.create(model='m', messages=[{'role': 'user', 'content': 'hi'}])
            assert r.choices[0].message.content == 'packed hello'
            recs = recorded(cap, tmp_path/'out', 1)
    assert cap.state.stats['records'] == 1 and recs[0]['messages'][-1]['content'] == 'packed hello', dict(cap.state.stats)

@pytest.mark.parametrize('command', ['capture', 'route'])
def test_ctrl_c_from_a_terminal_prints_the_summary_and_no_traceback(tmp_path, command):
    "Ctrl-C typed in a terminal signals the whole foreground group: the proxy and the recorder's worker processes."
    import fcntl, os, pty, select, subprocess, sys, termios
    with serving(upstream()) as up_url:
        args = (['capture', '--upstream', up_url + '/v1', '--out', str(tmp_path/'out')] if command == 'capture' else
                ['route', '--local', up_url + '/v1', '--service', up_url + '/v1', '--share', '0.5'])
        master, slave = pty.openpty()
        p = subprocess.Popen([sys.executable, '-m', 'llamaduo.cli', *args, '--port', '0'], stdin=slave, stdout=slave,
                             stderr=slave, start_new_session=True, env={**os.environ, 'PYTHONUNBUFFERED': '1'},
                             preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        seen = b''
        def read_until(pred, timeout):
            nonlocal seen
            t0 = time.monotonic()
            while not pred(seen) and time.monotonic() - t0 < timeout:
                if select.select([master], [], [], 0.1)[0]:
                    try: chunk = os.read(master, 65536)
                    except OSError: break   # the terminal closed: every process on it has ended
                    if not chunk: break
                    seen += chunk
        read_until(lambda b: b'/v1' in b, 60)
        line = seen.decode(errors='replace')
        url = line.split('point the app at ' if command == 'capture' else 'routing ')[1].split('/v1')[0]
        assert sdk(url).chat.completions.create(model='gpt-4o', messages=MSGS[1:]).choices[0].message.content
        time.sleep(1)
        os.write(master, b'\x03')   # Ctrl-C, as typed
        read_until(lambda b: False, 30)
        p.wait(30)
        os.close(master)
    out = seen.decode(errors='replace')
    assert p.returncode == 0 and 'Traceback' not in out and 'KeyboardInterrupt' not in out, out
    assert ('captured 1 records' if command == 'capture' else 'routed: ') in out, out

def test_shadow_mode_records_a_5_mb_triple_without_holding_up_small_requests(tmp_path):
    "Shadow triples are read and redacted in the recorder's worker: small requests pass while a 5 MB one is queued."
    up = upstream(answer=lambda text: 'ok' if len(text) > 10_000 else text[::-1])
    with serving(up) as up_url:
        app = route_app(up_url + '/v1', up_url + '/v1', shadow=True, out=tmp_path/'sh')
        with serving(app) as url: waits = small_waits_beside_big(url, lambda: app.state.counts['records'] >= 1)
    assert waits[-1] < 0.5, waits[-5:]
    triples = read_jsonl(tmp_path/'sh'/'shadow.jsonl')
    big_one = [t for t in triples if len(t['request']['messages'][0]['content']) > 2_000_000]
    assert len(big_one) == 1 and '@example.com' not in big_one[0]['request']['messages'][0]['content']
    assert big_one[0]['service']['text'] == 'ok' == big_one[0]['local']['text'] and big_one[0]['service']['latency_s'] > 0
