#!/usr/bin/env bash
# Starts a moto server (local AWS emulator: S3, Kinesis; infra/moto_server.py patches its
# Kinesis resharding to behave as AWS does) on 127.0.0.1 and a free port.
# Usage: source infra/moto.sh; moto_start; ...; moto_stop
# moto_start exports AWS_ENDPOINT_URL, dummy credentials and AWS_REGION; moto_stop ends
# the server it started (by its pid). infra/test.sh calls both (moto_stop from a trap).

moto_start() {
  if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    echo "error: moto's server is not installed; install it with: pip install 'moto[server]'" >&2
    return 1
  fi
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  MOTO_LOG=${MOTO_LOG:-$(mktemp -t moto.XXXXXX.log)}
  python3 "$(dirname "${BASH_SOURCE[0]}")/moto_server.py" -H 127.0.0.1 -p "$port" >"$MOTO_LOG" 2>&1 &
  MOTO_PID=$!
  local i
  for i in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null \
      || python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "error: moto_server exited; see $MOTO_LOG" >&2
      cat "$MOTO_LOG" >&2
      return 1
    fi
    sleep 0.1
  done
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_S3_FORCE_PATH_STYLE=true
  unset AWS_PROFILE AWS_SESSION_TOKEN
  echo "moto_server pid $MOTO_PID on $AWS_ENDPOINT_URL (log $MOTO_LOG)" >&2
}

moto_stop() {
  if [ -n "${MOTO_PID:-}" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
  MOTO_PID=
  # The log is kept only when asked (MOTO_KEEP_LOG=1) or when moto_start was given one.
  if [ -z "${MOTO_KEEP_LOG:-}" ] && [ -n "${MOTO_LOG:-}" ] && [[ "$MOTO_LOG" == */moto.*.log ]]; then
    rm -f "$MOTO_LOG"
  fi
}
