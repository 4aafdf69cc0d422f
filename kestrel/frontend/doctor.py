"""kestrel doctor: is this frontend able to boot nodes? One check per line, a verdict and a remedy for each."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from ipaddress import IPv4Interface

from kestrel import runner, supervisor, vocabulary
from kestrel.config import BootMethod, Config, DhcpMode, NfsServer
from kestrel.errors import KestrelError
from kestrel.frontend.desired import HTTP_ROOT, TFTP_ROOT, http_url
from kestrel.frontend.services import is_active
from kestrel.images import store
from kestrel.net import dhcpprobe
from kestrel.net.netns import call_in
from kestrel.sysroot import Sysroot

MIN_FREE_BYTES = 4 << 30  # a node image takes about 1 GiB per kept version, and a build needs room beside it
_OLDEST_SANE = 1767225600  # 2026-01-01: a clock before Kestrel's own release is wrong


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but the admin should know
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    """One line of the diagnosis: what was checked, the verdict, what was found and, unless ok, what to do."""

    name: str
    verdict: Verdict
    detail: str
    remedy: str = ""

    def line(self) -> str:
        fix = f" -> {self.remedy}" if self.remedy and self.verdict is not Verdict.OK else ""
        return f"{self.verdict:<4} {self.name}: {self.detail}{fix}"


@dataclass(frozen=True)
class Port:
    """A socket a service must listen on."""

    service: str
    number: int
    protocol: str  # udp or tcp


def diagnose(root: Sysroot, config: Config, probe_wait: float = 4.0) -> list[Check]:
    """Every check, in the order an admin would fix them: the network, the services, what they serve."""
    checks = [interface_check(root, config)]
    checks += service_checks(root, config)
    checks += port_checks(expected_ports(config), listening(config), config)
    checks.append(rival_check(config, probe_wait))
    checks.append(boot_files_check(root, config))
    checks.append(exports_check(root, config))
    checks += image_checks(root, config)
    checks += [root_key_check(root, config), disk_check(root), clock_check()]
    return checks


def report(checks: list[Check], as_json: bool) -> str:
    if as_json:
        return json.dumps([asdict(c) for c in checks], indent=2) + "\n"
    return "".join(c.line() + "\n" for c in checks)


def failed(checks: list[Check]) -> bool:
    return any(c.verdict is Verdict.FAIL for c in checks)


# -- the network -------------------------------------------------------------------------------------------


def interface_check(root: Sysroot, config: Config) -> Check:
    name, want = config.network.interface, config.network.address
    where = f" in network namespace {config.network.netns}" if config.network.netns else ""
    result = _run(config, ["ip", "-j", "address", "show", "dev", name])
    if not result.ok:
        return Check(
            f"interface {name}",
            Verdict.FAIL,
            f"no such interface{where}",
            f"set network.interface in /etc/kestrel/kestrel.yaml to the NIC that faces the nodes ({_nics(config)})",
        )
    (link,) = json.loads(result.stdout) or [{}]
    up = "UP" in link.get("flags", []) and link.get("operstate") != "DOWN"
    have = [IPv4Interface(f"{a['local']}/{a['prefixlen']}") for a in link.get("addr_info", []) if a["family"] == "inet"]
    if not up:
        return Check(
            f"interface {name}", Verdict.FAIL, f"is down{where}", f"ip link set {name} up (and check the cable)"
        )
    if want not in have:
        return Check(
            f"interface {name}",
            Verdict.FAIL,
            f"is up but has {', '.join(map(str, have)) or 'no IPv4 address'}, not {want}",
            f"give it the address: ip address add {want} dev {name} (and in /etc/network/interfaces)",
        )
    return Check(f"interface {name}", Verdict.OK, f"is up and has {want}")


def _nics(config: Config) -> str:
    result = _run(config, ["ip", "-j", "link", "show"])
    found = [link["ifname"] for link in json.loads(result.stdout or "[]") if link.get("ifname") != "lo"]
    return "here: " + ", ".join(found) if found else "none found"


def rival_check(config: Config, wait: float) -> Check:
    """Other DHCP servers on the cluster network: a fight in authoritative mode, the site's server in proxy mode."""
    mode = config.network.dhcp
    try:
        offers = call_in(config.network.netns, dhcpprobe.probe, config.network.interface, wait=wait)
    except OSError as e:
        return Check(
            "other DHCP servers", Verdict.WARN, f"cannot probe: {e.strerror or e}", "run kestrel doctor as root"
        )
    except KestrelError as e:
        return Check("other DHCP servers", Verdict.WARN, f"cannot probe: {e}")
    others = sorted({str(o.server) for o in offers if o.server != config.network.ip and not o.is_proxy})
    if mode is DhcpMode.AUTHORITATIVE and others:
        return Check(
            "other DHCP servers",
            Verdict.FAIL,
            f"{', '.join(others)} also answer{'s' if len(others) == 1 else ''} DHCP on {config.network.interface}",
            "stop the other server, or set network.dhcp: proxy (answer only PXE boots beside it)",
        )
    if mode is not DhcpMode.AUTHORITATIVE and not others:
        return Check(
            "other DHCP servers",
            Verdict.WARN,
            f"none answered, and network.dhcp is {mode}: nodes get no address",
            "set network.dhcp: authoritative, or start the site's DHCP server",
        )
    if others:
        return Check("other DHCP servers", Verdict.OK, f"{', '.join(others)} gives addresses (network.dhcp: {mode})")
    return Check("other DHCP servers", Verdict.OK, f"none answered a DHCP probe on {config.network.interface}")


