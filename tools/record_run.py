"""Record finished runs for the README: their figures are copied from the run folders by code, never typed in.

    python tools/record_run.py smollm2 outputs/smollm2 outputs/smollm2-qlora
    python tools/record_run.py --bench train bench_train.log
    python tools/record_run.py --bench demo outputs/bench_demo_t2 outputs/bench_demo_t1
    python tools/record_run.py --bench dedup bench_dedup.log          (also: capture, serve; any bench's last JSON line)
    python tools/record_run.py --estimate no_robots estimate.log      (`llamaduo estimate`'s JSON line)
    python tools/record_run.py --jury outputs/jury outputs/jury_refused  (a demo with a jury, and one refused)

writes nbs/images/<name>_metrics.csv and <name>_score_vs_volume.png (from the first run) and <name>_runs.csv (one row
per run: method, cycles, the cycle that passed, final precision V, loop wall time, training tokens/s, peak memory).
`--bench demo` writes nbs/images/bench_demo.csv (one row per `llamaduo bench demo` folder: its JSON line's figures) and
demo_band.png (median and lowest-highest band of every run of those folders).
The README renders the CSVs with `<!-- metrics-table: ... -->` and `<!-- csv-table: ... -->` (tools/readme.py).
"""
import sys, json, shutil, statistics
from pathlib import Path
import pandas as pd

def run_row(d:Path)->dict:
    s = json.loads((d/'summary.json').read_text())
    df = pd.read_csv(d/'metrics.csv'); cyc = df[df.cycle.astype(str) != 'base']
    tms = [json.loads(p.read_text()) for p in sorted(d.glob('cycle_*/train_metrics.json'))]
    passed = cyc[cyc.passed.astype(str) == 'True'].cycle
    base = df[df.cycle.astype(str) == 'base']
    return {'run': d.name, 'method': tms[0]['method'], 'cycles': len(cyc),
            'passed at cycle': str(passed.iloc[0]) if len(passed) else 'no',
            'base precision V': round(float(base.precision_V.iloc[0]), 1) if len(base) else None,
            'final precision V': round(float(cyc.precision_V.iloc[-1]), 1),
            'loop wall s': round(s['seconds']), 'train s': round(sum(t['wall_time_s'] for t in tms)),
            'train tokens/s': round(statistics.median(t['tokens_per_s'] for t in tms)),
            # cycle 0's process also ran the base model's inference first (judge.base_model): training peaks are cycles 1+
            'peak training memory MB': round(max(t.get('peak_rss_mb') or 0 for t in (tms[1:] or tms)))}

def bench_rows(fig:dict)->list[dict]:
    "`llamaduo bench train`'s JSON line as rows: what was trained, tokens/s (whole run, after warm-up), ratios to the plain TRL baseline."
    runs = [k[:-len('_tokens_per_s')] for k in fig if k.endswith('_tokens_per_s') and not k.endswith('_steady_tokens_per_s')]
    names = ['baseline'] + [n for n in runs if n != 'baseline']
    w = fig.get('warmup_steps')
    return [{'training': 'plain TRL SFTTrainer + LoRA (defaults)' if n == 'baseline' else n.replace('_', ' '),
             'tokens/s': fig[f'{n}_tokens_per_s'], 'vs baseline': 1.0 if n == 'baseline' else fig.get(f'{n}_vs_baseline'),
             f'tokens/s after {w} warm-up steps': fig.get(f'{n}_steady_tokens_per_s'),
             'vs baseline, after warm-up': 1.0 if n == 'baseline' else fig.get(f'{n}_steady_vs_baseline')} for n in names]

def dedup_rows(f:dict)->list[dict]:
    "`llamaduo bench dedup`'s JSON line as rows: recall by length bucket and edit kind, decontamination, false positives, filters, scale."
    k = lambda b: ', '.join(f"{x.split('/')[1]} {v}" for x, v in f['recall_by_kind'].items() if x.startswith(b + '/'))
    return [{'figure': 'recall, items < 20 words', 'value': f['recall_lt20'], 'detail': k('lt20')},
            {'figure': 'recall, 20-39 words', 'value': f['recall_20to39'], 'detail': k('20to39')},
            {'figure': 'recall, 40+ words', 'value': f['recall_ge40'], 'detail': k('ge40')},
            {'figure': 'decontamination: paraphrased test pairs removed', 'value': f['recall_paraphrase'],
             'detail': ', '.join(f'{x} {v}' for x, v in f['decontam_recall_by_kind'].items()) + f"; template siblings removed {f['siblings_removed']}"},
            {'figure': 'false positives (distinct items removed)', 'value': f['false_positive_rate'], 'detail': f['fp_dedup']},
            {'figure': 'quality filters: genuine pairs rejected', 'value': f['filter_reject_rate'], 'detail': f"of {f['genuine_pairs']}"},
            {'figure': f"{f['n']:,} samples cleaned, wall s ({f['cpus']} cores)", 'value': f['wall_s'],
             'detail': ', '.join(f'{s} {v:,}' for s, v in f['removed_at_scale'].items()) + f" removed; {f['kept_at_scale']:,} kept"}]

