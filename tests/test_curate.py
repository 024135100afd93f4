"Cleaning on real-looking text (issue 15): short items, the n-gram index, stage order, genuine pairs, and `llamaduo curate`."
import json
import pytest
from llamaduo.config import SynthCfg
from llamaduo.files import read_jsonl, write_jsonl
from llamaduo.curate import clean, near_duplicates, ngram_overlaps, quality_issue
from llamaduo.data import load_coverage
from llamaduo.cli import main

def rec(pid, ins, res, cat='open_qa'):
    return dict(prompt_id=pid, category=cat, messages=[{'role': 'user', 'content': ins}, {'role': 'assistant', 'content': res}])

SHORT = [('Return the number of open files for the current user.', 'Return the count of open files for this user.'),
         ('Convert a markdown string to HTML with the default extensions.', 'Convert the markdown string to HTML using default extensions.'),
         ('Raise an error when the connection pool is closed.', 'Raise an error if the connection pool was closed.'),
         ('Read the whole file and split it into lines.', 'Read the file and then split it into lines.')]

def test_short_items_with_two_words_changed_are_found():
    "Word 3-grams alone miss these (Jaccard ~0.3); the single-word index of short texts finds every one."
    orig, copies = [a for a, _ in SHORT], [b for _, b in SHORT]
    assert near_duplicates(copies, orig, short=0) .count(None) >= 3
    assert [h[0] if h else None for h in near_duplicates(copies, orig)] == [0, 1, 2, 3]
    distinct = ['Return the path of the temporary directory.', 'Close every connection of the pool.']
    assert near_duplicates(distinct, orig) == [None, None]

LONG_TEST = ('Explain why the sky looks blue during the day but turns red and orange near sunset, in terms of how air '
             'scatters short and long wavelengths of sunlight.', 'Air molecules scatter blue light more than red light.')

def test_ngram_index_catches_what_rouge_misses_and_names_the_test_item():
    test = [rec('q7', *LONG_TEST)]
    # a long candidate that embeds 13+ words of the test instruction but is otherwise new: ROUGE-L is far below 0.5
    cand = rec('c1', 'Here is a physics essay prompt for a class of twelve-year-olds who just finished a unit on optics and '
               'colour: why the sky looks blue during the day but turns red and orange near sunset. Write a lesson plan for it '
               'with three activities, a short quiz of five questions and a list of materials the teacher needs to buy.',
               'Activity one: shine a torch through a glass of milky water and look at the colour from the side and from the end.')
    kept, rep = clean([cand], [], test, SynthCfg())
    assert kept == [] and rep['removed'] == [dict(prompt_id='c1', stage='decontaminate', rule='ngram13', matched='q7', against='test', score=13)]
    assert ngram_overlaps(['why the sky looks blue'], ['\n'.join(LONG_TEST)]) == [None]     # under 13 words of it: not this rule

def test_contamination_is_counted_before_the_filters():
    "A contaminated pair that a filter would also reject is blamed on decontamination, so each stage's count is true."
    test = [rec('q1', 'Write a function that reverses the words of a sentence and keeps the punctuation in place.', 'Split, reverse, join.', 'coding')]
    raw = [rec('s1', 'Write a function that reverses the words of a sentence and keeps the punctuation in place.', 'You split it and reverse it.', 'coding')]
    kept, rep = clean(raw, [], test, SynthCfg())
    assert [(s['stage'], s['removed']) for s in rep['stages']] == [('decontaminate', 1), ('filter', 0), ('dedup', 0)]
    kept, rep = clean(raw, [], [], SynthCfg())
    assert rep['filters']['coding_without_code'] == 1

GENUINE = [('Reply politely to this message: "I cannot make it on Friday, sorry."', 'No problem at all, we will find another day.', 'creative_writing'),
           ('Write a short poem about insomnia.', 'The clock ticks on; I cannot sleep, the moon keeps watch.', 'creative_writing'),
           ('Write the set of positive reals in LaTeX.', r'$\{x \in \mathbb{R} : x > 0\}$', 'open_qa'),
           ('Show a C struct with two ints.', 'struct point { int x; int y; };', 'coding'),
           ('What does `sorted(xs, key=len)` return?', 'A new list of the items of xs, shortest first.', 'coding'),
           ('When was the bridge opened?\n\nThe bridge was opened in 1932 after six years of work.', 'The bridge was opened in 1932.', 'closed_qa'),
           ('Return this as JSON: name Ada, age 36.', '{"name": "Ada", "age": 36}', 'open_qa')]

@pytest.mark.parametrize('ins,res,cat', GENUINE)
def test_filters_let_genuine_pairs_through(ins, res, cat):
    assert quality_issue(ins, res, cat, SynthCfg()) is None

def test_curate_cli_writes_kept_removed_and_report(tmp_path, capsys):
    rows = [dict(instruction='Describe how to bake bread at home, from flour to the oven, in two sentences.', response='Mix, knead and wait; then bake.'),
            dict(instruction='List three rivers of South America and the countries they flow through.', response='The Amazon, the Orinoco and the Paraná.'),
            dict(instruction='Explain what a compiler does to source code before a program runs.', response='It translates it into machine code.')]
    rows += [dict(instruction=rows[0]['instruction'].upper(), response=rows[0]['response']),           # near dup of row 1
             dict(instruction='Name a primary colour.', response="I'm sorry, but I can't help with that."),  # refusal
             dict(instruction=LONG_TEST[0], response='Because of scattering.')]                              # same instruction as a test item
    write_jsonl(tmp_path/'mine.jsonl', rows)
    write_jsonl(tmp_path/'test.jsonl', [dict(instruction=LONG_TEST[0], response=LONG_TEST[1])])
    write_jsonl(tmp_path/'ref.jsonl', [dict(instruction=rows[2]['instruction'], response=rows[2]['response'])])
    main(['curate', str(tmp_path/'mine.jsonl'), '--test', str(tmp_path/'test.jsonl'), '--reference', str(tmp_path/'ref.jsonl'),
          '--out', str(tmp_path/'out')])
    assert 'curate: 6 records -> 2 kept' in capsys.readouterr().out
    rep = json.loads((tmp_path/'out'/'report.json').read_text())
    assert [(s['stage'], s['n_in'], s['removed']) for s in rep['stages']] == [('decontaminate', 6, 1), ('filter', 5, 1), ('dedup', 4, 2)]
    removed = read_jsonl(tmp_path/'out'/'removed.jsonl')
    assert sorted((x['stage'], x['rule'], x['against']) for x in removed) == [
        ('decontaminate', 'ngram13', 'test'), ('dedup', 'rouge_l', 'batch'), ('dedup', 'rouge_l', 'reference'), ('filter', 'refusal_or_meta', None)]
    assert all(x['record']['messages'] and ('score' in x) for x in removed)
    kept = load_coverage(tmp_path/'out'/'kept.jsonl')[None]      # loads as a coverage dataset
    assert [r['messages'][1]['content'] for r in kept] == [rows[0]['response'], rows[1]['response']]

def test_curate_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path/'bad.jsonl').write_text('{"instruction": "a", "response": 3}\n')
    with pytest.raises(SystemExit) as e: main(['curate', str(tmp_path/'bad.jsonl'), '--out', str(tmp_path/'o')])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count('\n') == 1 and 'bad.jsonl, row 1' in err and not (tmp_path/'o').exists()
