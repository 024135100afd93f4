"Align: each method on the tiny model, assistant-only loss mask, qlora gradients, resume, multi-process, demo learning."
import json, os, re, socket, subprocess, sys, time
from pathlib import Path
import pytest, torch

from llamaduo.config import load_recipe
from llamaduo.files import read_jsonl, write_jsonl
from llamaduo.demo import demo_coverage, score_answers, build_demo_base
from llamaduo.infer import greedy
from llamaduo.align import (load_for_training, load_tokenizer, make_trainer, fix_cpu_4bit, lora_grads,
                            train, accelerate_config)

ROOT = Path(__file__).resolve().parents[1]

def recipe(*ov): return load_recipe('demo', list(ov))

@pytest.fixture(scope='module')
def base(tmp_path_factory): return str(build_demo_base(tmp_path_factory.mktemp('base')/'demo-tiny'))

@pytest.fixture(scope='module')
def recs(): return demo_coverage(48, seed=1)

def _reload(out, base, method):
    from transformers import AutoModelForCausalLM
    if method == 'full': return AutoModelForCausalLM.from_pretrained(out/'model')
    from peft import PeftModel
    assert (out/'model'/'adapter_config.json').exists()
    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out/'model')

@pytest.mark.parametrize('method', ['full', 'lora', 'qlora'])
def test_methods_train_save_reload_generate(method, base, recs, tmp_path):
    cfg = recipe(f'model.method={method}', 'train.max_steps=3', 'train.batch_size=8', 'train.logging_steps=1', 'train.learning_rate=1e-3')
    m = train(recs, tmp_path, base, cfg)
    assert (m['steps'], m['method'], m['n_examples']) == (3, method, len(recs))
    assert m['rank'] == (None if method == 'full' else 8) and m['tokens'] > 0 and m['tokens_per_s'] > 0
    assert m['cut_at_max_length'] == m['dropped_too_long'] == 0 and m['max_length'] == cfg.train.max_length
    for f in ['train_metrics.json', 'loss.csv', 'loss.png', 'model/tokenizer.json', 'model/llamaduo_model.json']:
        assert (tmp_path/f).exists(), f
    assert len((tmp_path/'loss.csv').read_text().splitlines()) == 4  # header + 3 logged steps
    saved = json.loads((tmp_path/'train_metrics.json').read_text())
    assert saved['steps'] == 3 and len(saved['loss_curve']) == 3
    model, tok = _reload(tmp_path, base, method), load_tokenizer(tmp_path/'model')
    assert tok.chat_template and '{% generation %}' in tok.chat_template
    acc = score_answers(recs[:4], greedy(model, tok, recs[:4], max_new_tokens=4))
    assert 0 <= acc['accuracy'] <= 1

def test_examples_longer_than_max_length_are_counted_and_warned(base, recs, tmp_path):
    "TRL cuts a long answer at train.max_length and drops a record whose prompt fills it: both counted, one warning."
    (u0, a0), (u1, a1) = recs[0]['messages'], recs[1]['messages']
    long_answer = {**recs[0], 'messages': [u0, {**a0, 'content': 'x ' * 200}]}
    long_prompt = {**recs[1], 'messages': [{**u1, 'content': 'y ' * 200}, a1]}
    with pytest.warns(UserWarning, match=r'of 10 training examples, 1 reach train.max_length=96 tokens .* and 1 are left out'):
        m = train([long_answer, long_prompt, *recs[2:10]], tmp_path, base, recipe('train.max_steps=1', 'train.batch_size=8'))
    assert (m['cut_at_max_length'], m['dropped_too_long'], m['max_length']) == (1, 1, 96)
    assert json.loads((tmp_path/'train_metrics.json').read_text())['dropped_too_long'] == 1
    from llamaduo.loop import _length_note; from llamaduo.run import Cycle   # the loop's cycle line says it too
    assert re.search(r'^; of 10 training examples, 1 reach train.max_length=96 tokens .* and 1 are left out', _length_note(Cycle(tmp_path)))

def test_full_weights_change_and_lora_leaves_base(base, recs, tmp_path):
    from transformers import AutoModelForCausalLM
    b = AutoModelForCausalLM.from_pretrained(base).state_dict()
    train(recs, tmp_path/'full', base, recipe('train.max_steps=2', 'train.batch_size=8'))
    f = AutoModelForCausalLM.from_pretrained(tmp_path/'full'/'model').state_dict()
    assert not torch.equal(b['model.layers.0.mlp.up_proj.weight'], f['model.layers.0.mlp.up_proj.weight'])

def test_assistant_only_loss_mask(base, recs, tmp_path):
    cfg = recipe()
    model, tok, _ = load_for_training(base, cfg)
    tr = make_trainer(model, tok, recs[:4], tmp_path, cfg)
    assert tr.args.completion_only_loss and not tr.args.assistant_only_loss
    b = tr.data_collator([tr.train_dataset[i] for i in range(4)])
    for j in range(4):
        ids, lab = b['input_ids'][j], b['labels'][j]
        assert tok.decode(ids[lab != -100]) == recs[j]['messages'][1]['content'] + '<|end|>'
        prompt_len = len(tok.apply_chat_template(recs[j]['messages'][:1], add_generation_prompt=True))
        assert (lab[:prompt_len] == -100).all()  # every prompt token is masked

