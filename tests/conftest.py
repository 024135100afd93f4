import os, sys, pytest
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1'); os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes more than ~30 s on 2 cores (still run by make test)')
    config.addinivalue_line('markers', 'benchmark: performance figures; run by `llamaduo bench`, not by the suite')
    config.addinivalue_line('markers', 'gpu: needs a CUDA GPU (skipped without one)')

def pytest_collection_modifyitems(config, items):
    import torch
    if torch.cuda.is_available(): return
    skip = pytest.mark.skip(reason='needs a CUDA GPU')
    for it in items:
        if 'gpu' in it.keywords: it.add_marker(skip)
