"Acceptance tests of the synthesis phase (issue 6): filters, dedup, decontamination, report, files."
import json, os
from types import SimpleNamespace
import pytest
from llamaduo.config import SynthCfg
from llamaduo.files import read_jsonl
from llamaduo.synth import draw_seeds, synth_record, synthesize
from llamaduo.curate import FILTER_RULES, clean, near_duplicates, quality_issue, rouge_l
from llamaduo.data import example_parts

def rec(pid, cat, ins, res):
    return dict(prompt_id=pid, category=cat, messages=[{'role': 'user', 'content': ins}, {'role': 'assistant', 'content': res}],
                source='coverage', generator='human', cycle=0, seed_prompt_id=None)

TRAIN = [rec('t0', 'closed_qa', 'Which river flows through the city of Cairo in Egypt?', 'The Nile river flows through Cairo.'),
         rec('t1', 'classification', 'Classify the sentiment of this review: the soup was cold and bland.', 'negative'),
         rec('t2', 'coding', 'Write a Python function that doubles a number.', '```python\ndef double(x):\n    return 2 * x\n```')]
TEST = [rec('q0', 'closed_qa', 'What is the tallest mountain on Earth, measured above sea level?', 'Mount Everest is the tallest mountain above sea level.')]
BASE = ('Describe how a rainbow forms when sunlight passes through raindrops in the sky.',
        'Sunlight enters each raindrop and bends. It reflects off the back of the drop. The light splits into its colours as it leaves.')

def syn(ins, res, cat='closed_qa'): return synth_record(ins, res, TRAIN[0] | dict(category=cat), 'test', 1)

def test_exact_and_near_duplicates_removed_one_copy_kept():
    ins, res = BASE
    variants = [(ins, res),                                                                       # original (kept)
                (ins, res),                                                                       # exact
                (ins.upper().replace('.', '!'), res.lower().replace('.', ';')),                   # case / punctuation
                (ins, 'It reflects off the back of the drop. Sunlight enters each raindrop and bends. The light splits into its colours as it leaves.'),  # reordered
                (ins.replace('passes through', 'goes through'), res.replace('bends', 'is bent'))]  # reworded
    raw = [syn(i, r) for i, r in variants] + [syn(example_parts(TRAIN[0])[0], 'The Nile river flows through Cairo.')]  # dup of train
    kept, rep = clean(raw, TRAIN, TEST, SynthCfg())
    assert [r['prompt_id'] for r in kept] == [raw[0]['prompt_id']]
    dd = rep['stages'][2]
    assert dd['stage'] == 'dedup' and (dd['within_batch'], dd['vs_reference']) == (4, 1)
    assert all(m['matched'] == raw[0]['prompt_id'] for m in dd['matches'] if m['against'] == 'batch')

def test_paraphrased_test_item_never_survives():
    paraphrases = [('What is the highest mountain on Earth, measured above sea level?', 'Mount Everest is the highest mountain above sea level.'),
                   ('what is the TALLEST mountain on earth measured above sea level', 'Everest.'),                 # instruction alone
                   ('Above sea level, what is the tallest mountain on Earth?', 'The tallest mountain above sea level is Mount Everest.')]
    kept, rep = clean([syn(i, r) for i, r in paraphrases], TRAIN, TEST, SynthCfg())
    assert kept == []
    m = rep['stages'][0]['matches']
    assert len(m) == 3 and {x['matched'] for x in m} == {'q0'} and all(x['stage'] == 'decontaminate' and x['rule'] for x in m)

def test_distinct_samples_survive():
    pairs = [('Name the largest ocean on Earth.', 'The Pacific Ocean.'),
             ('Translate "good morning" into French.', 'Bonjour.'),
             ('Summarize: The meeting moved to Friday because the room was booked on Thursday.', 'The meeting moved to Friday.'),
             ('How many sides does a hexagon have?', 'Six sides.'),
             ('Classify the sentiment of this review: the staff were friendly and quick.', 'positive')]
    kept, rep = clean([syn(i, r) for i, r in pairs], TRAIN, TEST, SynthCfg())
    assert len(kept) == 5 and rep['kept'] == 5

CASES = {'empty': ('Name a fruit.', ''), 'too_short': ('Fruit?', 'Apple.'), 'too_long': ('Name a fruit.', 'apple ' * 40),
         'response_in_instruction': ('Say: red apple pie', 'Red apple pie!'),
         'refusal_or_meta': ('Name a fruit.', 'As an AI language model, I cannot answer.'),
         'json_remnant': ('Name a fruit.", "response": "x', 'An apple from the tree.'),
         'coding_without_code': ('Write a function that adds one.', 'It adds one to its input.')}

def test_each_filter_rule_fires_and_is_counted():
    assert set(CASES) == set(FILTER_RULES)
    cfg = SynthCfg(min_words=2, max_words=30)
    for rule, (i, r) in CASES.items(): assert quality_issue(i, r, 'coding' if rule.startswith('coding') else 'closed_qa', cfg) == rule
    raw = [syn(i, r, 'coding' if k.startswith('coding') else 'closed_qa') for k, (i, r) in CASES.items()]
    kept, rep = clean(raw, TRAIN, TEST, cfg)
    assert kept == [] and rep['filters'] == dict.fromkeys(FILTER_RULES, 1)