def capture_rows(f:dict)->list[dict]:
    "`llamaduo bench capture`'s JSON line: latency direct and through the proxy at each level of concurrent clients."
    return [{'concurrent clients': int(l), 'requests': f['requests'][l], 'p50 direct ms': f['p50_ms'][l]['direct'], 'p50 capture ms': f['p50_ms'][l]['capture'],
             'p50 added ms': f['p50_overhead_ms'][l], 'p99 added ms': f['p99_overhead_ms'][l], 'proxy CPU ms/request': f['proxy_cpu_ms_per_request'][l],
             'lockstep p50 added ms': f['lockstep_p50_overhead_ms'].get(l, ''), 'lost': f['lost'] if l == max(f['requests'], key=int) else '',
             'duplicated': f['duplicated'] if l == max(f['requests'], key=int) else '', 'max added ms': ''}
            for l in f['requests']] + ([] if 'beside_5mb' not in f else [beside_row(f['beside_5mb'])])

def beside_row(b:dict)->dict:
    "The capture bench's row of small requests sent one at a time while 5 MB requests go through the same path."
    return {'concurrent clients': '1, beside 5 MB requests', 'requests': b['small'], 'p50 direct ms': b['direct_p50_ms'],
            'p50 capture ms': b['capture_p50_ms'], 'p50 added ms': b['added_p50_ms'], 'p99 added ms': '',
            'proxy CPU ms/request': '', 'lockstep p50 added ms': '', 'lost': '', 'duplicated': '',
            'max added ms': b['added_max_ms']}

def estimate_rows(f:dict)->list[dict]:
    "`llamaduo estimate`'s JSON line: per phase, calls, tokens and dollars online and in batch, and the total."
    usd = lambda v: None if v is None else round(v, 2)
    rows = [{'phase': p, 'calls': v['calls'], 'tokens in': v['tokens_in'], 'tokens out': v['tokens_out'], 'online $': usd(v['online_usd']), 'batch $': usd(v['batch_usd'])}
            for p, v in f['phases'].items()]
    return rows + [{'phase': f"all ({f['max_cycles']} cycles, worst case)", 'calls': f['calls'], 'tokens in': f['tokens_in'], 'tokens out': f['tokens_out'],
                    'online $': usd(f['online_usd']), 'batch $': usd(f['batch_usd'])}]

def serve_rows(fig:dict)->list[dict]:
    """`llamaduo bench serve`'s JSON line as rows: one per server, tokens/s of whole answers and latency, streamed time to
    first token and tokens/s, the ratios to transformers serve, and llama.cpp's decoding alone in-process."""
    alone = fig.get('decode_in_process', {})
    def solo(k):
        d = alone.get(k.removeprefix('llama.cpp '))
        return '' if d is None else f"{d['plain']} / {d['extra_buffers'] or 'crashed'}"
    return [{'server': k, 'requests': v['requests'], 'output tokens': v['tokens'], 'tokens/s': v['tokens_per_s'],
             'vs transformers serve': fig['speedup'][k], 'p50 latency s': v['p50_s'], 'p99 latency s': v['p99_s'],
             'streamed: first token p50 s': v['ttft_p50_s'], 'streamed: tokens/s after it': v['stream_tokens_per_s'],
             'streamed vs transformers serve': fig['stream_speedup'][k],
             'decoding alone in-process, tokens/s (plain / AMX buffers)': solo(k)}
            for k, v in fig['engines'].items()]

ROWS = dict(dedup=dedup_rows, capture=capture_rows, estimate=estimate_rows, serve=serve_rows)

