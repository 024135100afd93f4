"The jury, through the CLI: judges of known characters behind a local OpenAI-protocol server, the trust gate, labels."
import os, sys, json, statistics, subprocess
import numpy as np, pytest
from llamaduo.fakes import JudgeLLMServer
from llamaduo.files import read_jsonl

# A reduced demo: 80 coverage examples (20 test, K = 2), 20 epochs of tiny training at a high learning rate, so that the
# model gets some categories right and others wrong (judges can only agree on something that varies); M = 2.
SMALL = {'data.demo_size': 80, 'data.test_frac': 0.25, 'train.epochs': 20, 'train.learning_rate': 3e-3,
         'train.batch_size': 16, 'train.save_steps': 50, 'infer.k': 2, 'infer.max_new_tokens': 24, 'judge.m': 2,
         'judge.epsilon': 100, 'synth.volumes': [64], 'synth.per_call': 8, 'loop.max_cycles': 2, 'loop.papermill': False}

def _cli(*args):
    p = subprocess.run([sys.executable, '-m', 'llamaduo.cli', *map(str, args)], capture_output=True, text=True,
                       timeout=900, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    return p.returncode, p.stdout + p.stderr

def _sets(over): return ['--set', *[f'{k}={json.dumps(v)}' for k, v in over.items()]]

def _panel(url, *models): return [{'provider': 'openai', 'base_url': url + '/v1', 'model': m} for m in models]

def interval_alpha(rows):
    "Krippendorff's alpha, interval level, written out from its definition (an independent check of the package)."
    data = np.array(rows, dtype=float)
    units = [u[~np.isnan(u)] for u in data.T]
    units = [u for u in units if len(u) >= 2]
    values = np.concatenate(units)
    n = len(values)
    d_o = sum(((u[:, None] - u[None, :])**2).sum() / (len(u) - 1) for u in units) / n
    d_e = ((values[:, None] - values[None, :])**2).sum() / (n * (n - 1))
    return 1 - d_o / d_e

def judge_means(rows, judge, score):
    "A judge's value per response from the judgment rows: the mean of its valid gradings."
    acc = {}
    for j in rows:
        if j['judge'] == judge and j['status'] == 'ok': acc.setdefault((j['prompt_id'], j['k']), []).append(j[score])
    return {u: statistics.fmean(v) for u, v in acc.items()}

def test_a_random_judge_is_refused_a_lenient_one_shows_its_bias_and_the_gate_can_be_overridden(tmp_path):
    out = tmp_path/'run'
    with JudgeLLMServer() as srv:
        rc, text = _cli('run', 'demo', '--out', out, *_sets({**SMALL, 'judge.panel': _panel(srv.url, 'demo', 'demo-lenient',
                                                                                             'demo-random')}))
        assert rc == 0, text
        c0 = out/'cycle_00'
        d = json.loads((c0/'decision.json').read_text())
        assert d['verdict'] == 'untrusted' and d['trusted'] is False and d['decision'] == 'stop: the verdict is not trusted'
        assert 'cycle 0: the verdict is not trusted' in text and 'openai/demo-random disagrees most' in text, text
        assert not (c0/'synth_kept.jsonl').exists() and not (out/'cycle_01').exists()   # nothing bought, nothing trained
        rows, m = read_jsonl(c0/'judgments.jsonl'), json.loads((c0/'metrics.json').read_text())
        names = ['openai/demo', 'openai/demo-lenient', 'openai/demo-random']
        tests = read_jsonl(out/'data'/'coverage_test.jsonl')
        tooled = sum(bool(r.get('tools')) for r in tests)   # graded by structure: one row per response, no judge
        assert len(tests) == 20 and tooled > 0
        assert sorted({j['judge'] for j in rows} - {'structural'}) == names
        assert len(rows) == 3 * (20 - tooled) * 2 * 2 + tooled * 2
        for name in names:   # per-judge V is what the rows give
            for s in ('precision', 'similarity'):
                assert abs(m['judges'][name][s]['V'] - statistics.fmean(judge_means(rows, name, s).values())) < 1e-4
        fair, lenient = (m['judges'][f'openai/{x}'] for x in ('demo', 'demo-lenient'))
        # 25 points too high wherever the truth leaves room (a right answer stays at 100)
        gap = lenient['bias']['precision'] - fair['bias']['precision']
        assert lenient['precision']['V'] - fair['precision']['V'] == pytest.approx(gap, abs=1e-3) and gap > 12, (fair, lenient)   # biases: 4 decimals
        vals = [judge_means(rows, n, 'precision') for n in names]
        units = sorted(set().union(*vals), key=str)
        mine = interval_alpha([[v.get(u, np.nan) for u in units] for v in vals])
        assert abs(mine - m['agreement']['precision']['alpha']) < 0.02 and mine < 0.667, (mine, m['agreement'])
        lo, hi = m['agreement']['precision']['ci']
        assert lo <= m['agreement']['precision']['alpha'] <= hi
        assert m['judges']['openai/demo-random']['self_consistency']['precision']['alpha'] < 0.5
        assert 'openai/demo-random' in [c['judge'] for c in d['trust']['checks'] if c['passed'] is False]
        # resumable: the override goes on, and says so in the decision
        rc, text = _cli('resume', out, '--set', 'judge.trust_gate=false')
        assert rc == 0, text
        d = json.loads((c0/'decision.json').read_text())
        assert d['verdict'] == 'synthesize' and d['trust_overridden'] and 'trust_gate=false' in d['reason']
        assert (c0/'synth_kept.jsonl').exists() and (out/'cycle_01'/'decision.json').exists()
    head = (out/'metrics.csv').read_text().splitlines()[0].split(',')
    assert 'precision_V[openai/demo-lenient]' in head and 'precision_alpha' in head and 'trusted' in head

def test_two_judges_that_agree_are_trusted_and_labels_calibrate_them(tmp_path):
    out = tmp_path/'run'
    with JudgeLLMServer() as srv:
        rc, text = _cli('run', 'demo', '--out', out, *_sets({**SMALL, 'loop.max_cycles': 1,
                                                             'judge.panel': _panel(srv.url, 'demo', 'demo-noisy')}))
        assert rc == 0, text
    d = json.loads((out/'cycle_00'/'decision.json').read_text())
    assert d['trusted'] is True and d['verdict'] == 'synthesize', d['trust']
    assert d['self_preference'] is None          # the judges are not the synthesizer (the demo service)
    rc, text = _cli('trust', out)
    assert rc == 0 and json.loads(text.strip().splitlines()[-1])['labels'] == 0, text
    rc, text = _cli('label', out, '--simulate', '--n', 16)
    assert rc == 0 and '16 labels added' in text, text
    rc, text = _cli('trust', out)
    assert rc == 0, text
    fig = json.loads(text.strip().splitlines()[-1])
    assert fig['labels'] == 16 and '| openai/demo | precision | 16 |' in text, text
    fair, noisy = fig['judges']['openai/demo'], fig['judges']['openai/demo-noisy']
    assert fair['precision']['alpha'] > 0.8 and fair['precision']['spearman'] > 0.7, fair
    assert fair['precision']['ci'][0] <= fair['precision']['alpha'] <= fair['precision']['ci'][1]
    labels, rows = read_jsonl(out/'labels.jsonl'), read_jsonl(out/'cycle_00'/'judgments.jsonl')
    assert {r['labeler'] for r in labels} == {'simulated'} and all(r['cycle'] == 0 for r in labels)
    for name, fig_j in (('openai/demo', fair), ('openai/demo-noisy', noisy)):
        jm = judge_means(rows, name, 'precision')
        mine = interval_alpha([[jm[(r['prompt_id'], r['k'])] for r in labels], [r['precision'] for r in labels]])
        assert abs(mine - fig_j['precision']['alpha']) < 0.02, (name, mine, fig_j)
    assert fig['inter_judge']['precision']['alpha'] is not None and fig['self_consistency']['openai/demo']
    # labels made for another judge or template are stale for it: counted, not used
    for r in labels: r['judges']['openai/demo-noisy'] = 'openai/demo-noisy template 000000000000'
    (out/'labels.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in labels))
    fig = json.loads(_cli('trust', out)[1].strip().splitlines()[-1])
    assert fig['judges']['openai/demo-noisy']['stale'] == 16 and fig['judges']['openai/demo-noisy']['precision']['n'] == 0
    assert fig['judges']['openai/demo']['stale'] == 0 and fig['judges']['openai/demo']['precision']['n'] == 16

def test_a_judge_that_disagrees_with_people_fails_the_gate_once_enough_labels_exist():
    from llamaduo.config import load_recipe
    from llamaduo.jury import trust
    jc = load_recipe('demo', ['judge.min_labels=10']).judge
    calib = lambda n, a: {'labels': n, 'judges': {'j': {'precision': dict(alpha=a, ci=None, spearman=None, bias=0, n=n,
                                                                          spread=30.0), 'stale': 0}}}
    assert trust({}, calib(9, 0.1), jc)['trusted'] is True            # too few labels: not gated yet
    t = trust({}, calib(10, 0.1), jc)
    assert t['trusted'] is False and 'j does not agree with people: precision alpha 0.10 against 10 human labels' in t['reason']
    assert trust({}, calib(10, 0.9), jc)['trusted'] is True

def test_demo_judges_are_named_and_an_unknown_one_is_one_clear_error(tmp_path):
    rc, text = _cli('run', 'demo', '--out', tmp_path/'r', '--set', 'judge.panel=[{model: demo-nope}]')
    assert rc != 0 and 'provider demo has no model' in text and 'Traceback' not in text, text
    rc, text = _cli('recipe', 'demo', '--set', 'judge.panel=[{}, {}]')
    assert rc != 0 and "a second judge named 'demo/demo'" in text and 'Traceback' not in text, text

def test_the_budget_cap_holds_across_paid_judges(tmp_path):
    """Two paid judges of a jury share the run's one budget: the second stops where the run's total reaches the cap
    (not at a cap of its own), the phase fails unfinished, and what was paid stays within the cap."""
    from llamaduo.jury import grade_all
    from llamaduo.ledger import BudgetExceeded
    from llamaduo.loop import init_run
    with JudgeLLMServer() as srv:
        prices = {'demo': [20000, 20000], 'demo-lenient': [20000, 20000]}           # USD per 1M tokens: cents a call
        panel = [dict(j, prices=prices) for j in _panel(srv.url, 'demo', 'demo-lenient')]
        run = init_run('demo', out=tmp_path/'run', overrides={'data.demo_size': 60, 'judge.m': 1,
                                                               'judge.panel': panel})
        texts = [r for r in run.test if not r.get('tools')]
        rows = [dict(prompt_id=r['prompt_id'], category=r.get('category'), k=0, response='Some answer.')
                for r in texts]
        first = grade_all(run, rows[:4], phase='judge')              # both judges, prices known: what a call costs
        per_call = run.client.cache.spent(run.run_id) / len(first)
        paid0 = run.client.cache.spent(run.run_id)
        cap = paid0 + per_call * (len(rows) * 1.5 - 8)               # room for the first judge and half the second
        run.write_config(run.cfg.model_copy(update={'service': run.cfg.service.model_copy(update={'budget_usd': cap})}))
        assert {c.cfg.budget_usd for c in run.judges.values()} == {cap}               # run-wide: every judge's client
        with pytest.raises(BudgetExceeded):
            grade_all(run, rows[4:], phase='judge')
        paid = run.client.cache.spent(run.run_id)
        by_model = {}
        for m in srv.requests[len(first):]: by_model[m['body']['model']] = by_model.get(m['body']['model'], 0) + 1
        assert by_model.get('demo') == len(rows) - 4, by_model                        # the first judge: all graded
        assert 0 < by_model.get('demo-lenient', 0) < len(rows) - 4, by_model           # the second: stopped part way
        assert paid <= cap + 1e-9 and paid > paid0 + per_call * (len(rows) - 4), (paid, cap)
