"The demo world: graded tasks, and `llamaduo bench demo` — its figures come from the runs, and a seed reproduces to the byte."
import json, random
from pathlib import Path
import pandas as pd, pytest
from llamaduo.demo import (make_task, solve, verify, demo_coverage, CATEGORIES, POSITIVE, NEGATIVE, SUBJECTS, VERBS,
                           THINGS, FUNCS, LEVELS)
from llamaduo.bench import bench_demo

def test_every_level_of_every_category_is_solved_from_its_prompt_alone():
    import keyword
    assert not [f for f in FUNCS if keyword.iskeyword(f)]          # every function name can be defined
    rng = random.Random(0)
    for cat in CATEGORIES:
        for level in (1, 2, 3):
            for _ in range(30):
                t = make_task(cat, rng, level)
                assert solve(t['prompt']) == (cat, t['response']), t
                assert verify(t['prompt'], t['response']) == 1.0
    t = make_task('summarization', rng, 2)     # passive voice: the subject comes last in the sentence
    s, v, o = t['response'].split()
    assert t['prompt'].index(o) < t['prompt'].index(s) and f'was {v} by' in t['prompt']
    assert 0 < verify(t['prompt'], f'{s} {v}') < 1.0     # two of three words: partial credit
    t = make_task('coding', rng, 3)
    assert '(x' in t['response'] and verify(t['prompt'], t['response'].replace('(', '').replace(')', '')) == 0.0  # precedence matters

def test_levels_are_drawn_at_their_shares_and_coverage_sees_only_part_of_the_answer_words():
    rng = random.Random(1)
    forms = [make_task('coding', rng)['response'].split('return ')[1] for _ in range(4000)]
    lv3 = sum('(' in f for f in forms) / len(forms)
    lv2 = sum('(' not in f and '*' in f and ('+' in f or '-' in f) for f in forms) / len(forms)
    assert abs(lv2 - LEVELS[1]) < 0.03 and abs(lv3 - LEVELS[2]) < 0.03, (lv2, lv3)
    # what makes scores rise with data: the demo's 144 training examples show the model only part of each answer vocabulary
    cov = [r for r in demo_coverage(144, seed=42) if r['category'] in CATEGORIES]
    seen = {w for r in cov for w in r['messages'][1]['content'].replace('(', ' ').split()}
    words = {w for r in cov for w in r['messages'][0]['content'].replace('.', ' ').replace(',', ' ').split()}
    for vocab in (SUBJECTS, VERBS, THINGS, FUNCS):
        assert 0.2 < len(seen & set(vocab)) / len(vocab) < 0.9, vocab[:3]
    assert 0.2 < len(words & set(POSITIVE + NEGATIVE)) / 80 < 0.9

SMALL = ['data.demo_size=48', 'data.test_frac=0.25', 'train.epochs=4', 'infer.k=1', 'judge.m=1', 'synth.volumes=[96]',
         'loop.max_cycles=2', 'loop.papermill=false']   # the bench's own figures; papermill runs are tested in test_loop and test_money

@pytest.mark.slow
def test_bench_demo_reports_what_the_runs_wrote_and_a_seed_reproduces_to_the_byte(tmp_path, capsys):
    a = bench_demo(seeds=1, threads=1, out=str(tmp_path/'a'), first_seed=7, overrides=SMALL)
    b = bench_demo(seeds=1, threads=1, out=str(tmp_path/'b'), first_seed=7, overrides=SMALL)
    ma, mb = (tmp_path/'a'/'seed_7'/'metrics.csv').read_bytes(), (tmp_path/'b'/'seed_7'/'metrics.csv').read_bytes()
    assert ma == mb                                         # same seed, same machine, fresh runs: byte-identical
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == b and 'seed 7: V ' in '\n'.join(lines)
    df, runs = pd.read_csv(tmp_path/'a'/'bench_demo.csv'), pd.read_csv(tmp_path/'a'/'seed_7'/'metrics.csv')
    assert list(df.precision_V) == list(runs.precision_V) and list(df.train_size) == list(runs.train_size)
    v = list(runs.precision_V)
    assert a['monotone_share'] == float(all(y > x for x, y in zip(v, v[1:])))
    assert a['pass_share'] == float((runs.passed.astype(str) == 'True').any()) and a['final_v_spread'] == 0.0
    summary = json.loads((tmp_path/'a'/'seed_7'/'summary.json').read_text())
    assert a['median_wall_s'] == summary['seconds'] and a['seeds'] == 1 and a['threads'] == 1
    assert json.loads((tmp_path/'a'/'bench_demo.json').read_text()) == a and (tmp_path/'a'/'demo_band.png').stat().st_size > 10_000
    assert a == {**b, 'out': a['out'], 'median_wall_s': a['median_wall_s'], 'max_wall_s': a['max_wall_s']}

def test_bench_demo_names_the_kernel_sets_it_knows(tmp_path):
    from llamaduo.config import UserError
    with pytest.raises(UserError, match="--isa 'sse' is not one of native, avx2"):
        bench_demo(seeds=1, isa='sse', out=str(tmp_path))

def test_demo_judge_compares_pairs_by_correctness():
    "The demo service answers the pairwise prompt: the verified answer beats a wrong one in both orders; equal answers tie."
    from llamaduo.config import ServiceCfg
    from llamaduo.service import ServiceClient
    from llamaduo.judge import pairwise
    from llamaduo.demo import demo_coverage
    recs = demo_coverage(12, seed=5, categories=CATEGORIES)   # text answers: tool calls are graded by structure
    right = [dict(prompt_id=r['prompt_id'], k=0, response=r['messages'][-1]['content']) for r in recs]
    wrong = [dict(prompt_id=r['prompt_id'], k=0, response='no idea') for r in recs]
    c = ServiceClient(ServiceCfg(), progress=False)
    assert pairwise(c, recs, right, wrong)['win'] == 12
    assert pairwise(c, recs, wrong, right)['loss'] == 12
    assert pairwise(c, recs, right, right)['tie'] == 12
