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

@pytest.mark.slow
def test_demo_run_answers_its_tool_prompts_through_serve(tmp_path):
    "The acceptance of tool calls: the demo run's model, behind `llamaduo serve`, asked through the OpenAI SDK."
    from llamaduo.data import prompt_turns, same_tool_calls
    out = tmp_path/'demo'
    d = subprocess.run([sys.executable, '-m', 'llamaduo.cli', 'demo', '--out', str(out)], capture_output=True, text=True)
    assert d.returncode == 0, (d.stdout + d.stderr)[-3000:]
    tools = [r for r in read_jsonl(out/'data'/'coverage_test.jsonl') if r.get('tools')]
    assert len(tools) >= 12 and all(r['messages'][-1].get('tool_calls') for r in tools)
    p = subprocess.Popen([sys.executable, '-m', 'llamaduo.cli', 'serve', str(out), '--port', '0', '--max-new-tokens', '48'],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    try:
        first = ''
        while 'serving ' not in first and p.poll() is None: first = p.stdout.readline()
        url = first.split(' at ')[1].split('/v1')[0]
        client = openai.OpenAI(base_url=url + '/v1', api_key='none', max_retries=0)
        hits, answers = 0, []
        for r in tools:
            msg = client.chat.completions.create(model='demo-local', messages=prompt_turns(r), tools=r['tools'],
                                                 temperature=0).choices[0].message
            got = [c.model_dump() for c in msg.tool_calls or []]
            answers.append((r['messages'][0]['content'], got))
            hits += same_tool_calls(r['messages'][-1]['tool_calls'], got)
    finally:
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=30)
    assert p.returncode == 0 and 'Traceback' not in rest, rest
    print(f'tool prompts answered with the reference call through serve: {hits}/{len(tools)}')
    assert hits / len(tools) >= 0.8, answers

def test_serve_engine_llama_cpp_exports_then_serves_the_gguf(run):
    "`--engine llama.cpp`: the GGUF exported (parity checked) on first use, served by llama-cpp-python through the SDK."
    pytest.importorskip('llama_cpp')
    from llamaduo.data import prompt_turns
    test = read_jsonl(run/'data'/'coverage_test.jsonl')[:2]
    p = subprocess.Popen([sys.executable, '-m', 'llamaduo.cli', 'serve', str(run.path), '--port', '0', '--engine', 'llama.cpp',
                          '--quant', 'q8_0'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    try:
        lines = []
        while p.poll() is None and not (lines and 'serving ' in lines[-1]): lines.append(p.stdout.readline())
        assert 'with llama.cpp' in lines[-1] and 'model-q8_0.gguf' in lines[-1], ''.join(lines)[-2000:]
        assert (run/'deploy'/'gguf'/'parity.json').exists() and (run/'deploy'/'gguf'/'Modelfile').exists()
        mf = (run/'deploy'/'gguf'/'Modelfile').read_text()       # the demo's records use tools: said where Ollama users look
        assert mf.splitlines()[1].startswith("# This run's records use tools") and 'export: note: This run' in ''.join(lines)
        assert "This run's records use tools" in (run/'deploy'/'MODEL_CARD.md').read_text()
        url = lines[-1].split(' at ')[1].split('/v1')[0]
        client = openai.OpenAI(base_url=url + '/v1', api_key='none', max_retries=0)
        for r in test:
            c = client.chat.completions.create(model='demo-local', messages=prompt_turns(r), max_tokens=24, temperature=0)
            text = c.choices[0].message.content
            assert text.strip() and '<|im_end|>' not in text and '<|im_start|>' not in text, text
    finally:
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=60)
    assert p.returncode == 0 and 'Traceback' not in rest and 'served: requests 2' in rest, rest
