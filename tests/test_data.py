"Coverage-data phase: formats, column mappings, and one clear error per kind of bad input."
import json, csv
from pathlib import Path
import pytest
from llamaduo.data import load_coverage, split_coverage, to_dataset, from_dataset, DataError
from llamaduo.demo import demo_coverage
from llamaduo.loop import init_run
from llamaduo.config import load_recipe

FIX = Path(__file__).parent/'fixtures'

def test_dolly_style_rows_load():
    recs = load_coverage(FIX/'dolly.jsonl')[None]
    assert [r['category'] for r in recs] == ['closed_qa', 'classification', 'summarization', 'open_qa']
    u, a = recs[0]['messages']
    assert u['role'] == 'user' and u['content'].startswith('When did Virgin Australia start operating?\n\nVirgin Australia, the trading name')
    assert a == {'role': 'assistant', 'content': recs[0]['messages'][1]['content']} and '31 August 2000' in a['content']
    assert recs[1]['messages'][0]['content'] == 'Which is a species of fish? Tope or Rope'  # empty context not folded in
    assert all(r['source'] == 'coverage' and r['cycle'] == 0 and len(r['prompt_id']) == 12 for r in recs)

def test_alpaca_style_rows_load_with_input_folded():
    recs = load_coverage(FIX/'alpaca.json')[None]
    assert recs[1]['messages'][0]['content'] == 'Translate the sentence into French.\n\nThe cat sleeps on the sofa.'
    assert recs[1]['messages'][1]['content'] == 'Le chat dort sur le canapé.'
    assert {r['category'] for r in recs} == {'default'}

def test_csv_parquet_and_datasets_folder_match_jsonl(tmp_path):
    rows = [json.loads(l) for l in (FIX/'dolly.jsonl').read_text().splitlines()]
    with open(tmp_path/'d.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
    import pyarrow as pa, pyarrow.parquet as pq, datasets
    pq.write_table(pa.Table.from_pylist(rows), tmp_path/'d.parquet')
    datasets.DatasetDict({'train': datasets.Dataset.from_list(rows[:3]), 'test': datasets.Dataset.from_list(rows[3:])}).save_to_disk(str(tmp_path/'hf'))
    ref = load_coverage(FIX/'dolly.jsonl')[None]
    assert load_coverage(tmp_path/'d.csv')[None] == ref
    assert load_coverage(tmp_path/'d.parquet')[None] == ref
    hf = load_coverage(tmp_path/'hf')
    assert hf['train'] == ref[:3] and hf['test'] == ref[3:]       # the dataset's own split is kept

def test_explicit_mapping_and_category_filter(tmp_path):
    (tmp_path/'x.jsonl').write_text('\n'.join(json.dumps({'q': f'question {i}', 'a': f'answer {i}', 'kind': 'k1' if i % 2 else 'k2'}) for i in range(6)))
    recs = load_coverage(tmp_path/'x.jsonl', columns={'prompt': 'q', 'response': 'a', 'category': 'kind'}, categories=['k1'])[None]
    assert [r['messages'][0]['content'] for r in recs] == ['question 1', 'question 3', 'question 5']

def _bad(tmp_path, name, content:bytes):
    p = tmp_path/name; p.write_bytes(content); return p

@pytest.mark.parametrize('name,content,row,reason', [
    ('nonjson.jsonl', b'{"instruction": "a", "response": "b"}\n{"instruction": "c" "response": "d"}\n', 2, 'not valid JSON'),
    ('missing.jsonl', b'{"instruction": "a", "response": "b"}\n{"instruction": "a2", "response": "b2"}\n{"instruction": "c"}\n', 3, "missing field 'response'"),
    ('empty.jsonl', b'{"instruction": "a", "response": "b"}\n{"instruction": "  ", "response": "d"}\n', 2, "empty text in 'instruction'"),
    ('roles.jsonl', b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                    b'{"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]}\n', 2, 'wrong roles'),
    ('badrole.jsonl', b'{"messages": [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n', 1, "role 'human'"),
    ('latin1.jsonl', b'{"instruction": "a", "response": "b"}\n{"instruction": "caf\xe9", "response": "d"}\n', 2, 'not valid UTF-8'),
    ('latin1.csv', b'instruction,response\na,b\nc,d\ncaf\xe9,e\n', 4, 'not valid UTF-8'),
    ('empty.csv', b'instruction,response\na,b\n"",d\n', 3, "empty text in 'instruction'"),
])
def test_bad_input_names_file_row_and_reason(tmp_path, name, content, row, reason):
    p = _bad(tmp_path, name, content)
    with pytest.raises(DataError) as e: load_coverage(p)
    msg = str(e.value)
    assert msg.startswith(f'{p}, row {row}: ') and reason in msg, msg
    assert (e.value.file, e.value.row) == (str(p), row)

def test_category_with_no_rows_is_named(tmp_path):
    with pytest.raises(DataError, match=r"dolly.jsonl: category 'coding' has no rows \(categories present: classification, closed_qa"):
        load_coverage(FIX/'dolly.jsonl', categories=['closed_qa', 'coding'])

def test_bad_input_leaves_nothing_half_written(tmp_path):
    p = _bad(tmp_path, 'bad.jsonl', b'{"instruction": "a", "response": "b"}\n{oops\n')
    with pytest.raises(DataError, match='row 2'): init_run('demo', tmp_path/'run', {'data.source': str(p)})
    assert not (tmp_path/'run'/'data').exists() or not any((tmp_path/'run'/'data').iterdir())
    p.write_text('{"instruction": "a", "response": "b"}\n{"instruction": "c", "response": "d"}\n')   # fixed: the same folder takes the corrected run
    run = init_run('demo', tmp_path/'run', {'data.source': str(p), 'data.test_frac': 0.5})
    assert len(run.train) + len(run.test) == 2

def test_split_is_stratified_seeded_and_disjoint():
    recs = demo_coverage(100, seed=3)
    tr, te = split_coverage(recs, 0.2, seed=5)
    assert len(tr) + len(te) == 100 and not {r['prompt_id'] for r in tr} & {r['prompt_id'] for r in te}
    cats = {r['category'] for r in recs}
    for c in cats: assert sum(r['category'] == c for r in te) == 5
    assert split_coverage(recs, 0.2, seed=5) == (tr, te) and split_coverage(recs, 0.2, seed=6) != (tr, te)

def test_dataset_round_trip():
    recs = load_coverage(FIX/'dolly.jsonl')[None]
    ds = to_dataset(recs)
    assert ds.column_names[:3] == ['prompt_id', 'category', 'messages'] and from_dataset(ds) == recs

def test_coverage_phase_writes_and_resumes(tmp_path):
    a = init_run('demo', tmp_path)
    stamp = a.train_split.stat().st_mtime_ns
    b = init_run('demo', tmp_path)
    assert (a.train, a.test) == (b.train, b.test) and b.train_split.stat().st_mtime_ns == stamp
    assert len(a.train) + len(a.test) == a.cfg.data.demo_size and a.done('coverage')

def test_demo_source_is_not_a_file():
    with pytest.raises(DataError, match='demo_coverage'): load_coverage('demo')
