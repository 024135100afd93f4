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
    recs = demo_coverage(120, seed=3)   # 20 of each of the 6 categories
    tr, te = split_coverage(recs, 0.2, seed=5)
    assert len(tr) + len(te) == 120 and not {r['prompt_id'] for r in tr} & {r['prompt_id'] for r in te}
    cats = {r['category'] for r in recs}
    for c in cats: assert sum(r['category'] == c for r in te) == 4
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

# --- loaders (issue #15): places, byte-order marks, types, categories, duplicates, paths, one-line errors ---

def _jsonl(tmp_path, name, rows): return _bad(tmp_path, name, ''.join(json.dumps(r) + '\n' for r in rows).encode())

def _err(f, *a, **kw):
    with pytest.raises(DataError) as e: f(*a, **kw)
    return e.value

def test_csv_rows_are_spreadsheet_rows_and_name_the_line_they_start_on(tmp_path):
    from llamaduo.data import iter_rows
    p = _bad(tmp_path, 'd.csv', b'instruction,response\na,b\n"two\nlines",c\n"three\nline\ncell",d\ne,\n')
    assert [(pos.row, pos.line) for pos, _ in iter_rows(p)] == [(2, 2), (3, 3), (4, 5), (5, 8)]
    e = _err(load_coverage, p)
    assert str(e) == f"{p}, row 5 (line 8): empty text in 'response'" and (e.row, e.line) == (5, 8)
    q = _bad(tmp_path, 'q.csv', b'instruction,response\na,b\nc,\n')          # no newline in a cell: the line is not repeated
    assert str(_err(load_coverage, q)) == f"{q}, row 3: empty text in 'response'"
    o = _bad(tmp_path, 'o.csv', b'instruction,response\na,b\n"c,d\ne,f\n')  # a quote left open: named at its row
    assert str(_err(load_coverage, o)) == f"{o}, row 3: not valid CSV (unexpected end of data; a quote left open?)"

@pytest.mark.parametrize('name', ['d.csv', 'd.json', 'd.jsonl'])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path, name):
    rows = [{'instruction': 'Say hi.', 'response': 'hi', 'category': 'chat'}, {'instruction': 'Say yo.', 'response': 'yo', 'category': 'chat'}]
    text = {'d.csv': 'instruction,response,category\nSay hi.,hi,chat\nSay yo.,yo,chat\n', 'd.json': json.dumps(rows),
            'd.jsonl': ''.join(json.dumps(r) + '\n' for r in rows)}[name]
    (tmp_path/'plain').mkdir(); (tmp_path/'bom').mkdir()
    plain, bom = _bad(tmp_path/'plain', name, text.encode()), _bad(tmp_path/'bom', name, b'\xef\xbb\xbf' + text.encode())
    recs = load_coverage(bom)[None]
    assert recs == load_coverage(plain)[None] and [r['messages'][0]['content'] for r in recs] == ['Say hi.', 'Say yo.']