# -- the services ------------------------------------------------------------------------------------------


def services(config: Config) -> list[tuple[str, str]]:
    """(Kestrel's name, systemd unit) of every service the frontend runs."""
    nfs = (
        ("nfs-kernel", "nfs-kernel-server") if config.nfs.server is NfsServer.KERNEL else ("nfs-ganesha", "nfs-ganesha")
    )
    return [("dnsmasq", "dnsmasq"), ("nginx", "nginx"), nfs, ("rpcbind", "rpcbind")]


def service_checks(root: Sysroot, config: Config) -> list[Check]:
    out = []
    for name, unit in services(config):
        if root.uses_systemd:
            running = is_active(unit)
            remedy = f"systemctl start {unit}; journalctl -u {unit} says why it stopped"
        else:
            running = name == "rpcbind" or supervisor.find(root, name) is not None  # rpcbind runs with ganesha
            remedy = "kestrel-lab up starts the lab's services"
        verdict = Verdict.OK if running else Verdict.FAIL
        out.append(Check(f"service {unit}", verdict, "active" if running else "not running", remedy))
    return out


def expected_ports(config: Config) -> list[Port]:
    dhcp = {DhcpMode.AUTHORITATIVE: [67], DhcpMode.PROXY: [4011], DhcpMode.OFF: []}[config.network.dhcp]
    nfs = "nfs-kernel-server" if config.nfs.server is NfsServer.KERNEL else "nfs-ganesha"
    return [
        *(Port("dnsmasq", p, "udp") for p in dhcp),
        Port("dnsmasq", 69, "udp"),
        Port("nginx", config.boot.http_port, "tcp"),
        Port(nfs, 2049, "tcp"),
        Port("rpcbind", 111, "tcp"),
    ]


def listening(config: Config) -> set[tuple[str, str, int]]:
    """(protocol, local address, port) of every listening socket, from ss."""
    found = set()
    for protocol, flag in (("udp", "-Hlnu"), ("tcp", "-Hlnt")):
        result = _run(config, ["ss", flag])
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 4:
                address, _, port = fields[3].rpartition(":")
                if port.isdigit():
                    bare = address.split("%")[0].strip("[]").removeprefix("::ffff:")  # IPv4 on an IPv6 socket
                    found.add((protocol, bare, int(port)))
    return found


def port_checks(ports: list[Port], sockets: set[tuple[str, str, int]], config: Config) -> list[Check]:
    """Each PORT open on the frontend's address or on every address."""
    reachable = {"0.0.0.0", "*", "::", str(config.network.ip)}
    out = []
    for p in ports:
        ok = any(proto == p.protocol and port == p.number and a in reachable for proto, a, port in sockets)
        name = f"port {p.number}/{p.protocol}"
        if ok:
            out.append(Check(name, Verdict.OK, f"{p.service} listens"))
        else:
            out.append(
                Check(
                    name,
                    Verdict.FAIL,
                    f"nothing listens on {config.network.ip}:{p.number} ({p.service} should)",
                    f"kestrel-reconfigure --frontend, then systemctl status {p.service}",
                )
            )
    return out


