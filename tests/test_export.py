"`llamaduo export`: the judged model as GGUF + Ollama Modelfile, checked for parity with the trained model."
import json, shutil, subprocess, time
import pytest
from llamaduo.config import UserError
from llamaduo.files import write_json
from llamaduo.export import (SAMPLE_CHATS, ParityError, export, ollama_template, open_gguf, template_prompt,
                             tokenizer_parity, turn_format)

TEXT_CATEGORIES = ['classification', 'closed_qa', 'summarization', 'coding']   # the export's parity: text turns

def _metrics(v):
    m = {'V': v, 'C@50': v, 'C@70': v, 'n': 4}
    return {'overall': {'similarity': m, 'precision': m}, 'per_category': {}}

def _run(tmp_path, demo_size, model=None):
    "A demo run whose cycle 0 is judged and holds `model` (a folder to copy; None: nothing yet)."
    from llamaduo.loop import init_run
    run = init_run('demo', out=tmp_path/'run', overrides={'data.demo_size': demo_size,
                                                          'data.categories': TEXT_CATEGORIES})
    c = run.cycle(0)
    c.path.mkdir()
    write_json(c.metrics, _metrics(60.0))
    write_json(c.decision, {'pass': False, 'verdict': 'synthesize'})
    if model: shutil.copytree(model, c.model)
    return run

@pytest.fixture(scope='module')
def smol(tmp_path_factory):
    "A demo run whose cycle 0 holds SmolLM2-135M-Instruct, standing in for a `full` fine-tune; >= 8 test prompts."
    pytest.importorskip('llama_cpp')
    pytest.importorskip('gguf')
    from llamaduo.models import build_named_base
    run = _run(tmp_path_factory.mktemp('smol'), 30, build_named_base('smollm2-135m', progress=False))
    assert len(run.test) >= 8
    return run

def test_smollm2_exports_at_f16_and_q8_0_and_is_still_the_model(smol):
    "The acceptance: ids identical, agreement >= 98% (f16) / 95% (q8_0), >= 7 of 8 chats stop, a full Modelfile."
    times = {}
    for quant in ('f16', 'q8_0'):
        t0 = time.time()
        r = export(smol.path, quant=quant, max_prompts=8, judge=quant == 'q8_0', progress=False, log=lambda *a: None)
        times[quant] = time.time() - t0
        p = r['parity']
        assert r['gguf'].endswith(f'deploy/gguf/model-{quant}.gguf') and p['drift'] == []
        assert p['tokenizer']['identical'] == p['tokenizer']['texts'] == 16, p['tokenizer']   # 8 prompts, 8 references
        assert p['template']['identical'] == 8, p['template']
        assert p['agreement']['rate'] >= {'f16': 0.98, 'q8_0': 0.95}[quant] and p['agreement']['tokens'] > 100, p
        assert p['chat']['clean'] >= 7 and p['chat']['prompts'] == 8, p['chat']['answers']
        assert all(a['text'] and '<|im_' not in a['text'] for a in p['chat']['answers'])
    judged = p['judged']                                          # the demo service judged both sides' answers
    assert {judged['gguf']['precision']['n'], judged['transformers']['precision']['n']} == {8}, judged
    saved = json.loads((smol.deploy.path/'gguf'/'parity.json').read_text())
    assert set(saved) == {'f16', 'q8_0'} and saved['f16']['agreement']['rate'] >= 0.98
    mf = (smol.deploy.path/'gguf'/'Modelfile').read_text()
    assert 'FROM ./model-q8_0.gguf\n' in mf and 'TEMPLATE """' in mf and 'PARAMETER stop "<|im_end|>"' in mf
    assert 'SYSTEM' not in mf                                       # the demo's records have no system prompt
    assert 'use tools' not in mf                                    # text categories only: nothing to say about tools
    assert r['commands'][0].endswith('ollama create demo-local -f Modelfile && ollama run demo-local')
    print('export times (s):', {k: round(v, 1) for k, v in times.items()})

def test_the_gguf_tokenizer_holds_on_text_the_trained_one_splits_its_own_way(smol):
    """Digits, spaces, unicode and special tokens: the SmolLM2 folder here (built from its GGUF by transformers) has
    the GPT-2 split, no digit pre-split, and its GGUF must have the same."""
    from llamaduo.models import load_tokenizer
    tok = load_tokenizer(smol.cycle(0).model)
    llm = open_gguf(smol.deploy.path/'gguf'/'model-q8_0.gguf', vocab_only=True)
    texts = ['12345 + 678 = 13023', '  two  spaces\n\n\ttab', "don't <|im_start|>user\nhi<|im_end|>",
             'naïve café ☕ 中文']
    assert tokenizer_parity(tok, llm, texts)['identical'] == 4
    assert llm.metadata['tokenizer.ggml.pre'] == 'gpt-2'             # what this folder's tokenizer.json does
    llm.close()

