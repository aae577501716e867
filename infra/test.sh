#!/usr/bin/env bash
# The whole test suite (README's test command). Builds one profile (release) and runs every
# test with cargo-nextest (cargo test when nextest is absent) against a local AWS emulator
# (moto_server on loopback, stopped on exit), then checks the TalkingData training set with
# XGBoost (infra/xgboost_check.py). Reads ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f ../shared/data/talkingdata_train_sample.csv ]; then
  echo "error: ../shared/data/talkingdata_train_sample.csv is missing; check out beside ../shared" >&2
  exit 2
fi

# shellcheck source=infra/moto.sh
source infra/moto.sh
trap moto_stop EXIT INT TERM
moto_start

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --no-fail-fast "$@" || status=$?
else
  cargo test --release --no-fail-fast "$@" || status=$?
fi
if [ "$status" -ne 0 ]; then
  exit "$status"
fi

if [ "$#" -eq 0 ] && [ -f infra/xgboost_check.py ]; then
  out=$(mktemp -d -t labeljoin-td.XXXXXX)
  cargo run --release --quiet -- run pipelines/talkingdata.toml --output "$out/out" --state "$out/state" --quiet
  python3 infra/xgboost_check.py "$out/out"
  rm -rf "$out"
fi
