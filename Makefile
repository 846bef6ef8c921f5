# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
ARGS   ?=

.PHONY: run smoke test bench ui report clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: a plain resolve would pull a multi-GB CUDA build. Any torch
	# already importable (a GPU build you brought) is kept.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q torch
	$(PY) -m pip install -q -e ".[test]"
	touch $@

run: $(VENV)/.installed
	$(PY) jobs/inversion_sweep.py $(ARGS)
	$(PY) dashboards/build_report.py $$(printf '%s\n' "$(ARGS)" | grep -oE -- '--storage-path[= ][^ ]+')

report: $(VENV)/.installed
	$(PY) dashboards/build_report.py $(ARGS)

smoke: $(VENV)/.installed
	$(PY) jobs/inversion_sweep.py --smoke-test $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.installed
	$(PY) bench/sweep_overhead.py
	$(PY) bench/batched_inversion.py
	$(PY) bench/xor_throughput.py
	$(PY) bench/untrained_fit.py
	$(PY) bench/ct_speed.py
	$(PY) bench/attacks.py
	$(PY) bench/n2n_throughput.py

ui: $(VENV)/.installed
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$(CURDIR)/reconlab_results/mlflow.db \
	  --artifacts-destination $(CURDIR)/reconlab_results/artifacts

clean:
	rm -rf reconlab_results .pytest_cache
