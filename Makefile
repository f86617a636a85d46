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

clean:
	$(CARGO) clean
