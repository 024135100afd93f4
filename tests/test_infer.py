"Infer: K responses per prompt, left padding, record schema, adapter on base, seeded reproducibility, vLLM request."
import json, sys
from pathlib import Path
import pytest, torch

from llamaduo.config import load_recipe
from llamaduo.files import read_jsonl
from llamaduo.demo import demo_coverage, CATEGORIES
from llamaduo.align import train
from llamaduo.demo import build_demo_base
from llamaduo.infer import (load_model, chat_prompts, hf_generate, vllm_request, vllm_available, response_records,
                            generate_responses, cut_at_eos)

FIELDS = ['prompt_id', 'category', 'k', 'response', 'temperature', 'top_p', 'max_new_tokens', 'seed',
          'tokens_in', 'tokens_out', 'finish_reason']

def recipe(*ov): return load_recipe('demo', ['infer.max_new_tokens=6', 'infer.backend=hf', *ov])

@pytest.fixture(scope='module')
def base(tmp_path_factory): return str(build_demo_base(tmp_path_factory.mktemp('base')/'demo-tiny'))

@pytest.fixture(scope='module')
def test_recs(): return demo_coverage(6, seed=5, categories=CATEGORIES)   # text answers (tool calls: test_tool_*)

@pytest.fixture(scope='module')
def adapter(base, tmp_path_factory):
    d = tmp_path_factory.mktemp('lora')
    train(demo_coverage(16, seed=1), d, base, load_recipe('demo', ['model.method=lora', 'train.max_steps=2', 'train.batch_size=8']))
    return d/'model'

def test_k_responses_schema_and_file(base, test_recs, tmp_path):
    cfg = recipe('infer.k=3', 'infer.batch_size=4', 'infer.temperature=0.7', 'infer.top_p=0.9')   # batches cut across prompts
    rows = generate_responses(Path(base), test_recs, cfg, tmp_path/'responses.jsonl', progress=False)
    assert len(rows) == 3*len(test_recs)
    assert all(list(r) == FIELDS for r in rows)
    assert read_jsonl(tmp_path/'responses.jsonl') == rows
    for j, rec in enumerate(test_recs):
        mine = rows[3*j:3*j+3]
        assert [r['k'] for r in mine] == [0, 1, 2] and {r['prompt_id'] for r in mine} == {rec['prompt_id']}
        assert all(r['category'] == rec['category'] for r in mine)
    r = rows[0]
    assert (r['temperature'], r['top_p'], r['max_new_tokens'], r['seed']) == (0.7, 0.9, 6, 42)
    assert all(0 < r['tokens_out'] <= 6 and r['tokens_in'] > 10 and r['finish_reason'] in ('stop', 'length') for r in rows)
    assert [p.name for p in tmp_path.iterdir()] == ['responses.jsonl']   # atomic: no temp file left

def test_seeded_reproducible(base, test_recs, tmp_path):
    a = generate_responses(Path(base), test_recs, recipe('infer.k=2'), tmp_path/'a.jsonl', progress=False)
    b = generate_responses(Path(base), test_recs, recipe('infer.k=2'), tmp_path/'b.jsonl', progress=False)
    c = generate_responses(Path(base), test_recs, recipe('infer.k=2', 'seed=7'), tmp_path/'c.jsonl', progress=False)
    assert a == b
    assert [r['response'] for r in a] != [r['response'] for r in c]
    assert len({r['response'] for r in a}) > 1    # sampling: the K responses differ

def test_left_padding_batched_equals_single(base, test_recs):
    "Greedy, a batch of prompts of different lengths gives what each prompt gives alone (only with left padding)."
    model, tok = load_model(base)
    ps = chat_prompts(tok, test_recs)
    assert len({len(tok(p)['input_ids']) for p in ps}) > 1
    cfg = recipe('infer.k=1', 'infer.temperature=0', 'infer.batch_size=6')
    batched = hf_generate(model, tok, ps, cfg, progress=False)
    assert tok.padding_side == 'left'
    single = hf_generate(model, tok, ps, cfg.model_copy(update={'infer': cfg.infer.model_copy(update={'batch_size': 1})}), progress=False)
    assert [s[0]['response'] for s in batched] == [s[0]['response'] for s in single]
    assert [s[0]['tokens_in'] for s in batched] == [len(tok(p, add_special_tokens=False)['input_ids']) for p in ps]

def test_chat_prompts_leave_out_the_reference(base, test_recs):
    _, tok = load_model(base)
    ps = chat_prompts(tok, test_recs)
    for p, r in zip(ps, test_recs):
        assert r['messages'][0]['content'] in p and p.endswith('<|assistant|>\n')
        assert r['messages'][1]['content'] not in p.split(r['messages'][0]['content'])[-1]

