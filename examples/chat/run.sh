#!/usr/bin/env bash
# `make demo`: the gateway (as a daemon) and the chat business (in the foreground). Ctrl-C stops
# the business, and the EXIT trap stops the gateway.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
PYTHON=${PYTHON:-/usr/bin/python3}
CHAT_LISTEN=${CHAT_LISTEN:-127.0.0.1:6080}
DEMO=$BUILD/demo
mkdir -p "$DEMO"
cp "$ROOT/examples/chat/netsvr.toml" "$DEMO/netsvr.toml"
CFG=$DEMO/netsvr.toml

"$BUILD/netsvr" start -c "$CFG" --daemon  # returns once the gateway accepts; logs to $DEMO/netsvr.log
trap '"$BUILD/netsvr" stop -c "$CFG" && echo "demo: gateway stopped"' EXIT
cat <<MSG

  Chat:    http://$CHAT_LISTEN/   (open it in two windows, pick two nicknames, join a room)
  Status:  http://127.0.0.1:6070/   (the gateway's live status page)
  Try:     $BUILD/netsvr reload -c $CFG   (nobody is disconnected)
  Logs:    $DEMO/netsvr.log        Ctrl-C stops the business and the gateway.

MSG
NETSVR_PROTO_PY=$BUILD/proto_py "$PYTHON" "$ROOT/examples/chat/chat_business.py" \
  --gateway-config "$CFG" --listen "$CHAT_LISTEN" || true
