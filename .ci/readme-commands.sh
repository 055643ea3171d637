#!/usr/bin/env bash
# Runs the README's commands as written, in the order a newcomer would: the build, the three
# agents of "A cluster from three shells" (each in the background, its log in a file), then
# everything the README says to try (members, metrics, a switchover, a fourth agent made a voter,
# killing the primary and restarting it, stopping the primary with Ctrl-C). Each command is taken
# from README.md itself or checked to be in it verbatim, so a README edit that breaks one fails
# here. Uses the ports the README names (7001-7004, 9101) and /tmp/c. Run by .ci/run after
# `make test` (which builds everything: `swift build` is then quick); about 15 s.
#   SWIFT=swiftl .ci/readme-commands.sh   # with another swift driver
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
LOGS=$(mktemp -d)
declare -A AGENT_PID=()

say() { printf 'readme: %s\n' "$*" >&2; }
fail() {
    say "FAILED: $*"
    for f in "$LOGS"/*.log; do [ -f "$f" ] && { say "--- $f"; tail -20 "$f" >&2; }; done
    exit 1
}
# The README must hold this command word for word.
in_readme() { grep -qF -- "$1" README.md || fail "the README no longer says: $1"; }
stop_all() {
    for id in "${!AGENT_PID[@]}"; do kill -TERM "${AGENT_PID[$id]}" 2>/dev/null || true; done
    for id in "${!AGENT_PID[@]}"; do wait "${AGENT_PID[$id]}" 2>/dev/null || true; done
    rm -rf "$LOGS" /tmp/c
}
trap stop_all EXIT

for port in 7001 7002 7003 7004 9101; do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then fail "port $port is taken: the README's commands need it"; fi
done
rm -rf /tmp/c

# "swift build" and the alias, as written (the alias made usable in a script).
in_readme "swift build                                     # once; the binary is .build/debug/cluster"
$SWIFT build >&2
in_readme "swift run cluster --help"
$SWIFT run cluster --help >/dev/null
shopt -s expand_aliases
alias_line=$(grep -E '^    alias cluster=' README.md | sed 's/^    //')
[ -n "$alias_line" ] || fail "no alias line in the README"
eval "$alias_line"
cluster_bin=${alias_line#alias cluster=}   # what the alias stands for, to exec agents in place

# The agent lines of the README, each started in the background.
start_agent() {  # the README's line for agent $1 (or the given line), started in the background
    local id=$1 line=${2:-}
    [ -n "$line" ] || line=$(grep -E "^    cluster agent --id $id " README.md | sed 's/^    //')
    [ -n "$line" ] || fail "no agent line for $id in the README"
    # exec: the background job is the agent itself (its pid is the one to signal).
    ( eval "exec $cluster_bin ${line#cluster }" ) >>"$LOGS/$id.log" 2>&1 &
    AGENT_PID[$id]=$!
}
for id in n1 n2 n3; do start_agent $id; done

# Waits (bounded) until `cluster members --addr $1` exits 0: a primary and a quorum.
wait_healthy() {
    for _ in $(seq 150); do
        if cluster members --addr "$1" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    fail "the node at $1 knows no primary or quorum after 30 s"
}
leader_of() { cluster members --addr "$1" -o json | sed -n 's/^  "leader_id" : "\(.*\)",$/\1/p'; }
wait_healthy 127.0.0.1:7002

in_readme '$ cluster members --addr 127.0.0.1:7002'
table=$(cluster members --addr 127.0.0.1:7002)
printf '%s\n' "$table" >&2
[ "$(printf '%s\n' "$table" | grep -c ' alive ')" = 3 ] || fail "not three members alive"

in_readme 'curl 127.0.0.1:9101/metrics'
curl -fsS 127.0.0.1:9101/metrics | grep '^cluster_' >/dev/null || fail "no cluster_ metrics at 9101"
in_readme 'curl 127.0.0.1:7001/metrics'
curl -fsS 127.0.0.1:7001/metrics | grep '^cluster_' >/dev/null || fail "no cluster_ metrics at 7001"

in_readme 'cluster transfer --addr 127.0.0.1:7002 --to n3'
out=$(cluster transfer --addr 127.0.0.1:7002 --to n3) || fail "transfer: $out"
say "$out"
printf '%s' "$out" | grep -qE 'n3 is the primary now|n3 already leads' || fail "transfer said: $out"

# A fourth agent, like the others, joins without a vote until the README's command gives it one.
start_agent n4 "cluster agent --id n4 --listen 127.0.0.1:7004 --seeds 127.0.0.1:7001 --data-dir /tmp/c/n4 --min-quorum 2"
for _ in $(seq 150); do
    cluster members --addr 127.0.0.1:7001 --id n4 --status alive -o json | grep '"id" : "n4"' >/dev/null && break
    sleep 0.2
done
in_readme 'cluster voters --addr 127.0.0.1:7001 add n4'
out=$(cluster voters --addr 127.0.0.1:7001 add n4) || fail "voters add: $out"
say "$out"

# Kill the primary (kill -9), see another elected, restart it with its line: back as a replica.
in_readme 'Kill the primary'
primary=$(leader_of 127.0.0.1:7002)
[ -n "$primary" ] || fail "no primary known"
kill -9 "${AGENT_PID[$primary]}"; wait "${AGENT_PID[$primary]}" 2>/dev/null || true
other=127.0.0.1:7002; [ "$primary" = n2 ] && other=127.0.0.1:7001
for _ in $(seq 150); do
    new=$(leader_of $other); [ -n "$new" ] && [ "$new" != "$primary" ] && break
    sleep 0.2
done
[ -n "$new" ] && [ "$new" != "$primary" ] || fail "no new primary after $primary was killed"
say "killed $primary; $new leads"
if [ "$primary" = n4 ]; then
    start_agent n4 "cluster agent --id n4 --listen 127.0.0.1:7004 --seeds 127.0.0.1:7001 --data-dir /tmp/c/n4 --min-quorum 2"
else
    start_agent "$primary"
fi
wait_healthy "127.0.0.1:700${primary#n}"
grep -q 'restored term' "$LOGS/$primary.log" || fail "$primary did not say the term it restored"

# Stop the primary with Ctrl-C (SIGINT): it hands over and exits 0.
in_readme 'Stop the primary'
primary=$(leader_of $other)
kill -INT "${AGENT_PID[$primary]}"
status=0; wait "${AGENT_PID[$primary]}" || status=$?
unset "AGENT_PID[$primary]"
[ "$status" = 0 ] || fail "$primary exited $status after Ctrl-C"
say "stopped $primary with SIGINT: exit 0"
say "every README command ran as written"
