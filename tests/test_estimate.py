"`llamaduo estimate`: the counts are what the loop's phases send to the (demo) service, dollars online and in batch, unknown prices, unreadable data and the options that replace it, the estimate beside a run's actual usage."
import json, math, socket
import pytest
from llamaduo.config import load_recipe, UserError
from llamaduo.files import write_jsonl
from llamaduo.data import example_parts
from llamaduo.run import Run, run_phase
from llamaduo.loop import COVERAGE, JUDGE, BASELINE, SYNTH, metrics_table
from llamaduo.estimate import (estimate, estimate_splits, write_estimate, estimate_vs_actual, EstimateError,
                               ESTIMATE_FILE, OPTIONS)
from llamaduo.run import coverage_splits

OPENAI = ['service.provider=openai', 'service.model=gpt-4o-2024-08-06']

@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    for k in ('OPENAI_API_KEY', 'ANTHROPIC_API_KEY', 'GEMINI_API_KEY', 'GOOGLE_API_KEY'): monkeypatch.delenv(k, raising=False)

def _run_cycle0(tmp_path, cfg)->Run:
    "A run folder whose cycle 0 went through the real baseline, judge and synth phases against the demo service."
    run = Run(tmp_path/'run'); run.path.mkdir(parents=True); run.write_config(cfg)
    run_phase(run, run, COVERAGE); run.write_manifest()
    write_estimate(run.path)
    c = run.cycle(0); c.path.mkdir()
    # the local model's responses as the estimate assumes them: one per prompt and k, as long as the reference
    write_jsonl(c.responses, [dict(prompt_id=r['prompt_id'], category=r['category'], k=k, response=example_parts(r)[1])
                              for r in run.test for k in range(cfg.infer.k)])
    run_phase(run, c, JUDGE); run_phase(run, c, BASELINE)   # judge first: the demo service answers as the references say
    run_phase(run, c, SYNTH, n=cfg.synth.volume(0), cycle=1, before=0)
    return run

def test_counts_and_tokens_are_what_the_demo_service_receives(tmp_path):
    cfg = load_recipe('demo', ['infer.k=1', 'judge.service_baseline=true', 'synth.base_volume=44', 'loop.max_cycles=3', 'loop.papermill=false'])
    run = _run_cycle0(tmp_path, cfg)
    vs = estimate_vs_actual(run.path)
    by = {r['phase']: r for r in vs['rows']}
    assert set(by) == {'baseline', 'judge', 'synth'} and all(r['cycle'] == 0 for r in vs['rows']) and not vs['not_estimated']
    n = len(run.test)
    judged = sum(not r.get('tools') for r in run.test)   # tool-call answers are graded by structure: no call
    assert 0 < judged < n
    assert by['judge']['calls'] == by['judge']['est_calls'] == judged * cfg.infer.k * cfg.judge.m
    assert by['baseline']['calls'] == by['baseline']['est_calls'] == n + judged * cfg.judge.m
    assert by['synth']['calls'] == by['synth']['est_calls'] == math.ceil(44 / cfg.synth.per_call) == 6
    # the demo provider counts words: the estimate counts the same words in the same prompts
    assert by['judge']['tokens_in'] == by['judge']['est_tokens_in'] and by['synth']['tokens_in'] == by['synth']['est_tokens_in']
    # the service's answers are the references here, so grading them repeats the judge's requests: cached, not paid
    assert by['baseline']['network_calls'] == n and 0 < by['baseline']['tokens_in'] < by['baseline']['est_tokens_in']
    assert by['judge']['tokens_out'] == pytest.approx(by['judge']['est_tokens_out'], rel=0.15)
    # the run's own accounting (metrics.csv) holds the same calls as the estimate's rows of cycle 0
    df = metrics_table(run)
    assert int(df[df.cycle.astype(str) == '0'].calls.iloc[0]) == vs['estimate']['calls'] == vs['actual']['calls']
    # the worst case covers all 3 cycles: 3 judged, 2 synthesized (44, 88)
    est = json.loads((run.path/ESTIMATE_FILE).read_text())
    assert est['synth_volumes'] == [44, 88] and vs['worst_case']['calls'] == est['calls'] > vs['estimate']['calls']
    assert '| 0 | judge |' in vs['markdown']

def test_whole_loop_worst_case_and_batch_half(capsys):
    e = estimate('demo', OPENAI)
    cfg = load_recipe('demo', OPENAI)
    n, per = sum(not r.get('tools') for r in coverage_splits(cfg)[1]), cfg.synth.per_call   # judged: the text answers
    vols = [cfg.synth.volume(t) for t in range(cfg.loop.max_cycles - 1)]
    assert e['calls'] == cfg.loop.max_cycles * n * cfg.infer.k * cfg.judge.m + sum(math.ceil(v / per) for v in vols)
    assert e['phases']['synth']['calls'] == sum(math.ceil(v / per) for v in vols) and e['synth_volumes'] == vols
    assert e['online_usd'] > 0 and e['batch_usd'] == pytest.approx(e['online_usd'] / 2, abs=1e-5)
    assert e['online_usd'] == pytest.approx((e['tokens_in'] * 2.5 + e['tokens_out'] * 10.0) / 1e6, abs=1e-5)
    out = capsys.readouterr().out.strip().splitlines()
    line = json.loads(out[-1])
    for k in ('online_usd', 'batch_usd', 'calls', 'tokens_in', 'tokens_out', 'phases', 'cycles', 'token_rule'): assert k in line
    assert line['calls'] == e['calls'] and line['token_rule'].startswith('4 characters per token')
    assert any('| all | all phases |' in l for l in out) and sum(l.startswith('{') for l in out) == 1

