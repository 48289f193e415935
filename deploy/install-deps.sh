#!/usr/bin/env bash
# Installs the system packages surveyhooks needs for `make run` and `make test` when they are
# missing: Debian's clickhouse-server/clickhouse-client, protobuf-compiler, chromium (the portal's
# browser tests drive it headless) and nodejs (receivers written from the platforms' Node.js recipes). Safe to run often.
# Usage: install-deps.sh [protoc|clickhouse|chromium|node|npm]...   (no argument: all)
set -euo pipefail
want=("$@"); [ ${#want[@]} -gt 0 ] || want=(clickhouse protoc chromium node)
pkgs=()
for w in "${want[@]}"; do
  case "$w" in
    clickhouse) [ -x /usr/sbin/clickhouse-server ] || command -v clickhouse-server >/dev/null || pkgs+=(clickhouse-server clickhouse-client) ;;
    protoc) command -v protoc >/dev/null || pkgs+=(protobuf-compiler) ;;
    chromium) command -v chromium >/dev/null || pkgs+=(chromium) ;;
    node) command -v node >/dev/null || pkgs+=(nodejs) ;;
    npm) command -v npm >/dev/null || pkgs+=(npm) ;;
    *) echo "install-deps.sh: unknown component '$w' (want clickhouse, protoc, chromium, node or npm)" >&2; exit 2 ;;
  esac
done
[ ${#pkgs[@]} -gt 0 ] || exit 0
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing ${pkgs[*]} from Debian's packages" >&2
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
# The package's service is not wanted: surveyhooks starts its own server on spare ports.
