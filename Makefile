# Rocinante: the commands a developer and CI use. `make test` is the whole suite.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: build release test sim jepsen lint fmt bench-storage cluster3 cluster3-kill cluster3-restart clean

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

# Fault injection against real 3- and 5-node clusters, each fault type alone for JEPSEN_FAULT_S
# seconds (default 180; about 30 minutes in all). Partitions need root, iproute2 and iptables
# (network namespaces); without them the runs use loopback and kill/pause faults only.
# `make test` includes the short form (every fault once, about 2 minutes).
jepsen:
	JEPSEN_LONG=1 $(CARGO) test --release --test jepsen -- --nocapture --test-threads 1

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

# ---- A 3-node cluster on localhost (spec/cluster3.yaml: REST 8001-8003, gRPC 35001-35003) ----
# `make cluster3` runs it in the foreground with prefixed logs ([n1] ...); Ctrl-C stops all.
# From another terminal: `make cluster3-kill 2` (SIGKILL, a crash; `leader` picks the leader)
# and `make cluster3-restart 2`
# (also `N=2`). Data, logs and pids live in ./data/cluster3/ (nN/, nN.log, nN.pid); a restarted
# node's log shows up in the `make cluster3` terminal too.
CLUSTER3_DIR := data/cluster3
CLUSTER3_BIN := target/release/rocinante
CLUSTER3_SPEC := spec/cluster3.yaml

# `make cluster3-kill 2`: take the node number from the goal list, and make "1".."9" no-ops.
ifneq ($(filter cluster3-kill cluster3-restart,$(MAKECMDGOALS)),)
N ?= $(word 2,$(MAKECMDGOALS))
$(word 2,$(MAKECMDGOALS)):
	@:
endif

# Start node $(1) in the background, appending to its log, and record its pid.
define cluster3_start
	$(CLUSTER3_BIN) serve --spec $(CLUSTER3_SPEC) --node $(1) --data-dir $(CLUSTER3_DIR)/n$(1) \
		>> $(CLUSTER3_DIR)/n$(1).log 2>&1 & echo $$! > $(CLUSTER3_DIR)/n$(1).pid
endef

cluster3:
	$(CARGO) build --release
	@mkdir -p $(CLUSTER3_DIR)
	@for n in 1 2 3; do : > $(CLUSTER3_DIR)/n$$n.log; done
	@tails=""; \
	for n in 1 2 3; do \
		(trap '' INT; exec tail -F -n +1 $(CLUSTER3_DIR)/n$$n.log 2>/dev/null \
			> >(trap '' INT; exec sed -u "s/^/[n$$n] /")) & tails="$$tails $$!"; \
	done; \
	stop() { \
		for n in 1 2 3; do \
			pid=$$(cat $(CLUSTER3_DIR)/n$$n.pid 2>/dev/null) && kill -TERM $$pid 2>/dev/null; \
		done; \
		for n in 1 2 3; do \
			pid=$$(cat $(CLUSTER3_DIR)/n$$n.pid 2>/dev/null) || continue; \
			while kill -0 $$pid 2>/dev/null; do sleep 0.2; done; \
			rm -f $(CLUSTER3_DIR)/n$$n.pid; \
		done; \
		sleep 0.3; kill $$tails 2>/dev/null; \
	}; \
	trap 'stop; exit 0' INT TERM; \
	$(call cluster3_start,1); $(call cluster3_start,2); $(call cluster3_start,3); \
	echo "cluster3: REST on 127.0.0.1:8001-8003; Ctrl-C stops all"; \
	while :; do \
		alive=0; \
		for n in 1 2 3; do \
			pid=$$(cat $(CLUSTER3_DIR)/n$$n.pid 2>/dev/null) && kill -0 $$pid 2>/dev/null && alive=1; \
		done; \
		[ $$alive = 1 ] || break; \
		sleep 1; \
	done; \
	stop

# `make cluster3-kill leader` kills whichever node leads (asks /v1/leader with curl).
cluster3-kill:
	@test -n "$(N)" || { echo "usage: make cluster3-kill N (1-3, or leader)"; exit 2; }
	@n=$(N); \
	if [ "$$n" = leader ]; then \
		n=$$(for p in 8001 8002 8003; do curl -s --max-time 1 127.0.0.1:$$p/v1/leader; echo; done \
			| sed -n 's/.*"rest":"[^"]*:800\([1-3]\)".*/\1/p' | head -n 1); \
		test -n "$$n" || { echo "no leader known"; exit 1; }; \
	fi; \
	pid=$$(cat $(CLUSTER3_DIR)/n$$n.pid 2>/dev/null) && kill -KILL $$pid 2>/dev/null \
		&& echo "killed n$$n (pid $$pid) with SIGKILL" || echo "n$$n is not running"

cluster3-restart:
	@test -n "$(N)" || { echo "usage: make cluster3-restart N (1-3)"; exit 2; }
	@pid=$$(cat $(CLUSTER3_DIR)/n$(N).pid 2>/dev/null) && kill -0 $$pid 2>/dev/null \
		&& { kill -TERM $$pid; while kill -0 $$pid 2>/dev/null; do sleep 0.2; done; } || true
	@$(call cluster3_start,$(N)); echo "started n$(N) (pid $$(cat $(CLUSTER3_DIR)/n$(N).pid))"
