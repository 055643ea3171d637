#!/usr/bin/env bash
# `make run` on a terminal, as a newcomer runs it: in a tmux pane (80 x 40), to its end. It must
# end by itself with exit 0, show the cluster electing, handing over and replacing a crashed
# primary, and print no error. Bounded: 240 s at most.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tmux >/dev/null 2>&1 || { echo "make-run-terminal: tmux not installed; skipped"; exit 0; }
session="make-run-$$"
log=$(mktemp)
trap 'tmux kill-session -t "$session" 2>/dev/null || true; rm -f "$log"' EXIT
tmux new-session -d -s "$session" -x 80 -y 40 "make run; echo \"make-run-exit=\$?\"; sleep 600"
for _ in $(seq 480); do
    tmux capture-pane -p -S -2000 -t "$session" > "$log"
    grep -q '^make-run-exit=' "$log" && break
    sleep 0.5
done
status=$(grep -o 'make-run-exit=[0-9]*' "$log" | cut -d= -f2 || true)
fail() { echo "make-run-terminal: FAILED: $1"; cat "$log"; exit 1; }
[ -n "$status" ] || fail "make run did not end within 240 s"
[ "$status" = 0 ] || fail "make run exited $status"
grep -q 'agree: .* is primary' "$log" || fail "no agreed primary shown"
grep -q 'SIGTERM to the primary' "$log" || fail "no handover shown"
grep -q 'summary: handover .* ms, crash failover .* ms' "$log" || fail "no summary shown"
! grep -qiE 'error|broken pipe|fatal' "$log" || fail "an error on the terminal"
echo "make-run-terminal: make run on a terminal ended with exit 0 ($(grep -c . "$log") lines on the pane)"
