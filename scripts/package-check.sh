#!/usr/bin/env bash
# CI check of the Debian package: the unit passes `systemd-analyze verify`, the package builds,
# installs with dpkg, its binary and shipped configuration work, lintian has nothing left to say
# beyond the explained overrides (packaging/debian/lintian-overrides), and it removes cleanly.
#
# It packages the debug build the tests already made (PROFILE=dev): what is checked here is the
# packaging, which is the same for the release build that scripts/build-deb.sh makes by default,
# and a release build would cost CI several minutes for nothing more. (cargo-deb warns that it
# may refuse the dev profile one day; build-deb.sh pins the version that accepts it.)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export PROFILE="${PROFILE:-dev}"

need_packages=()
command -v lintian >/dev/null 2>&1 || need_packages+=(lintian)
command -v systemd-analyze >/dev/null 2>&1 || need_packages+=(systemd)
command -v adduser >/dev/null 2>&1 || need_packages+=(adduser)
if [ ${#need_packages[@]} -gt 0 ]; then
  echo "Installing: ${need_packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi

echo "== build the package ($PROFILE)"
deb="$(scripts/build-deb.sh | tail -n 1 | awk '{print $1}')"
ls -l "$deb"

# Clean means silent: verify exits 0 on warnings such as an unknown (misspelt) key.
verify_unit() {
  local said
  said="$(systemd-analyze verify "$@" 2>&1)" && [ -z "$said" ] && return 0
  echo "systemd-analyze verify $*: not clean:" >&2
  echo "$said" >&2
  return 1
}

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
dpkg-deb -x "$deb" "$workdir/root"

echo "== systemd-analyze verify (the packaged unit, ExecStart pointed at the packaged binary)"
# verify needs ExecStart's binary to exist; the man pages named in Documentation= are checked
# after the install below.
sed "s#/usr/bin/slawatch#$workdir/root/usr/bin/slawatch#" \
  "$workdir/root/usr/lib/systemd/system/slawatch.service" >"$workdir/slawatch.service"
verify_unit --man=no "$workdir/slawatch.service"

echo "== lintian"
# Warnings fail; overrides with their reasons ship in the package (packaging/debian/lintian-overrides).
lintian --fail-on warning "$deb"

echo "== install with dpkg -i"
if dpkg -s slawatch >/dev/null 2>&1; then
  echo "slawatch is already installed on this machine; refusing to replace it" >&2
  exit 1
fi
$SUDO dpkg -i "$deb"
trap '$SUDO dpkg --purge slawatch >/dev/null 2>&1 || true; rm -rf "$workdir"' EXIT

echo "== the installed package"
/usr/bin/slawatch --version
/usr/bin/slawatch --config /etc/slawatch/slawatch.toml check-config >/dev/null
getent passwd slawatch >/dev/null || { echo "postinst did not create the slawatch user" >&2; exit 1; }
dpkg-query -W -f='${Conffiles}\n' slawatch | grep -q '/etc/slawatch/slawatch.toml' \
  || { echo "/etc/slawatch/slawatch.toml is not a conffile" >&2; exit 1; }
verify_unit /usr/lib/systemd/system/slawatch.service
man -w slawatch slawatch-run >/dev/null
bash -c 'source /usr/share/bash-completion/completions/slawatch && complete -p slawatch' >/dev/null
test -s /usr/share/slawatch/prometheus/slawatch.rules.yml
test -s /usr/share/slawatch/dashboards/grafana/wallboard.json

echo "== remove"
$SUDO dpkg --purge slawatch
if [ -e /usr/bin/slawatch ]; then echo "dpkg --purge left /usr/bin/slawatch behind" >&2; exit 1; fi
trap 'rm -rf "$workdir"' EXIT
echo "package OK: $deb ($(du -h "$deb" | cut -f1))"
