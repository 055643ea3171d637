# The two commands that matter: `make run` (a loopback cluster to watch) and `make test`.
# Both install what is missing (libuv1-dev through apt-get when run as root).

SWIFT ?= swift
# make sim: SCHEDULES schedules from each of SEEDS (comma-separated; seed 7 is the one the
# simulator was long tuned on, the others check it on schedules it was not tuned on).
SCHEDULES ?= 20000
SEEDS ?= 7,20261130,424242
NODES ?= 3

.PHONY: all setup build test run sim bench test-asan test-tsan fuzz fuzz-build fuzz-corpus clean

all: build

# libuv is found with pkg-config; install it when missing (as root), or say what to run.
setup:
	@if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libuv; then \
		echo "setup: libuv $$(pkg-config --modversion libuv) found" >&2; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "setup: installing libuv1-dev and pkg-config with apt-get" >&2; \
		apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libuv1-dev pkg-config >&2; \
	else \
		echo "setup: libuv not found. Run: sudo apt-get update && sudo apt-get install -y libuv1-dev pkg-config" >&2; \
		exit 1; \
	fi

build: setup
	$(SWIFT) build

test: setup
	$(SWIFT) test

# The demo's output is the target's output: the build's goes to stderr (its first run compiles the
# dependencies, which takes minutes), and a reader that goes away early (`make run | head -5`) ends
# the demo by SIGPIPE, which is not a failure.
run: setup
	@echo "run: building the cluster command (the first build compiles its dependencies: a few minutes on 2 cores)" >&2
	@$(SWIFT) build --product cluster >&2
	@"$$($(SWIFT) build --show-bin-path)/cluster" demo --nodes $(NODES); status=$$?; \
		if [ $$status -eq 141 ]; then exit 0; else exit $$status; fi

sim: setup
	$(SWIFT) run -c release cluster sim --schedules $(SCHEDULES) --seeds $(SEEDS)