GO_RENDER = r'''
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Render a TEMPLATE over .Messages for each chat with the values Ollama's template package gives it.
func main() {
	var in struct {
		Template string      `json:"template"`
		Chats    [][]Message `json:"chats"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("").Option("missingkey=zero").Parse(in.Template))
	out := []string{}
	for _, msgs := range in.Chats {
		var system []string
		for _, m := range msgs {
			if m.Role == "system" {
				system = append(system, m.Content)
			}
		}
		var b strings.Builder
		data := map[string]any{"System": strings.Join(system, "\n\n"), "Messages": msgs, "Response": "", "Tools": nil}
		if err := tmpl.Execute(&b, data); err != nil {
			panic(err)
		}
		out = append(out, b.String())
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
'''

@pytest.fixture(scope='module')
def go_render(tmp_path_factory):
    "A function rendering an Ollama TEMPLATE for chats with Go's own text/template."
    go = shutil.which('go')
    if go is None: pytest.skip('no `go` binary to render the Ollama TEMPLATE with (apt-get install golang-go)')
    d = tmp_path_factory.mktemp('go')
    (d/'main.go').write_text(GO_RENDER)
    env = {'GOCACHE': str(d/'cache'), 'GOPATH': str(d/'gopath'), 'HOME': str(d), 'PATH': '/usr/bin:/bin'}
    subprocess.run([go, 'build', '-o', str(d/'render'), 'main.go'], cwd=d, check=True, env=env, capture_output=True)
    def render(template, chats):
        out = subprocess.run([str(d/'render')], input=json.dumps(dict(template=template, chats=chats)),
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)
    return render

def _chats(records):
    return SAMPLE_CHATS + [r['messages'][:-1] for r in records] + [r['messages'] for r in records[:2]]

def test_the_ollama_template_renders_the_chat_template_in_go(go_render, tmp_path):
    "SmolLM2's ChatML template (default system prompt included) and the demo's: Go renders the same prompts."
    from llamaduo.demo import build_demo_base, demo_coverage
    from llamaduo.models import build_named_base, load_tokenizer
    recs = demo_coverage(8)
    for model in (build_named_base('smollm2-135m', progress=False), build_demo_base(tmp_path/'demo')):
        tok = load_tokenizer(model)
        chats = [c for c in _chats(recs) if all(isinstance(m.get('content'), str) and not m.get('tool_calls')
                                                for m in c)]
        want = [template_prompt(tok, c) for c in chats]
        assert len(chats) >= 12 and None not in want
        assert go_render(ollama_template(turn_format(tok)), chats) == want

def test_demo_model_exports_merges_an_adapter_and_a_drift_fails_naming_it(tmp_path):
    """The demo's tiny model (its own tokenizer) as a LoRA adapter: merged first, q4_k_m through llama.cpp's quantizer;
    untrained, it never ends a turn, and the export fails on that after writing the figures."""
    pytest.importorskip('llama_cpp')
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    run = _run(tmp_path, 20)
    base = run.base_model
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules=['q_proj']))
    lora.save_pretrained(run.cycle(0).model)
    AutoTokenizer.from_pretrained(base).save_pretrained(run.cycle(0).model)
    r = export(run.path, quant='q4_k_m', parity=False, progress=False, log=lambda *a: None)
    assert r['source'] == str(run.deploy.model) and (run.deploy.model/'llamaduo_deploy.json').exists()
    assert r['gguf'].endswith('model-q4_k_m.gguf') and not list((run.deploy.path/'gguf').glob('.*f16*'))
    mf = (run.deploy.path/'gguf'/'Modelfile').read_text()
    assert 'FROM ./model-q4_k_m.gguf' in mf and 'PARAMETER stop "<|end|>"' in mf and '{{ "<|bos|>" }}' in mf
    with pytest.raises(ParityError, match=r'stop token: \d of \d chats end at the end of turn'):
        export(run.path, quant='f16', max_new_tokens=8, progress=False, log=lambda *a: None)
    p = json.loads((run.deploy.path/'gguf'/'parity.json').read_text())['f16']
    assert p['tokenizer']['identical'] == p['tokenizer']['texts'] and p['template']['identical'] == p['prompts']
    assert p['drift'] and p['agreement']['tokens'] > 0
    for bad, msg in [(dict(quant='q3'), 'unknown quantization'), (dict(format='onnx'), 'unknown export format')]:
        with pytest.raises(UserError, match=msg): export(run.path, **bad, log=lambda *a: None)

def test_a_broken_gguf_fails_to_open_with_llama_cpps_reason(tmp_path):
    pytest.importorskip('llama_cpp')
    (tmp_path/'x.gguf').write_bytes(b'GGUF' + b'\0'*64)
    with pytest.raises(RuntimeError, match='could not load'): open_gguf(tmp_path/'x.gguf', vocab_only=True)
