"Recipes: defaults, overrides, unknown keys, secrets kept out of the run folder."
import json, yaml, pytest
from llamaduo.config import load_recipe, RecipeError, packaged_recipes
from llamaduo.run import Run

def test_packaged_recipes_load_with_paper_defaults():
    assert {'demo', 'no_robots'} <= set(packaged_recipes())
    nr = load_recipe('no_robots')
    assert (nr.model.method, nr.infer.k, nr.judge.m, nr.judge.zetas, nr.service.provider) == ('qlora', 4, 10, [50, 70], 'openai')
    assert nr.train.lr_scheduler == 'cosine' and nr.train.warmup_ratio == 0.1 and nr.train.lora_dropout == 0.05

@pytest.mark.parametrize('override,msg', [
    ({'train.learnig_rate': 1e-3}, "unknown key 'train.learnig_rate' — did you mean 'train.learning_rate'?"),
    ({'train': {'lora-r': 8}}, "unknown key 'train.lora-r' — did you mean 'train.lora_r'?"),
    ({'judge.zeta': [50]}, "did you mean 'judge.zetas'?"),
    ({'servce': {'model': 'x'}}, "unknown key 'servce' — did you mean 'service'?"),
    ({'infer.k': 'four'}, "'infer.k'"),
    ({'model.method': 'qlorra'}, "'model.method'"),
])
def test_bad_keys_and_values_are_errors_naming_the_key(override, msg):
    with pytest.raises(RecipeError) as e: load_recipe('demo', override)
    assert msg in str(e.value) and 'demo.yaml' in str(e.value)

def test_unknown_key_in_a_yaml_file_names_the_file(tmp_path):
    p = tmp_path/'r.yaml'; p.write_text('train:\n  epochs: 2\n  warmup-ratio: 0.2\n')
    with pytest.raises(RecipeError, match=r"r\.yaml: unknown key 'train.warmup-ratio' — did you mean 'train.warmup_ratio'\?"): load_recipe(p)

def test_cli_style_overrides_are_typed():
    cfg = load_recipe('demo', ['train.learning_rate=1e-3', 'judge.zetas=[50, 80]', 'infer.k=3', 'service.budget_usd=2.5'])
    assert (cfg.train.learning_rate, cfg.judge.zetas, cfg.infer.k, cfg.service.budget_usd) == (1e-3, [50, 80], 3, 2.5)

def test_no_secret_reaches_config_or_manifest(tmp_path, monkeypatch):
    key = 'sk-live-ABCDEF0123456789'
    monkeypatch.setenv('OPENAI_API_KEY', key)
    cfg = load_recipe('no_robots', {'service.base_url': f'http://localhost:1/v1?key={key}'})  # even if pasted into a field
    (tmp_path/'data').mkdir(); (tmp_path/'data'/'coverage_train.jsonl').write_text('{}\n')
    run = Run(tmp_path); run.write_config(cfg); run.write_manifest(note=f'token {key}')
    for f in tmp_path.rglob('*'):
        if f.is_file(): assert key not in f.read_text(), f
    assert yaml.safe_load((tmp_path/'config.yaml').read_text())['service']['api_key_env'] == 'OPENAI_API_KEY'
    m = json.loads((tmp_path/'manifest.json').read_text())
    assert m['seed'] == 42 and m['versions']['torch'] and 'data/coverage_train.jsonl' in m['data_sha256']