# The benchmarks (release build), each paired with the plain C yardstick (../shared/bench/uvmesh)
# on the same settings, one after the other, BENCH_REPEAT times: steady at N = 8…128, the cluster
# key's cost (64 nodes with and without a key, and the tags alone), the memory baseline (2 nodes),
# mesh flat out (one loop thread,
# and two for 8/16); then failover
# (three modes), join, the memory of 5 agent processes, 5 agents beside 5 etcd members
# (`cluster bench etcd`: handover, leader killed, CPU at rest), the gossip membership at
# BENCH_MEMBERS members beside memberlist (../shared/bench/memberlist-mesh), and BENCH_AGENTS agent
# processes at rest beside as many Serf agents. Results: .build/bench/results.jsonl, a summary with
# the median ratios on stdout, SVG plots in docs/bench. BENCH_SECONDS sets each measured window.
BENCH_SECONDS ?= 5
BENCH_REPEAT ?= 3
BENCH_NODES ?= 8 16 32 64 128
BENCH_TRIALS ?= 50
# Members of the gossip benchmark (`cluster bench members` beside memberlist-mesh).
BENCH_MEMBERS ?= 100 300
# The large run: members in one process (probe 1 s, joining 100 at a time).
BENCH_MEMBERS_LARGE ?= 1000
# Agent processes at rest beside as many Serf agents (`cluster bench agents` / `cluster bench serf`).
BENCH_AGENTS ?= 8 64
BENCH_AGENTS_SECONDS ?= 10s
# The key's cost is a ratio of two runs, each as noisy as the VM: more pairs than other repeats.
BENCH_KEY_PAIRS ?= 7
# Handovers and leader kills measured on each side of `cluster bench etcd`.
BENCH_ETCD_TRIALS ?= 20
YARDSTICK ?= ../shared/bench
BENCH_OUT ?= .build/bench
bench: setup
	$(SWIFT) build -c release --product cluster
	@[ -f $(YARDSTICK)/uvmesh.c ] || { echo "bench: $(YARDSTICK)/uvmesh.c not found (set YARDSTICK)"; exit 1; }
	@[ .build/uvmesh -nt $(YARDSTICK)/uvmesh.c ] || cc -O2 -Wall -o .build/uvmesh $(YARDSTICK)/uvmesh.c $$(pkg-config --cflags --libs libuv) -pthread
	@mkdir -p $(BENCH_OUT) && rm -f $(BENCH_OUT)/results.jsonl
	@for n in $(BENCH_NODES); do for r in $$(seq $(BENCH_REPEAT)); do \
		.build/uvmesh --nodes $$n --interval-ms 100 --seconds $(BENCH_SECONDS) | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
		.build/release/cluster bench steady --nodes $$n --interval 100ms --seconds $(BENCH_SECONDS) --threads 1 | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
	done; done
	@for r in $$(seq $(BENCH_KEY_PAIRS)); do \
		.build/release/cluster bench steady --nodes 64 --interval 100ms --seconds $(BENCH_SECONDS) --threads 1 | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
		.build/release/cluster bench steady --nodes 64 --interval 100ms --seconds $(BENCH_SECONDS) --threads 1 --key | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
	done
	@for r in $$(seq $(BENCH_REPEAT)); do \
		.build/release/cluster bench steady --nodes 2 --interval 100ms --seconds 2 --threads 1 | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
	done
	@.build/release/cluster bench tags --links 4032 | tee -a $(BENCH_OUT)/results.jsonl
	@for cfg in "8 16 1" "16 4 1" "8 16 2"; do set -- $$cfg; for r in $$(seq $(BENCH_REPEAT)); do \
		.build/uvmesh --nodes $$1 --inflight $$2 --threads $$3 --seconds $(BENCH_SECONDS) | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
		.build/release/cluster bench mesh --nodes $$1 --inflight $$2 --threads $$3 --seconds $(BENCH_SECONDS) | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
	done; done
	@for mode in crash silent leave; do \
		.build/release/cluster bench failover --mode $$mode --trials $(BENCH_TRIALS) --samples-file $(BENCH_OUT)/failover-$$mode.txt | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
	done
	@.build/release/cluster bench join --trials 20 | tee -a $(BENCH_OUT)/results.jsonl
	@.build/release/cluster bench agents --nodes 5 | tee -a $(BENCH_OUT)/results.jsonl
	@# The gossip membership beside memberlist (../shared/bench/memberlist-mesh, built from Debian's
	@# Go packages by its build.sh; skipped, saying so, where Go cannot be installed).
	@[ -x .build/memberlist-mesh ] || bash $(YARDSTICK)/memberlist-mesh/build.sh $(CURDIR)/.build/memberlist-mesh >&2 || echo "bench: memberlist-mesh not built; its side is skipped" >&2
	@ulimit -n 20000 2>/dev/null; for n in $(BENCH_MEMBERS); do \
		[ ! -x .build/memberlist-mesh ] || .build/memberlist-mesh --nodes $$n --probe-interval 200ms --scenario rest,join,crash --trials 3 --seconds 10 --converge-timeout 120s --json-only | tee -a $(BENCH_OUT)/results.jsonl; \
		.build/release/cluster bench members --nodes $$n --probe-interval 200ms --scenario rest,join,crash --trials 3 --seconds 10 | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
	done
	@# Stalls: 5 % of 100 members deaf 3 s at a time for 30 s, beside memberlist with Lifeguard.
	@ulimit -n 20000 2>/dev/null; [ ! -x .build/memberlist-mesh ] || .build/memberlist-mesh --nodes 100 --probe-interval 200ms --scenario stall \
		--stall-fraction 0.05 --stall-ms 3000 --seconds 30 --json-only | tee -a $(BENCH_OUT)/results.jsonl; \
	.build/release/cluster bench members --nodes 100 --probe-interval 200ms --scenario stall --stall-fraction 0.05 --stall-ms 3000 \
		--seconds 30 | tee -a $(BENCH_OUT)/results.jsonl || exit 1
	@# A thousand members in this process, joining 100 at a time, probe 1 s (at 200 ms the start-up
	@# overloads one machine's two cores past ~700 members): converge, a killed member declared
	@# failed by all, a killed primary's successor named by all, the cost at rest once settled.
	@ulimit -n 20000 2>/dev/null; .build/release/cluster bench members --nodes $(BENCH_MEMBERS_LARGE) --probe-interval 1s \
		--scenario rest,crash,primary --trials 2 --seconds 10 --join-batch 100 --converge-timeout 300s | tee -a $(BENCH_OUT)/results.jsonl || exit 1
	@# Agent processes at rest beside Serf's (issue 17): BENCH_AGENTS `cluster agent` processes with
	@# --membership gossip (probe every 1 s, Serf's LAN profile) and as many `serf agent`s (Debian's
	@# serf package, installed when root and missing; skipped, saying so, where it cannot be), one
	@# after the other, and the mesh once for reference. `bench report` prints this / Serf.
	@command -v serf >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq serf; } >&2; } \
		|| echo "bench: serf is not installed (as root: apt-get install -y serf); Serf's side is skipped" >&2
	@ulimit -n 20000 2>/dev/null; for n in $(BENCH_AGENTS); do for r in $$(seq $(BENCH_REPEAT)); do \
		! command -v serf >/dev/null 2>&1 || .build/release/cluster bench serf --nodes $$n --seconds $(BENCH_AGENTS_SECONDS) | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
		.build/release/cluster bench agents --nodes $$n --membership gossip --probe-interval 1s --seconds $(BENCH_AGENTS_SECONDS) | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
	done; \
		.build/release/cluster bench agents --nodes $$n --membership mesh --seconds $(BENCH_AGENTS_SECONDS) | tee -a $(BENCH_OUT)/results.jsonl || exit 1; \
	done
	@# Five agents beside five etcd members (handover, leader killed, CPU at rest); etcd is
	@# installed with apt-get when run as root, else its side is skipped, saying how to install it.
	@command -v etcd >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || { echo "bench: installing etcd-server and etcd-client with apt-get" >&2; \
		apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >&2; } || true
	@.build/release/cluster bench etcd --trials $(BENCH_ETCD_TRIALS) --rest-seconds 20 | tee -a $(BENCH_OUT)/results.jsonl
	@echo; .build/release/cluster bench report $(BENCH_OUT)/results.jsonl --plots docs/bench \
		--samples crash=$(BENCH_OUT)/failover-crash.txt --samples silent=$(BENCH_OUT)/failover-silent.txt \
		--samples leave=$(BENCH_OUT)/failover-leave.txt

