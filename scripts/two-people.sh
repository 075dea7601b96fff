#!/usr/bin/env bash
# Two people chatting on one machine: alice and bob, with the shipped loopback profiles
# (config/alice.toml, config/bob.toml: discovery on 127.255.255.255 only), side by side in tmux.
# Each pane runs `pgpchat --profile NAME chat`, which walks through first-run setup and starts
# that person's core in the background. Leave with /back then Quit, or `tmux kill-session -t pgpchat`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
bin="$PWD/target/release/pgpchat"
command -v tmux >/dev/null || { echo "tmux is needed (apt-get install tmux)"; exit 1; }
tmux kill-session -t pgpchat 2>/dev/null || true
tmux new-session -d -s pgpchat -x 200 -y 50 "$bin --profile alice chat; read -r -p 'alice done; Enter closes' _"
tmux split-window -h -t pgpchat "$bin --profile bob chat; read -r -p 'bob done; Enter closes' _"
exec tmux attach -t pgpchat