def jury_tables(run_dir:Path, refused:Path, img:Path):
    "The jury's figures of a demo run folder (per cycle, and each judge against the labels) and a refused run's stop line."
    from llamaduo.run import Run
    from llamaduo.jury import trust_figures
    from llamaduo.files import read_jsonl
    run = Run(run_dir)
    rows = []
    for c in run.cycles(judged=True):
        m, d = json.loads(c.metrics.read_text()), json.loads(c.decision.read_text())
        ag = m['agreement']['precision']
        rows.append({'cycle': c.index, 'training examples': len(read_jsonl(c.train)),
                     'jury precision V': round(m['overall']['precision']['V'], 1),
                     **{f'{n} V': round(j['precision']['V'], 1) for n, j in m['judges'].items()},
                     'alpha between judges [95% CI]': f"{ag['alpha']:.2f} [{ag['ci'][0]:.2f}, {ag['ci'][1]:.2f}]",
                     'trusted': d['trusted'], 'verdict': d['verdict']})
    pd.DataFrame(rows).to_csv(img/'jury_cycles.csv', index=False)
    fig = trust_figures(run)
    f = lambda v: '' if v is None else round(v, 2)
    pd.DataFrame([{'judge': n, 'labels': j['precision']['n'], 'precision alpha vs labels': f(j['precision']['alpha']),
                   '95% CI': '[{:.2f}, {:.2f}]'.format(*j['precision']['ci']), 'Spearman': f(j['precision']['spearman']),
                   'bias (judge - label)': f(j['precision']['bias']), 'similarity alpha vs labels': f(j['similarity']['alpha'])}
                  for n, j in fig['judges'].items()]).to_csv(img/'jury_trust.csv', index=False)
    stop = json.loads((refused/'summary.json').read_text())['stop'].replace(str(refused), 'RUN_DIR')
    pd.DataFrame([{'stop': stop}]).to_csv(img/'jury_refused.csv', index=False)
    shutil.copy(run_dir/'plots'/'jury.png', img/'jury.png')
    shutil.copy(run_dir/'plots'/'calibration.png', img/'jury_calibration.png')

if __name__ == '__main__':
    img = Path(__file__).resolve().parents[1]/'nbs'/'images'
    if sys.argv[1:3] == ['--bench', 'demo']:   # python tools/record_run.py --bench demo DIR...  (`llamaduo bench demo --out DIR`)
        from llamaduo.bench import plot_demo_band
        from llamaduo.config import load_recipe
        dirs = [Path(a) for a in sys.argv[3:]]
        figs = [json.loads((d/'bench_demo.json').read_text()) for d in dirs]
        runs = {d: pd.read_csv(d/'bench_demo.csv') for d in dirs}   # one row per seed and cycle
        def same_seed_change(d0, d):   # the same seed and cycle under other kernels: the largest |V difference|
            if d == d0: return None
            m = runs[d0].merge(runs[d], on=['seed', 'cycle'])
            return round(float((m.precision_V_x - m.precision_V_y).abs().max()), 1)
        def by_cycle(d):   # highest minus lowest V of the seeds at each cycle
            g = runs[d].groupby('cycle').precision_V
            return ', '.join(f'{c}: {hi - lo:.1f}' for c, hi, lo in zip(g.max().index, g.max(), g.min()))
        pd.DataFrame([{'CPU threads': f['threads'], 'CPU kernels': f.get('isa', 'native'), 'seeds': f['seeds'], 'V rose every cycle': f"{f['monotone_share']:.0%}",
                       'passed ε': f"{f['pass_share']:.0%}", 'passed at cycle (seeds)': ', '.join(f'{k}: {n}' for k, n in f['pass_cycles'].items()),
                       'V spread by cycle': by_cycle(d), 'final V median': f['final_v_median'], 'final V spread': f['final_v_spread'],
                       'loop wall s (median)': f['median_wall_s'], 'loop wall s (max)': f['max_wall_s'],
                       'same seed, largest V change vs first row': same_seed_change(dirs[0], d)} for d, f in zip(dirs, figs)]
                     ).to_csv(img/'bench_demo.csv', index=False)
        rows = pd.concat([runs[d].assign(seed=lambda x, t=f"{f['threads']}t-{f.get('isa', 'native')}": x.seed.astype(str) + f'@{t}')
                          for d, f in zip(dirs, figs)])
        plot_demo_band(rows, img/'demo_band.png', load_recipe('demo').judge.epsilon)
        print((img/'bench_demo.csv').read_text()); sys.exit()
    if sys.argv[1] == '--jury':
        jury_tables(Path(sys.argv[2]), Path(sys.argv[3]), img)
        for n in ('jury_cycles', 'jury_trust', 'jury_refused'): print((img/f'{n}.csv').read_text())
        sys.exit()
    if sys.argv[1] in ('--bench', '--estimate'):   # python tools/record_run.py --bench train bench.log  (the log's last JSON line)
        fig = json.loads([l for l in Path(sys.argv[3]).read_text().splitlines() if l.startswith('{')][-1])
        out = img/(f'bench_{sys.argv[2]}.csv' if sys.argv[1] == '--bench' else f'estimate_{sys.argv[2]}.csv')
        pd.DataFrame(ROWS.get(sys.argv[2] if sys.argv[1] == '--bench' else 'estimate', bench_rows)(fig)).to_csv(out, index=False)
        print(out.read_text()); sys.exit()
    name, dirs = sys.argv[1], [Path(a) for a in sys.argv[2:]]
    shutil.copy(dirs[0]/'metrics.csv', img/f'{name}_metrics.csv')
    shutil.copy(dirs[0]/'plots'/'score_vs_volume.png', img/f'{name}_score_vs_volume.png')
    pd.DataFrame([run_row(d) for d in dirs]).to_csv(img/f'{name}_runs.csv', index=False)
    print((img/f'{name}_runs.csv').read_text())
