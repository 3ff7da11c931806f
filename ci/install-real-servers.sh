#!/usr/bin/env bash
# Install Debian's Postfix, Dovecot and PostgreSQL for the real-server tier (tests/real). Idempotent: a machine
# that already has them skips apt entirely. The packages' own boot-time daemons are stopped at once:
# the tests start private instances on loopback from a temporary directory, never the system ones.
set -euo pipefail
PACKAGES=(postfix dovecot-core dovecot-imapd dovecot-lmtpd dovecot-pop3d postgresql postfix-pgsql dovecot-pgsql)
PACKAGES+=(chromium chromium-driver)  # the HTML report's browser test (tests/test_report_browser.py)
# The DNS proving ground (tests/real/test_real_dns.py): Knot DNS (knotc, keymgr) and Unbound (unbound-control).
PACKAGES+=(knot unbound)
# Packaged DNS daemons that must never start from their units (the tests run private instances on loopback):
# unbound.service would take port 53, and its unbound-resolvconf helper would put 127.0.0.1 into resolv.conf.
DNS_UNITS=(unbound.service unbound-resolvconf.service knot.service)
# The outbound rig (tests/real/sender_rig.py): DKIM signer and MTA-STS policy daemon, also kept from starting.
PACKAGES+=(opendkim opendkim-tools postfix-mta-sts-resolver)
DNS_UNITS+=(opendkim.service postfix-mta-sts-resolver.service)
PACKAGES+=(iproute2)  # `ip netns`: the second "machine" of tests/real/test_real_multihost.py
# The MTA-STS policy host of the DNS proving ground (tests/real/nginx.py); nginx.service would take port 80.
PACKAGES+=(nginx-light)
DNS_UNITS+=(nginx.service)
# The peer scanner beside the TLS family (tests/test_tls_vs_testssl.py): a script, no daemon; apt brings its
# dependencies (openssl, dnsutils, bsdextrautils/bsdmainutils, procps).
PACKAGES+=(testssl.sh)

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
# policy-rc.d kept them from starting now; disabled, they do not start at the next boot either.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable "${DNS_UNITS[@]}" >/dev/null 2>&1 || true
fi