# The libuv-layer tests under the sanitizers, each in a build folder of its own.
# sanitizers/lsan.supp lists the leak suppressions (see README).
test-asan: setup
	ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/sanitizers/lsan.supp:print_suppressions=0 \
		$(SWIFT) test --sanitize=address --scratch-path .build-asan --filter "UVTests|ClusterTests"

test-tsan: setup
	TSAN_OPTIONS=halt_on_error=1:suppressions=$(CURDIR)/sanitizers/tsan.supp \
		$(SWIFT) test --sanitize=thread --scratch-path .build-tsan --filter "UVTests|ClusterTests"

# libFuzzer on a real node runtime: each input is one accepted connection, its reads delivered
# through the runtime's read path, and fed to the wire decoders too (README, "Fuzzing"); built
# with the fuzzer and AddressSanitizer in .build-fuzz. A bounded run by default: FUZZ_RUNS inputs
# (-1: no limit), FUZZ_SECONDS (0: no limit), FUZZ_ARGS for any other libFuzzer flag; e.g.
#   make fuzz FUZZ_RUNS=-1 FUZZ_SECONDS=3600
# New inputs go to .build-fuzz/corpus, crashes to .build-fuzz/artifacts; Fuzz/corpus is only read.
# libFuzzer's leak check after each input is off (-detect_leaks=0: the node's loop thread makes
# every input look like a leak, and the check then costs a third of the rate); the harness checks
# that no connection outlives its close, and LeakSanitizer still checks the process at exit, with
# the suppressions in Fuzz/lsan.supp.
FUZZ_RUNS ?= 500000
FUZZ_SECONDS ?= 0
FUZZ_ARGS ?=
FUZZ_BIN = LSAN_OPTIONS=suppressions=$(CURDIR)/Fuzz/lsan.supp .build-fuzz/release/cluster-fuzz
FUZZ_FLAGS = -dict=Fuzz/wire.dict -max_len=4096 -timeout=10 -detect_leaks=0 -artifact_prefix=.build-fuzz/artifacts/
fuzz-build: setup
	$(SWIFT) build -c release --product cluster-fuzz --scratch-path .build-fuzz \
		-Xswiftc -sanitize=fuzzer,address -Xswiftc -DCLUSTER_FUZZ \
		-Xswiftc -enable-experimental-feature -Xswiftc Extern

fuzz: fuzz-build
	@mkdir -p .build-fuzz/corpus .build-fuzz/artifacts Fuzz/regressions
	@$(FUZZ_BIN) --write-seeds .build-fuzz/seeds
	$(FUZZ_BIN) $(FUZZ_FLAGS) -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(FUZZ_ARGS) \
		.build-fuzz/corpus Fuzz/corpus Fuzz/regressions .build-fuzz/seeds

# Rebuilds Fuzz/corpus: the seeds, the corpus and what `make fuzz` found, minimized (-merge=1) to
# the fewest inputs that reach every edge (-use_counters=0: hit counts do not count).
fuzz-corpus: fuzz-build
	rm -rf .build-fuzz/seeds .build-fuzz/merged && mkdir -p .build-fuzz/merged .build-fuzz/corpus Fuzz/corpus
	$(FUZZ_BIN) --write-seeds .build-fuzz/seeds
	$(FUZZ_BIN) $(FUZZ_FLAGS) -merge=1 -use_counters=0 .build-fuzz/merged .build-fuzz/seeds Fuzz/corpus .build-fuzz/corpus
	rm -rf Fuzz/corpus && mv .build-fuzz/merged Fuzz/corpus

clean:
	rm -rf .build .build-asan .build-tsan .build-fuzz
