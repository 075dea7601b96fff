#!/usr/bin/env bash
# The test command of README.md, and what .ci/run calls after fmt and clippy: installs what the tests
# need when it is missing (as root, with apt-get; otherwise it says what to install), then runs the
# whole suite. Extra arguments go to `cargo test` (e.g. `scripts/test.sh -- cli::`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prerequisites.sh
require_cargo
require "${BUILD_TOOLS[@]}" "${TEST_TOOLS[@]}"
exec cargo test --workspace --locked "$@"
