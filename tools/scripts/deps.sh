#!/usr/bin/env bash
# Starts the servers Bulwark's tests and dev stack run against, when they are not
# already answering: Redis on 127.0.0.1:6379 and NATS with JetStream on
# 127.0.0.1:4222. Installs them from Debian's packages when they are missing.
# Vault is not started here: tests start their own dev servers from bin/vault
# (see vault.sh), and the dev stack starts one itself.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_pkg() {
  local bin=$1 pkg=$2
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then
    echo "deps: installing $pkg"
    if [ "$(id -u)" -ne 0 ]; then echo "deps: $pkg is missing and installing it needs root" >&2; exit 1; fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  fi
}

wait_for() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do answers "$port" && return 0; sleep 0.1; done
  echo "deps: $name did not start on port $port" >&2; exit 1
}

if answers 6379; then echo "deps: redis already answers on 6379"; else
  need_pkg redis-server redis-server
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/bulwark-redis.log
  wait_for 6379 redis; echo "deps: started redis on 6379"
fi

if answers 4222; then echo "deps: nats already answers on 4222"; else
  need_pkg nats-server nats-server
  nats=$(command -v nats-server || echo /usr/sbin/nats-server)
  mkdir -p /tmp/bulwark-nats
  nohup "$nats" -a 127.0.0.1 -p 4222 -js -sd /tmp/bulwark-nats >/tmp/bulwark-nats.log 2>&1 &
  wait_for 4222 nats; echo "deps: started nats with jetstream on 4222"
fi