def test_adapter_on_base(base, adapter, test_recs, tmp_path):
    assert (adapter/'adapter_config.json').exists()
    rows = generate_responses(adapter, test_recs, recipe('infer.k=2'), tmp_path/'r.jsonl', progress=False)
    explicit = generate_responses(adapter, test_recs, recipe('infer.k=2'), tmp_path/'r2.jsonl', base=base, progress=False)
    assert len(rows) == 12 and rows == explicit
    m, _ = load_model(adapter)
    assert type(m).__name__ == 'LlamaForCausalLM'          # merged into the base
    m2, _ = load_model(adapter, merge=False)
    assert type(m2).__name__.startswith('Peft')

def test_finish_reason_and_token_counts():
    assert cut_at_eos([5, 2, 0, 0], {2}, 0, 4) == ([5, 2], 'stop')
    assert cut_at_eos([5, 6, 7, 8], {2}, 0, 4) == ([5, 6, 7, 8], 'length')

def test_vllm_request_builder_without_vllm(base, test_recs):
    _, tok = load_model(base)
    cfg = load_recipe('no_robots')
    ps = chat_prompts(tok, test_recs)
    req = vllm_request(ps, cfg, [tok.eos_token_id])
    assert req['prompts'] == ps
    assert req['sampling_params'] == dict(n=4, temperature=0.7, top_p=0.9, max_tokens=512, seed=42,
                                          stop_token_ids=[tok.eos_token_id], skip_special_tokens=True)
    greedy = vllm_request(ps, load_recipe('no_robots', ['infer.temperature=0']), [2])
    assert greedy['sampling_params']['temperature'] == 0 and greedy['sampling_params']['top_p'] == 1.0
    if not torch.cuda.is_available(): assert not vllm_available()

def test_response_records_from_vllm_shaped_samples(test_recs):
    cfg = recipe('infer.k=2')
    samples = [[dict(response=f'r{i}{k}', tokens_in=10, tokens_out=3, finish_reason='stop') for k in range(2)] for i in range(2)]
    rows = response_records(test_recs[:2], samples, cfg)
    assert [(r['prompt_id'], r['k'], r['response']) for r in rows] == [
        (test_recs[0]['prompt_id'], 0, 'r00'), (test_recs[0]['prompt_id'], 1, 'r01'),
        (test_recs[1]['prompt_id'], 0, 'r10'), (test_recs[1]['prompt_id'], 1, 'r11')]

class _FakeVLLM:
    "Stands in for the `vllm` package at its module boundary: `LLM(model=..., tokenizer=..., seed=...)`, `.generate`, `SamplingParams`."
    def __init__(self): self.calls = []
    def module(self):
        import types
        fake, outer = types.ModuleType('vllm'), self
        class SamplingParams:
            def __init__(self, **kw): self.kw = kw
        class LLM:
            def __init__(self, model, tokenizer, seed): outer.calls.append(('init', model, tokenizer, seed))
            def generate(self, prompts, params):
                outer.calls.append(('generate', list(prompts), params.kw))
                c = lambda p, k: types.SimpleNamespace(text=f' answer {k} ', token_ids=[1, 2, 3], finish_reason='length' if k else 'stop')
                return [types.SimpleNamespace(prompt_token_ids=list(range(len(p.split()))), outputs=[c(p, k) for k in range(params.kw['n'])])
                        for p in prompts]
        fake.LLM, fake.SamplingParams = LLM, SamplingParams
        return fake

def test_vllm_backend_with_vllm_replaced_at_its_boundary(adapter, base, test_recs, tmp_path, monkeypatch):
    "The vLLM branch end to end: the adapter is merged once for vLLM, prompts in the chat template, K samples, records written."
    fake = _FakeVLLM(); monkeypatch.setitem(sys.modules, 'vllm', fake.module())
    cfg = recipe('infer.k=2', 'infer.backend=vllm')
    rows = generate_responses(adapter, test_recs, cfg, tmp_path/'r.jsonl', progress=False)
    merged = Path(adapter).parent/'model_merged'
    assert (merged/'config.json').exists() and not (merged/'adapter_config.json').exists()
    (_, model, tok_path, seed), (_, prompts, params) = fake.calls
    assert (model, tok_path, seed) == (str(merged), str(merged), 42)
    _, tok = load_model(merged)
    assert prompts == chat_prompts(tok, test_recs) and params['n'] == 2 and tok.eos_token_id in params['stop_token_ids']
    assert len(rows) == 2*len(test_recs) and read_jsonl(tmp_path/'r.jsonl') == rows
    assert [r['response'] for r in rows[:2]] == ['answer 0', 'answer 1'] and [r['finish_reason'] for r in rows[:2]] == ['stop', 'length']
    generate_responses(adapter, test_recs, cfg, tmp_path/'r2.jsonl', progress=False)   # the merged copy is reused
    assert [c[0] for c in fake.calls] == ['init', 'generate', 'init', 'generate']