# -- what they serve ---------------------------------------------------------------------------------------


def boot_files_check(root: Sysroot, config: Config) -> Check:
    wanted = (
        [f"{TFTP_ROOT}/undionly.kpxe", f"{HTTP_ROOT}/boot.ipxe"]
        if config.boot.method is BootMethod.IPXE_HTTP
        else [f"{TFTP_ROOT}/pxelinux.0", f"{TFTP_ROOT}/ldlinux.c32", f"{TFTP_ROOT}/pxelinux.cfg/default"]
    )
    missing = [p for p in wanted if not root.path(p).is_file()]
    if missing:
        return Check("boot files", Verdict.FAIL, f"missing {', '.join(missing)}", "kestrel-reconfigure --frontend")
    return Check("boot files", Verdict.OK, ", ".join(p.rsplit("/", 1)[1] for p in wanted))


def exports_check(root: Sysroot, config: Config) -> Check:
    result = _run(config, ["showmount", "-e", str(config.network.ip)], timeout=15)
    if not result.ok:
        return Check(
            "NFS exports",
            Verdict.FAIL,
            f"showmount -e {config.network.ip} failed ({result.why()})",
            "check the NFS server and rpcbind (service lines above)",
        )
    exported = {line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()}
    home = root.sys(config.nfs.home)
    if home not in exported:
        return Check("NFS exports", Verdict.FAIL, f"{home} is not exported", "kestrel-reconfigure --frontend")
    return Check("NFS exports", Verdict.OK, f"{len(exported)} exported ({', '.join(sorted(exported)[:3])}...)")


def image_checks(root: Sysroot, config: Config) -> list[Check]:
    images = [i for i in store.published_images(root) if i.bootable]
    if not images:
        return [
            Check("images", Verdict.FAIL, "no image is built", f"kestrel-images build {config.nodes.default_image}")
        ]
    out = []
    for image in images:
        urls = [f"{http_url(config)}/{image.kernel}", f"{http_url(config)}/{image.initrd}"]
        bad = [u for u in urls if not _run(config, ["curl", "-sfI", "--max-time", "5", u]).ok]
        name = f"image {image.name}"
        if bad:
            out.append(
                Check(
                    name,
                    Verdict.FAIL,
                    f"version {image.version}: {', '.join(bad)} not served",
                    "kestrel-reconfigure --all",
                )
            )
        else:
            out.append(Check(name, Verdict.OK, f"version {image.version}: kernel and initrd served over HTTP"))
    return out


def root_key_check(root: Sysroot, config: Config) -> Check:
    key = config.nodes.ssh_key
    if root.path(key).is_file() and root.path(f"{key}.pub").is_file():
        return Check("root key", Verdict.OK, f"{root.sys(key)} (images authorise it)")
    return Check(
        "root key",
        Verdict.FAIL,
        f"{root.sys(key)} is missing",
        f"ssh-keygen -t ed25519 -N '' -f {root.sys(key)}, then kestrel-reconfigure --all",
    )


def disk_check(root: Sysroot) -> Check:
    folder = root.path("/srv")
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    shown = f"{free / (1 << 30):.1f} GiB free for images under {root.sys('/srv')}"
    if free < MIN_FREE_BYTES:
        return Check("disk", Verdict.FAIL, shown, "free space there, or remove old images (kestrel-images remove)")
    return Check("disk", Verdict.OK, shown)


def clock_check(now: Callable[[], float] = time.time) -> Check:
    stamp = now()
    shown = str(vocabulary.iso_utc(stamp))
    if stamp < _OLDEST_SANE:
        return Check("clock", Verdict.FAIL, f"{shown} is in the past", "set the clock (apt install systemd-timesyncd)")
    return Check("clock", Verdict.OK, shown)


def _run(config: Config, argv: list[str], timeout: float = 10) -> runner.Result:
    return runner.run(argv, via=runner.in_netns(config.network.netns), check=False, timeout=timeout)
