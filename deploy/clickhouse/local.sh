#!/usr/bin/env bash
# Starts and stops a private ClickHouse server (Debian's clickhouse-server) for development and
# tests: spare ports on 127.0.0.1, a data folder of its own, no system service touched.
#
#   eval "$(deploy/clickhouse/local.sh start [DIR])"   # prints export lines: CLICKHOUSE_ADDR, …
#   deploy/clickhouse/local.sh stop [DIR]
#
# DIR defaults to $SURVEYHOOKS_CLICKHOUSE_DIR, else a fresh temporary folder (removed on stop).
set -euo pipefail
cmd=${1:-}; dir=${2:-${SURVEYHOOKS_CLICKHOUSE_DIR:-}}
here=$(cd "$(dirname "$0")" && pwd)

# Ports below the kernel's ephemeral range (ip_local_port_range, 32768+ by default): an outgoing
# connection can take an ephemeral port as its source while the server is down, and the server
# could then not listen on it again (the fault test stops ClickHouse for 30 s and restarts it).
free_port() {
  local p lo
  lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$lo" -gt 12000 ] 2>/dev/null || lo=32768
  for _ in $(seq 1 200); do
    p=$(( 10000 + RANDOM % (lo - 10000) ))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "local.sh: no free port found" >&2; return 1
}

server_bin() {
  if [ -x /usr/sbin/clickhouse-server ]; then echo /usr/sbin/clickhouse-server; return; fi
  command -v clickhouse-server && return
  "$here/../install-deps.sh" clickhouse
  echo /usr/sbin/clickhouse-server
}

case "$cmd" in
start)
  bin=$(server_bin)
  tmp=""
  if [ -z "$dir" ]; then dir=$(mktemp -d /tmp/surveyhooks-clickhouse.XXXXXX); tmp=1; fi
  mkdir -p "$dir/data" "$dir/tmp" "$dir/log"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    # Already running (e.g. a second `make run`): reuse it.
    echo "export CLICKHOUSE_ADDR=127.0.0.1:$(cat "$dir/tcp_port")"
    echo "export SURVEYHOOKS_CLICKHOUSE_DIR=$dir"
    exit 0
  fi
  tcp=$(free_port); http=$(free_port)
  cat > "$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
  cat > "$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$dir/log/server.log</log><errorlog>$dir/log/err.log</errorlog></logger>
  <tcp_port>$tcp</tcp_port>
  <http_port>$http</http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/data/user_files/</user_files_path>
  <format_schema_path>$dir/data/format_schemas/</format_schema_path>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
</yandex>
XML
  echo "$tcp" > "$dir/tcp_port"; [ -z "$tmp" ] || touch "$dir/.temporary"
  "$bin" --config-file="$dir/config.xml" --pid-file="$dir/pid" --daemon >"$dir/log/stdout.log" 2>&1
  for _ in $(seq 1 150); do
    if (exec 3<>/dev/tcp/127.0.0.1/$tcp) 2>/dev/null; then
      echo "export CLICKHOUSE_ADDR=127.0.0.1:$tcp"
      echo "export SURVEYHOOKS_CLICKHOUSE_DIR=$dir"
      exit 0
    fi
    sleep 0.2
  done
  echo "local.sh: clickhouse-server did not listen on 127.0.0.1:$tcp within 30s; see $dir/log/" >&2
  tail -20 "$dir/log/err.log" >&2 || true
  exit 1
  ;;
stop)
  [ -n "$dir" ] || { echo "local.sh stop: no DIR and no SURVEYHOOKS_CLICKHOUSE_DIR" >&2; exit 2; }
  if [ -f "$dir/pid" ]; then
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
  fi
  [ ! -f "$dir/.temporary" ] || rm -rf "$dir"
  ;;
*) echo "usage: local.sh start|stop [DIR]" >&2; exit 2 ;;
esac
