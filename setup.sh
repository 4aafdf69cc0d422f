#!/bin/sh
# Installs what Kestrel needs on a Debian 12 machine: the apt packages (without letting apt start any
# service on the host) and a virtualenv in .venv with Kestrel installed in it. Idempotent; run as root.
set -eu
cd "$(dirname "$0")"

PACKAGES="dnsmasq-base nginx-light nfs-ganesha nfs-ganesha-vfs rpcbind nfs-common iproute2 \
  isc-dhcp-client curl pxelinux syslinux-common syslinux-efi ipxe qemu-system-x86 qemu-utils ipxe-qemu seabios \
  mmdebstrap debootstrap openssh-server openssh-client busybox-static python3-venv tcpdump procps iputils-ping \
  shellcheck systemd-container"
# systemd-container: systemd-nspawn runs container nodes (kestrel-vm start --kind container). Installed, like
# everything here, with --no-install-recommends: its recommended libnss-mymachines edits /etc/nsswitch.conf.

# The packages not installed yet, one argument each (the script takes no arguments of its own).
set --
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || set -- "$@" "$p"
done
if [ "$#" -gt 0 ]; then
  # Kestrel starts and supervises these services itself: apt must not start them on the host.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; guard=1
  fi
  trap '[ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "$@"
fi

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "Kestrel installed in $(pwd)/.venv"
