# Rocinante: the commands a developer and CI use. `make test` is the whole suite.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: build release test sim lint fmt bench-storage cluster3 cluster3-kill cluster3-restart clean

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# The whole suite, in release mode so the simulator's seeds run fast (one build serves all tests).
test:
	$(CARGO) test --release

# More simulator seeds: make sim SIM_SEEDS=5000 SIM_SEED_START=1
sim:
	$(CARGO) test --release --test simulation -- --nocapture

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Storage benchmark: append rates at batch 1/64/1024 beside the raw fdatasync rate, and
# recovery time of a 1 GiB log (ROCINANTE_BENCH_RECOVERY_BYTES, ROCINANTE_BENCH_SECS,
# ROCINANTE_BENCH_DIR to change size, duration, disk).
bench-storage:
	$(CARGO) bench --bench storage

clean:
	$(CARGO) clean
