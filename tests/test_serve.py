"`llamaduo serve`: a run's model behind the OpenAI SDK, as `infer` answers; the --local side of `llamaduo route`."
import os, shutil, signal, subprocess, sys
import openai, pytest
from llamaduo.files import write_json, read_jsonl
from llamaduo.fakes import echo_upstream
from llamaduo.proxy import serving
from llamaduo.route import route_app

def _metrics(v):
    m = {'V': v, 'C@50': v, 'C@70': v, 'n': 4}
    return {'overall': {'similarity': m, 'precision': m}, 'per_category': {}}

@pytest.fixture
def run(tmp_path):
    "A demo run folder whose cycle 0 holds a model: SmolLM2-135M-Instruct, standing in for a `full` fine-tune."
    pytest.importorskip('gguf')
    from llamaduo.loop import init_run
    from llamaduo.models import build_named_base
    run = init_run('demo', out=tmp_path/'run', overrides={'data.demo_size': 40})
    d = run/'cycle_00'; d.mkdir()
    write_json(d/'metrics.json', _metrics(60.0)); write_json(d/'decision.json', {'pass': False, 'verdict': 'synthesize'})
    shutil.copytree(build_named_base('smollm2-135m', progress=False), d/'model')
    return run

def test_serve_answers_as_infer_and_is_the_local_side_of_route(run):
    from llamaduo.infer import greedy, load_model
    test = read_jsonl(run/'data'/'coverage_test.jsonl')[:3]
    model, tok = load_model(run/'cycle_00'/'model')
    want = greedy(model, tok, test, max_new_tokens=16)
    p = subprocess.Popen([sys.executable, '-m', 'llamaduo.cli', 'serve', str(run.path), '--port', '0', '--max-new-tokens', '16'],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    try:
        first = ''
        while 'serving ' not in first and p.poll() is None: first = p.stdout.readline()   # after the load's output
        assert 'serving ' in first and "as 'demo-local'" in first, first
        url = first.split(' at ')[1].split('/v1')[0]
        client = openai.OpenAI(base_url=url + '/v1', api_key='none', max_retries=0)
        got = [client.chat.completions.create(model='demo-local', messages=r['messages'][:-1]).choices[0].message.content
               for r in test]
        assert got == want and all(len(w.split()) >= 3 for w in want), want
        pieces = [c.choices[0].delta.content for c in client.chat.completions.create(
            model='demo-local', messages=test[0]['messages'][:-1], stream=True) if c.choices and c.choices[0].delta.content]
        assert ''.join(pieces) == want[0] and len(pieces) > 1
        assert [m.id for m in client.models.list().data] == ['demo-local']
        with serving(echo_upstream()) as svc, serving(route_app(url + '/v1', svc + '/v1', share=1.0)) as rt:
            r = openai.OpenAI(base_url=rt + '/v1', api_key='sk-test-abcdefghijklmnop', max_retries=0
                              ).chat.completions.with_raw_response.create(model='gpt-4o', messages=test[0]['messages'][:-1])
            assert r.headers['x-llamaduo-route'] == 'local' and r.parse().choices[0].message.content == want[0]
    finally:
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=30)
    assert p.returncode == 0 and 'Traceback' not in rest and 'served: requests 5' in rest, rest
