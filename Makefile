# faultline: `make demo` runs the main job end to end, `make test` runs the tests.
# Every target runs the idempotent setup first (Debian packages, adapted gotch).

GO       ?= go
BIN      := bin/faultline
DEMO_DIR ?= runs/demo
# go test's own timeout for `make test` (it must finish well inside 30 minutes).
TEST_TIMEOUT ?= 25m
# How many corpus images model's ONNX corpus test runs each file on in `make test`
# (the corpus has 1,000; all of them take model's tests from 3 to 10 minutes).
ONNX_CORPUS_IMAGES ?= 250
# The ONNX corpus `make test` builds (scripts/onnx-corpus-cache.sh: rebuilt only when
# scripts/onnx-corpus.py, the opsets or Debian's torch/onnx packages change; about
# 2 minutes for the seven opsets) and runs TestCorpus on.
ONNX_CORPUS ?= .cache/onnx-corpus
ONNX_OPSETS ?= 11,12,13,14,15,16,17

.PHONY: setup setup-test build test demo soak bench fuzz clean

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

build: setup
	$(GO) build -o $(BIN) ./cmd/faultline

# The README's test command. Slow checks (long soaks, full-size benchmarks) live in
# `make soak`, `make bench` and `make fuzz`. setup-test installs every optional test
# dependency, so FAULTLINE_REQUIRE_ONNX and FAULTLINE_REQUIRE_TORCH turn the tests'
# "not installed" skips (python3-onnx, ONNX Runtime, the corpus, python3-torch)
# into failures: CI cannot pass by skipping them.
test: setup-test
	$(GO) vet ./...
	@scripts/onnx-corpus-cache.sh $(ONNX_CORPUS) $(ONNX_OPSETS)
	FAULTLINE_ONNX_CORPUS=$(abspath $(ONNX_CORPUS)) FAULTLINE_ONNX_CORPUS_IMAGES=$(ONNX_CORPUS_IMAGES) FAULTLINE_REQUIRE_ONNX=1 FAULTLINE_REQUIRE_TORCH=1 \
	  $(GO) test -timeout $(TEST_TIMEOUT) ./...

# The main job on the embedded default: train LeNet-5 on Fashion-MNIST, a uniform
# weight fault-injection campaign (per-bit SDC rates), its critical weight faults by
# importance sampling, harden it (range restriction and fault-aware training),
# print the before/after table and write the HTML report.
demo: build
	$(BIN) train --preset lenet5-fashion --out $(DEMO_DIR)/lenet5
	$(BIN) inject --checkpoint $(DEMO_DIR)/lenet5 --target weights --faults 20000 --out $(DEMO_DIR)/inject
	$(BIN) importance --checkpoint $(DEMO_DIR)/lenet5 --target weights --budget 1000 --out $(DEMO_DIR)/importance
	$(BIN) harden --checkpoint $(DEMO_DIR)/lenet5 --out $(DEMO_DIR)/lenet5-hardened
	$(BIN) report --in $(DEMO_DIR) --out $(DEMO_DIR)/report.html

soak: setup
	FAULTLINE_SOAK=1 $(GO) test -timeout 60m -run Soak -v ./...

# -p 1: benchmarks of different packages must not share the 2 cores.
bench: setup
	$(GO) test -p 1 -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

# Every Fuzz target of every package, FUZZTIME each (12 targets: about 2 hours, plus
# a one-off instrumented build of gotch's C++ for the packages that link libtorch).
FUZZTIME ?= 10m
fuzz: setup
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

clean:
	rm -rf bin .gotch go.work go.work.sum $(ONNX_CORPUS) $(ONNX_CORPUS).tmp
