# textae: `make demo` trains and shows the default model, `make test` runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench bench-latent bench-generative bench-speed bench-summarization bench-anomaly bench-conditional bench-label-weight bench-cluster-ceiling bench-faults bench-scale clean

install: $(STAMP)

# torch first, pinned: it is the CPU build on local disk; a bare requirement would pull a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# Train the default model (staged: a finished stage is skipped, a killed run resumes), then show held-out sentences.
demo: install
	$(PY) -m pipelines.autoencoder --workdir runs/demo
	$(VENV)/bin/textae reconstruct --model runs/demo/run/final --input runs/demo/run/heldout.txt \
		--output runs/demo/heldout_reconstructed.jsonl --show 8 --overwrite

test: install
	$(PY) -m pytest tests

# The default model's training run, then the speed comparison with BART (bench-speed alone).
bench: install
	$(PY) benchmarks/default_train.py
	$(PY) benchmarks/speed.py

# VAE and VQ families: latent health, ablation, paraphrase, code map (about 40 minutes on 2 CPU cores).
bench-latent: install
	$(PY) benchmarks/latent.py

# Codes that write language: the rae family against a peer language model (MAUVE, interpolation, paraphrase) and
# the rate–distortion table of ae / vq / rae (about 75 minutes on 2 CPU cores; starts from the foundation AE
# that `make bench` trains).
bench-generative: install
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/generative.py --init-from runs/bench-default/final

# Side by side with a same-size Hugging Face BART (issue 7: training, decoding and bf16 MFU against their targets, see the README).
bench-speed: install
	$(PY) benchmarks/speed.py

# Text family: unsupervised summarisation, news lead → title, with ablations (about 45 minutes on 2 CPU cores;
# starts from the foundation AE that `make bench` trains).
bench-summarization: install
	$(PY) benchmarks/summarization.py --init-from runs/bench-default/final

# Anomaly scoring: AUROC on SMS, TREC, two held-out kinds of text and a cross-domain set against TF-IDF + kNN,
# MiniLM + kNN and length, and `textae score` throughput of the default on 1M rows (about 95 minutes on 2 CPU cores).
bench-anomaly: install
	$(PY) benchmarks/anomaly.py --minutes 2 --throughput-rows 1000000

# Conditional and mixture VAEs: style transfer on SMS and TREC, clustering TREC and news (about 65 minutes on
# 2 CPU cores; starts from the foundation AE that `make bench` trains).
bench-conditional: install
	$(PY) benchmarks/conditional.py --init-from runs/bench-default/final

# How transfer's default label weight was chosen: dev splits of bench-conditional's training rows only (about
# 30 minutes on 2 CPU cores; needs the cae runs of bench-conditional).
bench-label-weight: install
	$(PY) benchmarks/label_weight_dev.py --init-from runs/bench-default/final

# Whether any mixture over MiniLM's own geometry clusters TREC and news better than k-means on MiniLM (issue 24,
# target 2; about 8 minutes on 2 CPU cores; trains nothing with textae).
bench-cluster-ceiling: install
	$(PY) benchmarks/cluster_ceiling.py

# Fault matrix: every bad input and race against the installed CLI gets one error: line and status 2, nothing left
# behind (about 3 minutes on 2 idle CPU cores, most of it each process's imports; trains its own tiny model).
bench-faults: install
	$(PY) benchmarks/faults.py

# Corpora larger than memory: 100k / 1M / 10M sentences prepared and trained on (about 30 minutes on 2 CPU cores).
bench-scale: install
	$(PY) benchmarks/scale.py

clean:
	rm -rf runs build *.egg-info
