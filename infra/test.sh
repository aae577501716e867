#!/usr/bin/env bash
# The whole test suite (README's test command). Builds one profile (release) and runs every
# test with cargo-nextest (cargo test when nextest is absent). Reads ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f ../shared/data/talkingdata_train_sample.csv ]; then
  echo "error: ../shared/data/talkingdata_train_sample.csv is missing; check out beside ../shared" >&2
  exit 2
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --no-fail-fast "$@"
else
  cargo test --release --no-fail-fast "$@"
fi