def test_recipe_price_and_unknown_price(capsys):
    e = estimate('demo', ['service.provider=openai', 'service.model=my-model', 'service.prices={my-model: [1.0, 3.0]}'], quiet=True)
    assert e['online_usd'] == pytest.approx((e['tokens_in'] + 3 * e['tokens_out']) / 1e6, abs=1e-5)
    u = estimate('demo', ['service.provider=openai', 'service.model=my-model'])
    assert (u['online_usd'], u['batch_usd'], u['price']) == (None, None, None) and u['calls'] == e['calls'] > 0
    assert all(r['online_usd'] is None for r in u['rows']) and any('no price for' in n for n in u['notes'])
    out = capsys.readouterr().out
    assert 'unknown' in out and '$0.0000' not in out and json.loads(out.strip().splitlines()[-1])['online_usd'] is None

def test_hub_id_that_cannot_be_read_is_one_message_naming_the_options():
    hub = ['data.source=nobody/no-such-dataset', 'data.format=hub']
    with pytest.raises(EstimateError) as ei: estimate('demo', hub, quiet=True)
    msg = str(ei.value)
    assert "'nobody/no-such-dataset'" in msg and all(f"--{k.replace('_', '-')}" in msg for k in OPTIONS) and '\n' not in msg
    with pytest.raises(EstimateError, match='--test-size') as ei: estimate('demo', hub, train_size=100, quiet=True)
    assert '--train-size' not in str(ei.value)

def test_hub_unreachable_is_told_without_trying(monkeypatch):
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False); monkeypatch.delenv('HF_DATASETS_OFFLINE', raising=False)
    def no_dns(*a, **k): raise socket.gaierror(-2, 'Name or service not known')
    monkeypatch.setattr(socket, 'getaddrinfo', no_dns)
    with pytest.raises(EstimateError, match='cannot be reached from here'): estimate('no_robots', quiet=True)

def test_missing_local_file_names_the_options(tmp_path):
    with pytest.raises(EstimateError, match='--prompt-chars'): estimate('demo', [f'data.source={tmp_path}/missing.jsonl'], quiet=True)

def test_options_replace_the_data():
    opts = dict(train_size=1300, test_size=70, prompt_chars=900, response_chars=450)
    e = estimate('no_robots', **opts, quiet=True)
    cfg = load_recipe('no_robots'); k, m, T = cfg.infer.k, cfg.judge.m, cfg.loop.max_cycles
    assert e['phases']['judge']['calls'] == T * 70 * k * m and e['phases']['base_model']['calls'] == 70 * k * m
    assert e['phases']['baseline']['calls'] == 70 + 70 * m
    assert e['phases']['synth']['calls'] == sum(math.ceil(cfg.synth.volume(t) / cfg.synth.per_call) for t in range(T - 1))
    assert e['data'] == dict(train_size=1300, test_size=70, prompt_chars=900.0, response_chars=450.0, source='options')
    # 400 more characters in each prompt: 100 more tokens in each judge call (4 characters per token)
    f = estimate('no_robots', **{**opts, 'prompt_chars': 1300}, quiet=True)
    assert f['phases']['judge']['tokens_in'] - e['phases']['judge']['tokens_in'] == 100 * e['phases']['judge']['calls']
    # No Robots examples are long: the shipped recipe leaves room for 5 pairs a call; at 1024 tokens the estimate says they are cut
    assert e['phases']['synth']['capped'] == 0 and not any('replies are cut' in n for n in e['notes'])
    g = estimate('no_robots', ['service.max_tokens=1024'], **opts, quiet=True)
    assert g['phases']['synth']['capped'] == g['phases']['synth']['calls'] and any('replies are cut' in n for n in g['notes'])
    assert any('exceeds service.budget_usd' in n for n in e['notes'])
    # an option beside readable data replaces that figure only
    d = estimate('demo', test_size=10, quiet=True)
    judged = sum(not r.get('tools') for r in coverage_splits(load_recipe('demo'))[1][:10])
    assert d['data']['test_size'] == 10 and d['data']['train_size'] == 144 and d['phases']['judge']['calls'] == 4 * judged * 2 * 2
    with pytest.raises(EstimateError, match='--test-size'): estimate('demo', test_size=0, quiet=True)

def test_estimate_vs_actual_needs_an_estimate(tmp_path):
    run = Run(tmp_path/'run'); run.path.mkdir(); run.write_config(load_recipe('demo'))
    with pytest.raises(UserError, match=ESTIMATE_FILE): estimate_vs_actual(run.path)

def test_empty_split_is_an_error():
    with pytest.raises(EstimateError, match='both are needed'): estimate_splits(load_recipe('demo'), [], [])

def test_rows_the_loader_drops_are_said_in_the_estimate(tmp_path, capsys):
    rows = [dict(instruction=f'Question number {i}?', response=f'Answer {i}.') for i in range(12)]
    (tmp_path/'cov.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows + [rows[2], rows[5]]))
    e = estimate('demo', [f'data.source={tmp_path/"cov.jsonl"}', 'data.format=auto'])
    out = capsys.readouterr().out
    assert e['data']['dropped_on_load'] == 2 and '2 row(s) of' in out and 'dropped on load' in out
