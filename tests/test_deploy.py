"Deploy: merge + model card + `transformers serve` + swap-in check; LoRA merge; break-even."
import json, shutil
from pathlib import Path
import pytest
from llamaduo.files import write_json, read_jsonl
from llamaduo.deploy import deploy, merge_model, break_even, port_free


def _metrics(v):
    m = {'V': v, 'C@50': v, 'C@70': v, 'n': 4}
    return {'overall': {'similarity': m, 'precision': m}, 'per_category': {'classification': {'similarity': m, 'precision': m}}}


@pytest.mark.slow
def test_deploy_demo_run(tmp_path):
    from llamaduo.loop import init_run
    run = init_run('demo', out=tmp_path/'run', overrides={'data.demo_size': 40})
    for c, v in ((0, 60.0), (1, 40.0)):  # cycle 0 is the best; only it has a model
        d = run/f'cycle_{c:02d}'; d.mkdir()
        write_json(d/'metrics.json', _metrics(v)); write_json(d/'decision.json', {'pass': False})
    shutil.copytree(run/'base_model', run/'cycle_00'/'model')  # stands in for a `full` fine-tune
    test = read_jsonl(run/'data'/'coverage_test.jsonl')
    assert run.best_cycle() == run.cycle(0)
    r = deploy(run, max_prompts=6, max_new_tokens=16, timeout=240)
    s = r['serve_check']
    m = run/'deploy'/'model'
    for f in ('config.json', 'model.safetensors', 'tokenizer.json', 'generation_config.json', 'chat_template.jinja'): assert (m/f).exists(), f
    assert s['n'] == min(6, len(test)) and s['ok'] == s['n'] and s['errors'] == 0
    assert s['match_rate'] == 1.0, s['mismatches']
    assert s['server'].startswith('http://127.0.0.1:') and s['tokens_out'] > 0 and s['latency_p50'] > 0
    assert s['server_stopped'] and s['port_freed']
    port = int(s['server'].split(':')[2].split('/')[0]); assert port_free(port)
    assert s['judged']['overall']['precision']['n'] == s['n']
    saved = json.loads((run/'deploy'/'serve_check.json').read_text()); assert saved['matches'] == s['matches']
    card = (run/'deploy'/'MODEL_CARD.md').read_text()
    assert 'classification' in card and 'coverage_test.jsonl' in card and 'Swap-in check' in card and 'demo/demo' in card
    assert len(read_jsonl(run/'deploy'/'judgments.jsonl')) == s['n'] * run.cfg.judge.m
    assert json.loads((run/'deploy'/'usage.json').read_text())['phases']['deploy_judge']['calls'] == s['n'] * run.cfg.judge.m
    assert run.deploy.done('merge') and run.deploy.done('serve')


def test_lora_merge(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from peft import LoraConfig, get_peft_model, PeftModel
    from llamaduo.demo import build_demo_base
    base = build_demo_base(tmp_path/'base')
    torch.manual_seed(0)
    pm = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                        LoraConfig(r=4, lora_alpha=8, target_modules=['q_proj', 'v_proj'], init_lora_weights=False))
    pm.save_pretrained(tmp_path/'adapter'); AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path/'adapter')
    out = merge_model(tmp_path/'adapter', tmp_path/'merged', base=str(base))
    assert not (out/'adapter_config.json').exists() and (out/'config.json').exists()
    ids = torch.tensor([[1, 7, 42, 300, 9, 11]])
    with torch.no_grad():
        ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), tmp_path/'adapter').eval()(ids).logits
        got = AutoModelForCausalLM.from_pretrained(out).eval()(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base).eval()(ids).logits
    assert torch.allclose(got, ref, atol=1e-5)
    assert (plain - ref).abs().max() > 1e-3
    tok = AutoTokenizer.from_pretrained(out); assert tok.chat_template


