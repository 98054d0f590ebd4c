#!/usr/bin/env bash
# Install the Debian packages the tests need when they are missing: the PostgreSQL and
# MariaDB server binaries (the suite starts its own throwaway servers from them), make
# and OpenSSL. Does nothing on a machine that has them all.
set -euo pipefail

missing=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || missing+=(postgresql)
command -v mariadb-install-db >/dev/null 2>&1 && [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root (or install them yourself): apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Installing the server packages must not start system services on their standard ports.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}"
