#!/usr/bin/env bash
# Two people chatting on one machine: alice and bob, with the shipped loopback profiles
# (config/alice.toml, config/bob.toml: discovery on 127.255.255.255 only), side by side in tmux.
# Each pane runs `pgpchat --profile NAME chat`, which walks through first-run setup and starts
# that person's core in the background.
#
# Outside tmux it starts a new tmux session (named pgpchat, or pgpchat-2, ... when that name is
# taken) and attaches to it; inside tmux it opens a new window in your session. It never stops or
# replaces a session or window of yours. Leave each pane with /back then Quit; close the window
# with `tmux kill-window` (the cores keep running: `pgpchat --profile alice stop`).
#
# Options: --debug builds and runs the debug binary (faster to build). The binary is looked for in
# $CARGO_TARGET_DIR when it is set, as cargo builds it there.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
case "${1:-}" in
  --debug) profile=debug ;;
  "") ;;
  *) echo "usage: $0 [--debug]" >&2; exit 2 ;;
esac

# Everything needed is checked (or installed, as root with apt) before the long build.
. scripts/prerequisites.sh
require_cargo
require "${BUILD_TOOLS[@]}" tmux:tmux

if [ "$profile" = release ]; then
  cargo build --release --locked
else
  cargo build --locked
fi
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
bin="$target/$profile/pgpchat"
[ -x "$bin" ] || { echo "no binary at $bin after the build" >&2; exit 1; }

q() { printf '%q' "$1"; }
alice="$(q "$bin") --profile alice chat; read -r -p 'alice done; Enter closes' _"
bob="$(q "$bin") --profile bob chat; read -r -p 'bob done; Enter closes' _"

if [ -n "${TMUX:-}" ]; then
  # Inside tmux: attaching would nest sessions; a new window of the current session instead.
  window=$(tmux new-window -P -F '#{window_id}' -n pgpchat "$alice")
  tmux split-window -h -t "$window" "$bob"
  tmux select-window -t "$window"
  exit 0
fi
session=pgpchat
n=1
while tmux has-session -t "=$session" 2>/dev/null; do
  n=$((n + 1))
  session="pgpchat-$n"
done
tmux new-session -d -s "$session" -x 200 -y 50 "$alice"
tmux split-window -h -t "=$session:" "$bob"
exec tmux attach -t "=$session"
