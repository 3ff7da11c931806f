#!/usr/bin/env bash
# Install Debian's Postfix, Dovecot and PostgreSQL for the real-server tier (tests/real). Idempotent: a machine
# that already has them skips apt entirely. The packages' own boot-time daemons are stopped at once:
# the tests start private instances on loopback from a temporary directory, never the system ones.
set -euo pipefail
PACKAGES=(postfix dovecot-core dovecot-imapd dovecot-lmtpd dovecot-pop3d postgresql postfix-pgsql dovecot-pgsql)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-real-servers: ${PACKAGES[*]} already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
# policy-rc.d keeps the packages' postinst scripts from starting system daemons on port 25/143.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  created_policy=1
fi
trap '[ "$created_policy" -eq 1 ] && $SUDO rm -f "$policy"' EXIT
# A freshly booted machine often runs its own updates: wait for the package manager's lock, don't fail.
APT_WAIT=(-o DPkg::Lock::Timeout=600)
$SUDO apt-get "${APT_WAIT[@]}" update -q
$SUDO apt-get "${APT_WAIT[@]}" install -y -q --no-install-recommends "${missing[@]}"
echo "install-real-servers: installed ${missing[*]}"
