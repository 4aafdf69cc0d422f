#!/bin/sh
# Installs Kestrel on a Debian 12 machine. Idempotent; run as root.
#   ./setup.sh               a development copy: the apt packages the tests drive (apt starts no service on this
#                            host) and a virtualenv in .venv with Kestrel installed from this folder (editable)
#   ./setup.sh --frontend    a real frontend: Debian's dnsmasq, nginx, NFS server (kernel, or nfs-ganesha where
#                            the kernel has no nfsd) and rpcbind under systemd; Kestrel from its wheel in a venv
#                            under /opt/kestrel, its programs linked into /usr/local/sbin; /etc/kestrel seeded
#                            (an admin's file is never overwritten); bash completion. Again: an upgrade.
#   ./setup.sh --uninstall   removes what --frontend added (kestrel uninstall, then the programs); keeps
#                            /etc/kestrel, /var/lib/kestrel, images, homes and the Debian packages
set -eu
cd "$(dirname "$0")"

OPT=/opt/kestrel
BIN=/usr/local/sbin
COMPLETIONS=/usr/local/share/bash-completion/completions
MAN8=/usr/local/share/man/man8
MANIFEST=/var/lib/kestrel/installed-files   # what --frontend put outside /opt/kestrel, for --uninstall

frontend_packages() {
  nfs="nfs-kernel-server"
  # nfsd is a kernel feature: without it (containers, some cloud kernels) the userspace server is the one
  if ! grep -qw nfsd /proc/filesystems && ! modprobe -q nfsd 2>/dev/null; then nfs="nfs-ganesha nfs-ganesha-vfs"; fi
  if grep -qs '^ *server: *ganesha' /etc/kestrel/kestrel.yaml; then nfs="nfs-ganesha nfs-ganesha-vfs"; fi
  # the gateway module's load balancer (with engine: nginx it is the nginx above; HAProxy then stays idle)
  gateway=""
  if grep -qsE '^modules:.*[[ ,]gateway *[],]' /etc/kestrel/kestrel.yaml; then gateway="haproxy"; fi
  # the firewall module's nft
  firewall=""
  if grep -qsE '^modules:.*[[ ,]firewall *[],]' /etc/kestrel/kestrel.yaml; then firewall="nftables"; fi
  echo "dnsmasq nginx-light $nfs $gateway $firewall rpcbind nfs-common ipxe pxelinux syslinux-common syslinux-efi mmdebstrap \
    python3-venv curl iproute2 openssh-client bash-completion"
}

