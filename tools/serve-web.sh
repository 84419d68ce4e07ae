#!/usr/bin/env bash
# Builds the browser page (tools/build-web.sh) and serves web/www on 127.0.0.1 with Python's
# static file server. PORT picks the port (default 8000). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/build-web.sh
port="${PORT:-8000}"
echo "serve-web: open http://127.0.0.1:$port/  (Ctrl-C stops the server)"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory web/www