def _batch(tok, rec):
    enc = tok.apply_chat_template(rec['messages'], return_dict=True, return_tensors='pt')
    return dict(input_ids=enc['input_ids'], attention_mask=enc['attention_mask'], labels=enc['input_ids'])

def test_qlora_every_lora_weight_gets_gradient(base, recs):
    import bitsandbytes as bnb
    model, tok, r = load_for_training(base, recipe('model.method=qlora'), 100)
    lin4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(lin4) == 14 and all(not m.support_avx512bf16_for_cpu for m in lin4)
    batch = _batch(tok, recs[0])
    model.eval()
    with torch.no_grad(): model(**batch)   # the eval forward that repacks 4-bit weights on CPU
    model.train()
    g = lora_grads(model, batch)
    assert len(g) == 2*14 and all(v > 0 for v in g.values()), [k for k, v in g.items() if v == 0]

def test_qlora_trained_adapter_moves(base, recs, tmp_path):
    "After a few qlora steps every LoRA B matrix has left zero (all LoRA weights were updated)."
    from safetensors.torch import load_file
    train(recs, tmp_path, base, recipe('model.method=qlora', 'train.max_steps=3', 'train.batch_size=8', 'train.learning_rate=1e-2'))
    sd = load_file(tmp_path/'model'/'adapter_model.safetensors')
    bs = {k: v for k, v in sd.items() if 'lora_B' in k}
    assert len(bs) == 14 and all(v.abs().sum() > 0 for v in bs.values())

def test_resume_continues_step_count(base, recs, tmp_path):
    ov = ['train.batch_size=8', 'train.save_steps=2', 'train.logging_steps=1']
    m1 = train(recs, tmp_path, base, recipe('train.max_steps=2', *ov))
    assert m1['steps'] == 2 and (tmp_path/'checkpoints'/'checkpoint-2').is_dir()
                                              # as if the run had been stopped after the checkpoint
    half = tmp_path/'checkpoints'/'checkpoint-3'; half.mkdir(); (half/'config.json').write_text('{')  # killed mid-save
    m2 = train(recs, tmp_path, base, recipe('train.max_steps=4', *ov))
    assert m2['steps'] == 4 and m2['resumed_from'].endswith('checkpoint-2')
    assert [p['step'] for p in m2['loss_curve']] == [1, 2, 3, 4]

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.mark.slow
def test_accelerate_ddp_two_cpu_processes(base, recs, tmp_path):
    write_jsonl(tmp_path/'train.jsonl', recs)
    out = tmp_path/'cycle_00'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TOKENIZERS_PARALLELISM': 'false'}
    cmd = [sys.executable, '-m', 'accelerate.commands.launch', '--config_file', str(accelerate_config('ddp_cpu')),
           '--main_process_port', str(_free_port()), '-m', 'llamaduo.cli', 'align', str(tmp_path/'train.jsonl'), str(out),
           '--base', base, '--recipe', 'demo', '--set', 'train.max_steps=3', 'train.batch_size=4', 'train.logging_steps=1']
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    ranks = sorted(json.loads(f.read_text())['rank'] for f in (out/'ranks').glob('rank_*.json'))
    assert ranks == [0, 1]
    m = json.loads((out/'train_metrics.json').read_text())
    assert m['world_size'] == 2 and m['steps'] == 3
    assert len(list(out.rglob('model.safetensors'))) == 1 + len(list((out/'checkpoints').rglob('model.safetensors')))
    assert len([l for l in p.stdout.splitlines() if l.startswith('{"method"')]) == 1   # one process reports

@pytest.mark.slow
def test_demo_training_beats_untrained(base, tmp_path):
    "The acceptance item: the tiny model trained on demo data is clearly better than the untrained one."
    from transformers import AutoModelForCausalLM
    test = demo_coverage(120, seed=999)
    tok = load_tokenizer(base)
    untrained = score_answers(test, greedy(AutoModelForCausalLM.from_pretrained(base), tok, test, max_new_tokens=40))
    data = [r for s in (1, 2, 3) for r in demo_coverage(800, seed=s)]
    t0 = time.time()
    m = train(data, tmp_path, base, recipe('train.max_steps=800'))   # ~5 epochs of the 2,400 examples, ~25 s
    trained = score_answers(test, greedy(AutoModelForCausalLM.from_pretrained(tmp_path/'model'), tok, test, max_new_tokens=40))   # a tool call: ~36 tokens
    print(f'\nuntrained {untrained}\ntrained {trained}\ntrain wall {m["wall_time_s"]} s, total {time.time()-t0:.0f} s')
    assert untrained['accuracy'] <= 0.1
    assert trained['accuracy'] >= 0.6
