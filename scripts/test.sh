#!/usr/bin/env bash
# Runs slawatch's whole test suite on a fresh Debian machine with a Rust toolchain:
# installs the real servers and tools the tests talk to (Dovecot for IMAP/LMTP; PostgreSQL 15
# for the store's second backend; Prometheus,
# promtool and Alertmanager for the rules, dashboards and alerting path; aiosmtpd for alert
# mail; Chromium and poppler for the wallboard and the printed report; libfaketime for
# wall-clock steps; strace for a read-only ledger), then runs every unit and integration test.
# Tests never skip: a missing server fails them.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_packages=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need_packages+=(dovecot-imapd dovecot-lmtpd)
[ -x /usr/lib/dovecot/lmtp ] || need_packages+=(dovecot-lmtpd)
# The store tests run on PostgreSQL too, and the active/standby failover tests (tests/failover.rs:
# two daemons on one PostgreSQL ledger): a private server from Debian's binaries, not on PATH.
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || [ -n "${SLAWATCH_PG_BIN:-}" ] \
  || need_packages+=(postgresql-15)
command -v promtool >/dev/null 2>&1 || need_packages+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need_packages+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need_packages+=(prometheus-alertmanager)
command -v python3 >/dev/null 2>&1 || need_packages+=(python3)
command -v openssl >/dev/null 2>&1 || need_packages+=(openssl)
command -v sqlite3 >/dev/null 2>&1 || need_packages+=(sqlite3)
# Wall-clock steps are injected into the daemon with libfaketime.
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || need_packages+=(faketime)
# A read-only ledger is injected into the daemon's write calls with strace.
command -v strace >/dev/null 2>&1 || need_packages+=(strace)
# The HTML report is printed by headless Chromium and checked with poppler's tools.
command -v chromium >/dev/null 2>&1 || need_packages+=(chromium)
command -v pdftotext >/dev/null 2>&1 || need_packages+=(poppler-utils)
# The SMTP sink needs aiosmtpd in Debian's interpreter (python3-aiosmtpd) or the PATH's python3.
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || python3 -c 'import aiosmtpd' >/dev/null 2>&1 \
  || need_packages+=(python3-aiosmtpd)
if [ ${#need_packages[@]} -gt 0 ]; then
  echo "Installing test servers: ${need_packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi

cargo test --locked "$@"