def test_break_even_hand_calculation():
    # 4000 req/day x 30 days x (1000 x $5/1M + 500 x $15/1M) = 120000 x $0.0125 = $1500/month
    # 2 L4 x $0.70/h x 24 x 30 = $1008/month; saving $492; $2000 / $492 = 4.07 -> cheaper from month 5
    be = break_even(4000, 1000, 500, 5.0, 15.0, 0.70, 2, 2000, months=24)
    assert be['monthly_api'] == pytest.approx(1500.0) and be['monthly_local'] == pytest.approx(1008.0)
    assert be['month'] == 5 and be['months_exact'] == pytest.approx(2000/492)
    assert be['cumulative_local'][4] > be['cumulative_api'][4] and be['cumulative_local'][5] < be['cumulative_api'][5]
    assert len(be['cumulative_api']) == 25


def test_break_even_never():
    assert break_even(1000, 1000, 500, 5.0, 15.0, 0.70, 2, 2000)['month'] is None   # $375/month API < $1008 local
    assert break_even(1000, 1000, 500, 5.0, 15.0, 0.70, 2, 0)['months_exact'] is None


def test_cli_deploy_no_serve_writes_card_and_break_even(tmp_path, capsys):
    "`llamaduo deploy RUN --no-serve` merges, writes the model card and the break-even report for the given profile."
    from llamaduo.loop import init_run
    from llamaduo.cli import main
    from llamaduo.deploy import break_even
    run = init_run('demo', out=tmp_path/'run', overrides={'data.demo_size': 40})
    d = run/'cycle_00'; d.mkdir()
    write_json(d/'metrics.json', _metrics(70.0)); write_json(d/'decision.json', {'pass': True})
    shutil.copytree(run/'base_model', d/'model')
    main(['deploy', str(run.path), '--no-serve', '--requests-per-day', '20000', '--gpu-count', '1'])
    assert (run/'deploy'/'model'/'config.json').exists() and (run/'deploy'/'MODEL_CARD.md').exists()
    assert not (run/'deploy'/'serve_check.json').exists()
    be = json.loads((run/'deploy'/'break_even.json').read_text())
    want = break_even(20000, 1000, 500, 5.0, 15.0, 0.70, 1, 2000.0)
    assert be['month'] == want['month'] and be['month'] is not None and (run/'deploy'/'break_even.png').exists()
    assert f"cheaper from month {want['month']}" in capsys.readouterr().out

def test_model_card_gives_the_serving_commands_and_vllm_takes_the_adapter(tmp_path):
    "An adapter of rank 32: the card's vLLM line serves the base with it and raises --max-lora-rank; the adapter passes vLLM's checks."
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from llamaduo.loop import init_run
    from llamaduo.deploy import vllm_lora_issues
    run = init_run('demo', out=tmp_path/'run', overrides={'data.demo_size': 40})
    d = run/'cycle_00'; d.mkdir()
    write_json(d/'metrics.json', _metrics(70.0)); write_json(d/'decision.json', {'pass': True})
    torch.manual_seed(0)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(run.base_model),
                          LoraConfig(r=32, lora_alpha=64, target_modules=['q_proj', 'v_proj'], init_lora_weights=False))
    peft.save_pretrained(d/'model'); AutoTokenizer.from_pretrained(run.base_model).save_pretrained(d/'model')
    assert vllm_lora_issues(d/'model') == []
    deploy(run, serve=False)
    card = (run/'deploy'/'MODEL_CARD.md').read_text()
    merged, adapter = (run/'deploy'/'model').resolve(), (d/'model').resolve()
    assert f'`llamaduo serve {run.path.resolve()} --port 8000`' in card and f'`transformers serve {merged} --port 8000`' in card
    assert f'`vllm serve {merged} --served-model-name demo-local --port 8000`' in card
    assert f'--enable-lora --lora-modules demo-local={adapter} --max-lora-rank 32 --port 8000`' in card, card
    assert 'would refuse' not in card