@pytest.mark.parametrize('value,kind', [(42, 'a number'), (4.5, 'a number'), (['x'], 'a list'), ({'a': 1}, 'an object'), (True, 'a boolean')])
def test_a_non_string_where_text_belongs_is_named(tmp_path, value, kind):
    p = _jsonl(tmp_path, 't.jsonl', [{'instruction': 'a', 'response': value}])
    assert str(_err(load_coverage, p)) == f"{p}, row 1: expected text in 'response', got {kind}"
    m = _jsonl(tmp_path, 'm.jsonl', [{'messages': [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': value}]}])
    assert str(_err(load_coverage, m)) == f"{m}, row 1: expected text in message 1 (assistant), got {kind}"

def test_json_errors_name_the_element_its_line_and_syntax_errors_line_and_column(tmp_path):
    a = _bad(tmp_path, 'a.json', b'[\n  {"instruction": "a", "response": "b"},\n  {"instruction": "c",\n   "response": ""}\n]')
    e = _err(load_coverage, a)
    assert str(e) == f"{a}, element 2 (line 3): empty text in 'response'" and (e.row, e.line) == (2, 3)
    o = _bad(tmp_path, 'o.json', b'{"name": "x", "rows": [{"instruction": "a", "response": "b"},\n\n{"instruction": "c", "response": 5}]}')
    assert str(_err(load_coverage, o)) == f"{o}, element 2 (line 3): expected text in 'response', got a number"
    text = '[{"instruction": "a", "response": "b"}, {"instruction": "c" "response": "d"}]'
    s = _bad(tmp_path, 's.json', text.encode())                               # one line: the column says where
    assert str(_err(load_coverage, s)) == f"""{s}: not valid JSON at line 1, column {text.index('"response": "d"') + 1} (Expecting ',' delimiter)"""
    m = _bad(tmp_path, 'm.json', b'[\n{"instruction": "a", "response": "b"},\n{"instruction": "c", "response": "d"]')
    assert str(_err(load_coverage, m)) == f"{m}: not valid JSON at line 3, column 37 (Expecting ',' delimiter)"
    j = _bad(tmp_path, 'j.jsonl', b'{"instruction": "a", "response": "b"}\n{"instruction": "c" "response": "d"}\n')
    assert str(_err(load_coverage, j)) == f"{j}, row 2: not valid JSON at line 2, column 21 (Expecting ',' delimiter)"

def test_control_character_message_has_no_doubled_word(tmp_path):
    p = _bad(tmp_path, 'c.jsonl', b'{"instruction": "a\tb", "response": "c"}\n')
    msg = str(_err(load_coverage, p))
    assert msg == f"{p}, row 1: not valid JSON at line 1, column 19 (Invalid control character)" and 'at at' not in msg

def test_rows_without_a_category_are_an_error_unless_a_default_is_set(tmp_path):
    rows = [{'instruction': f'q{i}', 'response': f'a{i}', 'category': c} for i, c in enumerate(['x', None, '', 'y', '  ', 'x'])]
    del rows[1]['category']                                                    # missing, null, empty and blank all count
    p = _jsonl(tmp_path, 'c.jsonl', rows)
    assert str(_err(load_coverage, p)) == f"{p}: 3 rows have no category (rows 2, 3, 5); set data.default_category to use one"
    st = {}
    recs = load_coverage(p, default_category='misc', stats=st)[None]
    assert [r['category'] for r in recs] == ['x', 'misc', 'misc', 'y', 'misc', 'x']
    assert st == dict(rows=6, records=6, duplicates_dropped=0, default_category='misc', default_category_rows=3)
    j = _bad(tmp_path, 'c.json', json.dumps(rows[:2]).encode())
    assert str(_err(load_coverage, j)) == f"{j}: 1 element has no category (element 2); set data.default_category to use one"
    # data without any category: all rows in the default category ('default' unless set), counted
    st = {}
    assert {r['category'] for r in load_coverage(FIX/'alpaca.json', stats=st)[None]} == {'default'}
    assert (st['default_category'], st['default_category_rows']) == ('default', 3)
    assert {r['category'] for r in load_coverage(FIX/'alpaca.json', default_category='general')[None]} == {'general'}
    # an explicit mapping naming a category column that no row has is a typo, not "no categories"
    e = _err(load_coverage, FIX/'alpaca.json', columns={'prompt': 'instruction', 'response': 'output', 'category': 'kind'})
    assert str(e) == f"{FIX/'alpaca.json'}: data.columns maps category to 'kind', which no row has (the first row has input, instruction, output)"

def test_duplicate_prompts_are_dropped_with_a_count_or_an_error(tmp_path):
    rows = [{'instruction': q, 'response': 'r', 'category': 'k'} for q in ['a', 'b', 'a', 'c', 'b', 'a']]
    p, st = _jsonl(tmp_path, 'd.jsonl', rows), {}
    recs = load_coverage(p, stats=st)[None]
    assert [r['messages'][0]['content'] for r in recs] == ['a', 'b', 'c'] and st['duplicates_dropped'] == 3 and st['records'] == 3
    e = _err(load_coverage, p, duplicates='error')
    assert str(e) == f"{p}, row 3: duplicate prompt_id {recs[0]['prompt_id']} (same as row 1)"
    assert load_recipe('demo').data.duplicates == 'drop' and load_recipe('demo', {'data.duplicates': 'error'}).data.duplicates == 'error'
    from llamaduo.config import RecipeError
    with pytest.raises(RecipeError, match="data.duplicates"): load_recipe('demo', {'data.duplicates': 'keep'})

SI = {'prompt': 'instruction', 'context': 'instances[*].input', 'response': 'instances[*].output', 'category': 'meta.category'}

def _si_rows():
    return [{'instruction': 'Add the numbers.', 'meta': {'category': 'math'}, 'instances': [{'input': '2 3', 'output': '5'}, {'input': '1 1', 'output': '2'}]},
            {'instruction': 'Name the colour.', 'meta': {'category': 'vision'}, 'instances': [{'input': 'sky', 'output': 'blue'}]}]

def test_dotted_paths_and_list_explosion(tmp_path):
    p = _jsonl(tmp_path, 'si.jsonl', _si_rows())
    recs = load_coverage(p, columns=SI)[None]
    assert [(r['category'], r['messages'][0]['content'], r['messages'][1]['content']) for r in recs] == [
        ('math', 'Add the numbers.\n\n2 3', '5'), ('math', 'Add the numbers.\n\n1 1', '2'), ('vision', 'Name the colour.\n\nsky', 'blue')]
    assert len({r['prompt_id'] for r in recs}) == 3
    bad = _si_rows(); del bad[0]['instances'][1]['output']
    q = _jsonl(tmp_path, 'bad.jsonl', bad)
    assert str(_err(load_coverage, q, columns=SI)) == f"{q}, row 1, instance 2: missing field 'instances[*].output' (for response)"
    bad = _si_rows(); bad[1]['instances'] = 'sky'
    q = _jsonl(tmp_path, 'bad2.jsonl', bad)
    assert str(_err(load_coverage, q, columns=SI)) == f"{q}, row 2: 'instances' must be a non-empty list (for the [*] paths of data.columns), got text"
    e = _err(load_coverage, p, columns={**SI, 'response': 'outputs[*]'})
    assert str(e) == f"{p}, row 1: data.columns: every [*] path must explode the same list, got instances and outputs"
    bad = _si_rows(); bad[1]['meta'] = 'vision'
    q = _jsonl(tmp_path, 'bad3.jsonl', bad)
    assert str(_err(load_coverage, q, columns=SI)) == f"{q}, row 2, instance 1: 'meta' is text, not an object (in 'meta.category')"

def test_recipe_loads_nested_data_and_the_manifest_counts_what_the_loader_did(tmp_path):
    rows = _si_rows() + [{'instruction': 'Add the numbers.', 'instances': [{'input': '2 3', 'output': '5'}, {'input': '4 4', 'output': '8'}]}]
    p = _jsonl(tmp_path, 'si.jsonl', rows)     # row 3: no category, so 'misc' (its first instance is no duplicate of row 1's: the id hashes the category)
    over = {'data.source': str(p), 'data.columns': SI, 'data.default_category': 'misc', 'data.test_frac': 0.5}
    run = init_run('demo', tmp_path/'run', over)
    assert sorted(r['category'] for r in run.train + run.test) == ['math', 'math', 'misc', 'misc', 'vision']
    cov = dict(rows=3, records=5, duplicates_dropped=0, default_category='misc', default_category_rows=2)
    assert json.loads(run.manifest.read_text())['coverage'] == cov
    assert json.loads((run.data/'coverage_stats.json').read_text()) == cov
    again = init_run('demo', tmp_path/'run', over)                           # re-opening the run changes nothing
    assert (again.train, again.test) == (run.train, run.test) and json.loads(again.manifest.read_text())['coverage'] == cov
    # a duplicate instance is dropped and counted
    rows[2]['meta'] = {'category': 'math'}
    p.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    run = init_run('demo', tmp_path/'run2', {**over, 'data.test_frac': 0.5})
    assert json.loads(run.manifest.read_text())['coverage'] == dict(rows=3, records=4, duplicates_dropped=1, default_category=None, default_category_rows=0)

@pytest.mark.parametrize('name,content,message', [
    ('str.json', b'"hello"', ': expected a list of rows, or an object holding one list of rows; got text'),
    ('num.json', b'42', ': expected a list of rows, or an object holding one list of rows; got a number'),
    ('two.json', b'{"a": [], "b": []}', ': expected a list of rows, or an object holding one list of rows; got an object holding 2 lists'),
    ('listrow.jsonl', b'[1, 2]\n', ', row 1: expected an object with fields, got a list'),
    ('numrow.json', b'[{"instruction": "a", "response": "b"}, 7]', ', element 2 (line 1): expected an object with fields, got a number'),
    ('extra.csv', b'instruction,response\na,b,c\n', ', row 2: 3 cells, but the header names 2 columns'),
    ('catlist.jsonl', b'{"instruction": "a", "response": "b", "category": ["x"]}\n', ", row 1: expected text in 'category', got a list"),
    ('bad.parquet', b'not parquet', ': not a readable Parquet file'),
])
def test_odd_input_is_a_data_error_naming_the_place(tmp_path, name, content, message):
    p = _bad(tmp_path, name, content)                                          # not a KeyError/TypeError traceback
    assert str(_err(load_coverage, p)).startswith(f'{p}{message}')

def test_a_mapping_naming_a_missing_column_is_a_data_error():
    e = _err(load_coverage, FIX/'dolly.jsonl', columns={'prompt': 'instruction', 'response': 'answer'})
    assert str(e) == f"{FIX/'dolly.jsonl'}, row 1: missing field 'answer' (for response)"
    e = _err(load_coverage, FIX/'dolly.jsonl', columns={'prompt': 'instruction', 'response': 'response', 'context': 'ctx'})
    assert str(e) == f"{FIX/'dolly.jsonl'}: data.columns maps context to 'ctx', which no row has (the first row has category, context, instruction, response)"

def test_data_errors_are_one_line_with_status_2_from_the_cli(tmp_path, capsys):
    from llamaduo.cli import main
    p = _bad(tmp_path, 'n.json', b'42')
    argv = ['run', 'demo', '--set', f'data.source={p}', '--out', str(tmp_path/'run')]
    with pytest.raises(SystemExit) as e: main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == f'llamaduo: {p}: expected a list of rows, or an object holding one list of rows; got a number\n'
    with pytest.raises(DataError): main(['--debug', *argv])                  # --debug: the exception itself, with its traceback

def test_rows_dropped_on_load_are_said_by_the_run_that_drops_them(tmp_path, capsys):
    rows = [dict(instruction=f'Question number {i}?', response=f'Answer {i}.') for i in range(12)]
    _jsonl(tmp_path, 'cov.jsonl', rows + [dict(rows[3], response='Another answer.')])   # the same conversation again
    run = init_run('demo', tmp_path/'run', {'data.source': str(tmp_path/'cov.jsonl'), 'data.format': 'auto'})
    assert len(run.train) + len(run.test) == 12
    assert f'coverage: 1 row(s) of {tmp_path/"cov.jsonl"} dropped on load: the same conversation' in capsys.readouterr().out

def _fine_tuning_file():
    "An OpenAI chat fine-tuning file: system prompts, weighted multi-turn chats, tools, parallel calls, content parts."
    weather = {'type': 'function', 'function': {'name': 'get_weather', 'description': 'Weather in a city',
               'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}, 'required': ['city']}}}
    fx = {'type': 'function', 'function': {'name': 'convert', 'parameters': {'type': 'object', 'properties': {
          'amount': {'type': 'number'}, 'to': {'type': 'string'}}, 'required': ['amount', 'to']}}}
    call = lambda i, name, args: {'id': i, 'type': 'function', 'function': {'name': name, 'arguments': json.dumps(args)}}
    sys_ = {'role': 'system', 'content': 'You are Marv, a factual chatbot that is also sarcastic.'}
    rows = [
        {'messages': [sys_, {'role': 'user', 'content': "What's the capital of France?"},
                      {'role': 'assistant', 'content': "Paris, as if everyone doesn't know that already.", 'weight': 0},
                      {'role': 'user', 'content': 'Can you be more sarcastic?'},
                      {'role': 'assistant', 'content': "Paris, as if everyone doesn't know that already. Happy now?",
                       'weight': 1}]},
        {'messages': [sys_, {'role': 'user', 'content': [{'type': 'text', 'text': "Who wrote 'Romeo and Juliet'?"},
                                                         {'type': 'text', 'text': 'Answer in one line.'}]},
                      {'role': 'assistant', 'content': [{'type': 'text', 'text': 'Oh, just some guy named Shakespeare.'}]}]},
        {'messages': [{'role': 'user', 'content': 'What is the weather in Paris and in Rome today?'},
                      {'role': 'assistant', 'tool_calls': [call('call_a', 'get_weather', {'city': 'Paris'}),
                                                           call('call_b', 'get_weather', {'city': 'Rome'})]},
                      {'role': 'tool', 'tool_call_id': 'call_a', 'content': '21 C, sunny'},
                      {'role': 'tool', 'tool_call_id': 'call_b', 'content': '25 C, clear'},
                      {'role': 'assistant', 'content': 'Paris is sunny at 21 C; Rome is clear at 25 C.'}],
         'tools': [weather], 'parallel_tool_calls': True},
        {'messages': [{'role': 'system', 'content': 'You convert currencies for travellers.'},
                      {'role': 'user', 'content': 'How much is 120 dollars in euros?'},
                      {'role': 'assistant', 'content': None, 'tool_calls': [call('c1', 'convert', {'amount': 120, 'to': 'EUR'})]}],
         'tools': [fx, weather], 'parallel_tool_calls': False},
        {'messages': [{'role': 'user', 'content': 'Give me three tips for sleeping better on long flights.'},
                      {'role': 'assistant', 'content': 'Pick a window seat, bring an eye mask, and skip the coffee.'}]},
    ]
    return rows

def test_an_openai_fine_tuning_file_goes_through_curate_whole(tmp_path):
    from llamaduo.curate import curate
    rows = _fine_tuning_file()
    _jsonl(tmp_path, 'ft.jsonl', rows)
    rep = curate(str(tmp_path/'ft.jsonl'), out=str(tmp_path/'cur'), quiet=True)
    kept = [json.loads(l) for l in (tmp_path/'cur'/'kept.jsonl').read_text().splitlines()]
    assert rep['kept'] == len(rows) == len(kept), rep['stages']
    join = lambda c: '\n'.join(p['text'] for p in c) if isinstance(c, list) else c
    for row, rec in zip(rows, kept):
        assert rec['messages'] == [{**m, 'content': join(m['content'])} if 'content' in m else m for m in row['messages']]
        for k in ('tools', 'parallel_tool_calls'): assert rec.get(k) == row.get(k)
    assert [m.get('weight') for m in kept[0]['messages']] == [None, None, 0, None, 1]

def test_a_broken_tool_record_is_one_line_naming_file_row_and_reason(tmp_path):
    rows = _fine_tuning_file()
    rows[2]['messages'][2]['tool_call_id'] = 'call_zzz'
    p = _jsonl(tmp_path, 'ft.jsonl', rows)
    assert str(_err(load_coverage, p)) == f"{p}, row 3: message 2 (tool) answers 'call_zzz', which is not a pending tool call"
