"`llamaduo label` in a real browser: headless Chromium (Debian's) driven by playwright against the CLI's page."
import os, sys, json, random, re, signal, subprocess, shutil
from pathlib import Path
import pytest
from llamaduo.config import load_recipe
from llamaduo.files import read_jsonl, write_json, write_jsonl
from llamaduo.demo import make_task, task_record, CATEGORIES
from llamaduo.service import ServiceClient
from llamaduo.judge import judge_responses, judge_metrics
from llamaduo.labels import label_items, label_sample
from llamaduo.run import Run

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
SCRIPT = '<script>window.__pwned = 1</script><b>bold?</b>'

def judged_run(path)->Run:
    "A run folder by hand: 20 demo test prompts answered (half right, one with markup), judged by the demo service."
    run = Run(path)
    run.path.mkdir(parents=True)
    run.write_config(load_recipe('demo'))
    tests = [task_record(make_task(c, random.Random(i))) for i in range(5) for c in CATEGORIES]
    write_jsonl(run.test_split, tests)
    c = run.cycle(0)
    c.path.mkdir()
    answer = lambda i, r: SCRIPT if i == 0 else r['messages'][1]['content'] if i % 2 else 'I do not know.'
    write_jsonl(c.responses, [dict(prompt_id=r['prompt_id'], k=0, response=answer(i, r)) for i, r in enumerate(tests)])
    js = judge_responses(ServiceClient.from_config(run.cfg.service, progress=False), tests, read_jsonl(c.responses), m=2,
                         judge='demo/demo')
    write_jsonl(c.judgments, js)
    write_json(c.metrics, judge_metrics(js, run.cfg.judge))
    return run

def start_label(run, *args):
    p = subprocess.Popen([sys.executable, '-m', 'llamaduo.cli', 'label', str(run.path), '--port', '0', '--n', '8',
                          '--labeler', 'ann', *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    m = re.search(r'open (http://127\.0\.0\.1:\d+/)', line)
    assert m, line + p.stdout.read()
    return p, m[1]

def stop(p):
    p.send_signal(signal.SIGINT)
    out = p.communicate(timeout=30)[0]
    assert 'Traceback' not in out, out
    return out

@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM): pytest.fail(f'{CHROMIUM} missing: `make setup` installs Debian chromium')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox', '--disable-gpu', '--disable-quic',
                               '--no-first-run', '--disable-background-networking', '--disable-component-update',
                               '--disable-sync'])
        yield b
        b.close()

def test_label_five_close_reopen_and_the_sixth_is_next(tmp_path, browser):
    run = judged_run(tmp_path/'run')
    sample = label_sample(label_items(run, [run.cycle(0)]), 8, 0)
    p, url = start_label(run)
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector('text=0 of 8 labeled')
        body = page.inner_text('body')
        for hidden in ('demo/demo', 'cycle', 'score'):   # blind: no judge, no cycle, no judge score on the page
            assert hidden not in body.replace('Grade the response', ''), hidden
        assert '0: wrong, off-task' in body and '100: says the same as the reference' in body   # the rubric's anchors
        for i in range(5):
            assert page.inner_text('#instruction') == sample[i]['instruction']
            if sample[i]['response'] == SCRIPT:   # model text is shown as text, never run as HTML
                assert page.inner_text('#response') == SCRIPT and page.evaluate('window.__pwned') is None
            page.keyboard.type(str(10 * i))       # the focus starts in similarity; Enter moves on, then saves
            page.keyboard.press('Enter')
            page.keyboard.type(str(100 - 10 * i))
            page.keyboard.press('Enter')
            page.wait_for_selector(f'text={i + 1} of 8 labeled')
        labels = read_jsonl(run.labels)           # saved at once, before the page is closed
        assert [(r['prompt_id'], r['similarity'], r['precision']) for r in labels] == \
               [(sample[i]['prompt_id'], 10 * i, 100 - 10 * i) for i in range(5)]
        assert all(r['labeler'] == 'ann' and r['cycle'] == 0 and r['judges']['demo/demo'] for r in labels)
        page.close()
        page = browser.new_page()                 # reopened: 5 kept, the 6th is next
        page.goto(url)
        page.wait_for_selector('text=5 of 8 labeled')
        assert page.inner_text('#instruction') == sample[5]['instruction']
        page.fill('#similarity', '101')           # out of range: not saved, said on the page
        page.fill('#precision', '50')
        page.click('#save')
        page.wait_for_timeout(300)
        assert len(read_jsonl(run.labels)) == 5
    finally: out = stop(p)
    assert '5 labels by' in out, out
    p, url = start_label(run)                      # a new server, the same sample: it continues too
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector('text=5 of 8 labeled')
        assert page.inner_text('#instruction') == sample[5]['instruction']
    finally: stop(p)

def test_writes_need_the_page_and_the_server_listens_on_loopback(tmp_path):
    import httpx2 as httpx
    run = judged_run(tmp_path/'run')
    p, url = start_label(run)
    try:
        assert httpx.post(url + 'api/label', json={'id': 0, 'similarity': 1, 'precision': 1}).status_code == 403
        assert httpx.get(url + 'api/state').json()['total'] == 8
    finally: stop(p)
    assert not run.labels.exists()
