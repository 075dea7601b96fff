# Sourced by scripts/test.sh, scripts/two-people.sh and .ci/run: make sure the programs a job needs
# are installed before any long build starts.
#
#   require COMMAND:PACKAGE ...
#
# For each COMMAND missing from PATH, its Debian/Ubuntu PACKAGE is installed with apt-get when this
# runs as root on a system that has it; otherwise the script stops and says exactly what to install.

require() {
  local missing=() pkgs=() pair cmd pkg
  for pair in "$@"; do
    cmd="${pair%%:*}"
    pkg="${pair#*:}"
    if ! command -v "$cmd" >/dev/null 2>&1; then
      missing+=("$cmd")
      pkgs+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${pkgs[*]} (for ${missing[*]})" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${pkgs[@]}" >/dev/null
    for cmd in "${missing[@]}"; do
      command -v "$cmd" >/dev/null 2>&1 || { echo "$cmd is still missing after installing" >&2; exit 1; }
    done
    return 0
  fi
  echo "missing: ${missing[*]}" >&2
  echo "install them first, e.g. on Debian or Ubuntu:" >&2
  echo "  sudo apt-get install ${pkgs[*]}" >&2
  exit 1
}

# Rust itself is not an apt package here (the distribution's is usually older than rust-version).
require_cargo() {
  command -v cargo >/dev/null 2>&1 && return 0
  echo "missing: cargo (Rust $(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml) or newer)" >&2
  echo "install it with rustup: https://rustup.rs (curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh)" >&2
  exit 1
}

# What building pgpchat needs: cargo, and a C compiler (SQLite is compiled from source).
BUILD_TOOLS=(cc:build-essential)
# What the tests need besides: gpg and its agent (interoperability), tmux (the prompt tests), ip
# (network namespaces), pkill (the prompt tests stop the cores they started), socat (the examples of
# docs/ipc.md), Debian's Chromium and its WebDriver (the web page's browser tests, tests/web_browser.rs).
TEST_TOOLS=(gpg:gnupg gpg-agent:gpg-agent tmux:tmux ip:iproute2 pkill:procps socat:socat
  chromium:chromium chromedriver:chromium-driver)