def test_rouge_l_and_keep_first():
    from rouge_score import rouge_scorer
    sc = rouge_scorer.RougeScorer(['rougeL'])
    for a, b in [('the quick brown fox jumps', 'the brown quick fox leaps high'), ('x y z', 'z y x w')]:
        assert rouge_l(a, b) == pytest.approx(sc.score(a, b)['rougeL'].fmeasure)
    t = ' '.join(f'word{i}' for i in range(30))
    assert near_duplicates([t, t, t + ' extra'], []) == [None, (0, 1.0), pytest.approx((0, 60 / 61))]

class FakeClient:
    model = 'fake'
    def __init__(self, refusal='api_error'): self.seen, self.refusal = [], refusal
    def batch(self, requests, phase='synth', desc=None):
        self.seen += requests; out = []
        for i, r in enumerate(requests):
            if i == 0: out.append(SimpleNamespace(text='not json at all', status='ok', error=None)); continue
            if i == 1: out.append(SimpleNamespace(text=None, status=self.refusal, error='refused')); continue
            out.append(SimpleNamespace(text=json.dumps({'pairs': [dict(zip(('instruction', 'response'), [('Which metal is liquid at room temperature?', 'Mercury.'), ('Who painted the Mona Lisa?', 'Leonardo da Vinci.')][i % 2])),
                                                                  {'instruction': 1, 'response': 'bad'}, {'instruction': BASE[0], 'response': BASE[1]}]}), status='ok', error=None))
        return out

def test_synthesize_report_adds_up_and_files_atomic(tmp_path):
    c = FakeClient()
    rep = synthesize(c, TRAIN[:2], [], TEST, n=10, cycle=2, cfg=SynthCfg(per_call=3), seed=0, out=tmp_path)
    assert len(c.seen) == 4 and all('<count>' in r['messages'][0]['content'] and r['json'] for r in c.seen)
    g = rep['generation']
    assert (g['calls'], g['bad_reply'], g['api_error'], g['invalid_pairs'], g['pairs']) == (4, 1, 1, 2, 4)
    st = rep['stages']
    for a, b in zip(st[1:], st[2:]): assert a['n_out'] == b['n_in']
    assert st[1]['n_in'] == g['pairs'] and st[-1]['n_out'] == rep['kept']
    assert [s['stage'] for s in st] == ['generate', 'decontaminate', 'filter', 'dedup']
    assert st[2]['removed'] == sum(st[2]['rules'].values())
    assert st[1]['removed'] == len(st[1]['matches']) and st[3]['removed'] == len(st[3]['matches'])
    assert sorted(os.listdir(tmp_path)) == ['synth_kept.jsonl', 'synth_raw.jsonl', 'synth_report.json']  # no temp files left
    kept, raw = read_jsonl(tmp_path/'synth_kept.jsonl'), read_jsonl(tmp_path/'synth_raw.jsonl')
    assert len(raw) == 4 and len(kept) == rep['kept'] == 3  # the BASE pair repeats across calls: one copy kept
    assert all(r['source'] == 'synthetic' and r['cycle'] == 2 and r['generator'] == 'fake' and r['seed_prompt_id'] for r in kept)

def test_budget_refusal_stops_synthesis_unwritten(tmp_path):
    "A call refused by the budget stops the phase before anything is written, so a resume sends it again."
    from llamaduo.ledger import BudgetExceeded
    with pytest.raises(BudgetExceeded, match='refused'):
        synthesize(FakeClient('budget_exceeded'), TRAIN[:2], [], TEST, n=10, cycle=2, cfg=SynthCfg(per_call=3), seed=0, out=tmp_path)
    assert os.listdir(tmp_path) == []

def test_with_demo_service(tmp_path):
    pytest.importorskip('llamaduo.service')
    from llamaduo.config import ServiceCfg
    from llamaduo.service import ServiceClient
    try:
        from llamaduo.demo import make_task, CATEGORIES
    except ImportError: pytest.skip('llamaduo.demo not available')
    import random
    rng = random.Random(0)
    train = [rec(f'd{i}', c, (t := make_task(c, rng))['prompt'], t['response']) for i, c in enumerate(CATEGORIES * 5)]
    client = ServiceClient(ServiceCfg(provider='demo'), progress=False)
    from llamaduo.config import load_recipe
    rep = synthesize(client, train, [], train[:2], n=40, cycle=1, cfg=load_recipe('demo', ['synth.per_call=5']).synth, seed=0, out=tmp_path)  # the demo's thresholds: its tasks share templates
    assert rep['generation']['ok'] == 8 and rep['generation']['pairs'] == 40 and 0 < rep['kept'] < 40
    assert sum(rep['filters'].values()) > 0

def test_bench_small():
    "The dedup bench on real text, small: the recall goals hold in every length bucket, and distinct items survive."
    from llamaduo.bench import bench_dedup
    out = bench_dedup(2000, per_bucket=120, n_test=60, corpus=12000)
    assert min(out['recall_lt20'], out['recall_20to39'], out['recall_ge40']) >= 0.95, out
    assert out['false_positive_rate'] <= 0.01 and out['filter_reject_rate'] <= 0.005, out