missing_packages() {
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

frontend_install() {
  # shellcheck disable=SC2046  # one package a word
  set -- $(missing_packages $(frontend_packages))
  if [ "$#" -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "$@"
  fi
  # Kestrel from its wheel, outside this folder: built from a clean copy (a build writes into its source)
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
  if [ -n "${KESTREL_WHEEL:-}" ]; then
    cp "$KESTREL_WHEEL" "$work/"
  else
    mkdir "$work/src"
    tar -cf - --exclude=.git --exclude=.venv --exclude=build --exclude=dist --exclude='*.egg-info' \
      --exclude=__pycache__ --exclude=scratch . | tar -xf - -C "$work/src"
  fi
  [ -x "$OPT/bin/python" ] || python3 -m venv "$OPT"
  if [ -z "${KESTREL_WHEEL:-}" ]; then
    "$OPT/bin/pip" wheel -q --disable-pip-version-check --no-deps -w "$work" "$work/src"
  fi
  wheel=$(ls "$work"/kestrel-*.whl)
  "$OPT/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
  "$OPT/bin/pip" install -q --disable-pip-version-check "$wheel"
  mkdir -p "$(dirname "$MANIFEST")" "$COMPLETIONS"
  : > "$MANIFEST.new"
  for program in "$OPT"/bin/kestrel*; do
    name=$(basename "$program")
    ln -sfn "$program" "$BIN/$name"; echo "$BIN/$name" >> "$MANIFEST.new"
  done
  # bash completion (commands, options, node, group, image and user names) and man pages, from the click commands
  "$OPT/bin/python" -I -m kestrel.cli.completion "$COMPLETIONS" >> "$MANIFEST.new"
  install_man_pages "$OPT/bin/python" >> "$MANIFEST.new"
  mv "$MANIFEST.new" "$MANIFEST"
  seed_etc_kestrel
  if [ ! -e /root/.ssh/id_ed25519 ]; then
    mkdir -p /root/.ssh; chmod 700 /root/.ssh; ssh-keygen -q -t ed25519 -N '' -C "kestrel frontend" -f /root/.ssh/id_ed25519
  fi
  interface=$(sed -n 's/^ *interface: *\([^ #]*\).*/\1/p' /etc/kestrel/kestrel.yaml | head -n 1)
  if [ -n "$interface" ] && [ -e "/sys/class/net/$interface" ]; then
    "$BIN/kestrel-reconfigure" --frontend   # an upgrade: files and units follow the new version
  fi
  echo "Kestrel $("$OPT/bin/python" -c 'import importlib.metadata as m; print(m.version("kestrel"))') is installed in $OPT."
  echo "Next: edit /etc/kestrel/kestrel.yaml (network.interface: the NIC facing the nodes, network.address),"
  echo "then: kestrel-images build default && kestrel-reconfigure --all && kestrel doctor"
}

install_man_pages() {
  # man pages generated from the click commands (PYTHON: the venv's), where this Kestrel can make them
  if "$1" -c 'import kestrel.cli.manpages' 2>/dev/null; then
    "$1" -m kestrel.cli.manpages "$MAN8"
    mandb -q > /dev/null 2>&1 || true
  fi
}

seed_etc_kestrel() {
  # the shipped default /etc/kestrel, file by file; an existing file is the admin's and stays, the shipped
  # version lands beside it as NAME.dpkg-dist when it differs (Kestrel ignores those)
  data=$("$OPT/bin/python" -c 'from kestrel import shipped; print(shipped.ETC_KESTREL)')
  (cd "$data" && find . -type f) | while read -r f; do
    target="/etc/kestrel/${f#./}"
    mkdir -p "$(dirname "$target")"
    if [ ! -e "$target" ]; then
      cp "$data/$f" "$target"
      if [ "${f#./}" = kestrel.yaml ] && ! grep -qw nfsd /proc/filesystems && ! modprobe -q nfsd 2>/dev/null; then
        sed -i 's/^\( *server:\) kernel /\1 ganesha/' "$target"   # this kernel has no nfsd
      fi
    elif ! cmp -s "$data/$f" "$target"; then
      cp "$data/$f" "$target.dpkg-dist"
    fi
  done
}

frontend_uninstall() {
  if [ -x "$OPT/bin/kestrel" ]; then "$OPT/bin/kestrel" uninstall; fi
  if [ -f "$MANIFEST" ]; then
    while read -r f; do rm -f "$f"; done < "$MANIFEST"
    rm -f "$MANIFEST"
  fi
  rm -rf "$OPT" /usr/local/lib/kestrel
  echo "Kestrel is removed. Kept: /etc/kestrel, /var/lib/kestrel, /srv/kestrel, the homes, /root/.ssh and the"
  echo "Debian packages (dnsmasq, nginx, the NFS server: apt purge them if nothing else needs them)."
}

case "${1:-}" in
  --frontend) [ "$(id -u)" = 0 ] || { echo "setup.sh: run as root" >&2; exit 1; }; frontend_install; exit 0 ;;
  --uninstall) [ "$(id -u)" = 0 ] || { echo "setup.sh: run as root" >&2; exit 1; }; frontend_uninstall; exit 0 ;;
  "") ;;
  *) echo "usage: setup.sh [--frontend | --uninstall]" >&2; exit 2 ;;
esac

PACKAGES="dnsmasq-base nginx-light nfs-ganesha nfs-ganesha-vfs rpcbind nfs-common iproute2 \
  isc-dhcp-client curl pxelinux syslinux-common syslinux-efi ipxe qemu-system-x86 qemu-utils ipxe-qemu seabios \
  mmdebstrap debootstrap openssh-server openssh-client busybox-static python3-venv tcpdump procps iputils-ping \
  shellcheck haproxy chromium wrk systemd-container slurmctld slurmd slurm-client munge nftables libnfs-utils"
# nftables: the firewall module; libnfs-utils: its tests' NFS client (nfs-ls: this kernel may have no NFS client).
# systemd-container: systemd-nspawn runs container nodes (kestrel-vm start --kind container) and the real-frontend
# test's Debian server with systemd as PID 1. Installed, like
# everything here, with --no-install-recommends: its recommended libnss-mymachines edits /etc/nsswitch.conf.

# The packages not installed yet, one argument each.
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
# bash completion and man pages of the programs in .venv/bin (put it on PATH to use them)
.venv/bin/python -m kestrel.cli.completion "$COMPLETIONS" > /dev/null
install_man_pages .venv/bin/python > /dev/null
echo "Kestrel installed in $(pwd)/.venv"
