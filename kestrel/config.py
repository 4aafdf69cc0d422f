"""Typed model of kestrel.yaml and images/*.yaml: load, validate, errors as FILE:LINE: FIELD: why."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kestrel import names, shipped
from kestrel.yamlfile import load_model

CONFIG_PATH = "/etc/kestrel/kestrel.yaml"
DEFINITIONS_DIR = "/etc/kestrel/images"  # the admin's image definitions (images/ ships the defaults)


# The only format specs a name pattern may use: {index} or {index:0Nd}/{index:Nd} with N at most 2 digits
# (a width of 09999999999 would build an 8 GB name).
_PATTERN_FIELD = re.compile(r"\{index(:0?[1-9]?[0-9]?d)?\}")


def _name_pattern(text: str) -> str:
    fields = _PATTERN_FIELD.findall(text)
    rest = _PATTERN_FIELD.sub("", text)
    if len(fields) != 1 or "{" in rest or "}" in rest or len(text) > 63:
        raise ValueError(f"{text!r} must hold {{index}} once (width at most 2 digits), like 'node{{index:02d}}'")
    for index in (1, 10**6):
        try:
            names.check_node_name(text.format(index=index))
        except ValueError as e:
            raise ValueError(f"{text!r} must give node names, like 'node{{index:02d}}': {e}") from None
    return text


# Modules that are code, not phase scripts (the rest are the MODULE_ prefixes of phase scripts).
CODE_MODULES = ("firewall", "gateway")
SCRIPT_SIDES = ("frontend", "node")
SCRIPT_PHASES = ("install", "packages", "post-install", "configure")


def known_modules(admin_dir: Path | None) -> list[str]:
    """The modules a config may enable: CODE_MODULES and the MODULE_ prefix of every phase script, shipped or the
    admin's under ADMIN_DIR (/etc/kestrel: its frontend/PHASE.d and node/PHASE.d)."""
    found = set(CODE_MODULES)
    for top in [shipped.PHASES] + ([admin_dir] if admin_dir else []):
        for side in SCRIPT_SIDES:
            for phase in SCRIPT_PHASES:
                folder = top / side / f"{phase}.d"
                if folder.is_dir():
                    found.update(p.name.split("_", 1)[0] for p in folder.iterdir() if "_" in p.name)
    return sorted(found)


def _check_modules(modules: list[str] | None, info: ValidationInfo) -> list[str] | None:
    """Every module known (an unknown one, a typo or one that does not exist yet, would silently do nothing)."""
    if modules is None or not info.context or "admin_dir" not in info.context:
        return modules
    known = known_modules(info.context["admin_dir"])
    for name in modules:
        if name not in known:
            raise ValueError(f"unknown module {name!r} (known: {', '.join(known)})")
    return modules


def _with_core(modules: list[str]) -> list[str]:
    """kestrel.yaml's modules include core: without it no image gets accounts, a host name or the boot set-up
    (an image definition may still list its own, like the tests' tiny images)."""
    if "core" not in modules:
        raise ValueError(f"core is missing from {modules!r}: every node image needs it (accounts, host name, boot)")
    return modules


def _lease_time(text: str) -> str:
    if text != "infinite" and not (text[:-1].isdigit() and text[-1] in "smhdw" or text.isdigit()):
        raise ValueError(f"{text!r} is not a lease time (like 12h, 45m, 3600 or infinite)")
    return text


Hostname = Annotated[str, AfterValidator(names.check_hostname)]
Domain = Annotated[str, AfterValidator(names.check_domain)]
Name = Annotated[str, AfterValidator(names.check_name)]
IfName = Annotated[str, AfterValidator(names.check_ifname)]
NodeName = Annotated[str, AfterValidator(names.check_node_name)]
GroupName = Annotated[str, AfterValidator(names.check_group_name)]
AbsPath = Annotated[str, AfterValidator(names.check_abs_path)]
Cmdline = Annotated[str, AfterValidator(names.check_cmdline)]
Url = Annotated[str, AfterValidator(names.check_url)]
Text = Annotated[str, AfterValidator(names.check_text)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
# Below 1000 are Debian's system accounts; 65534 is nobody.
Uid = Annotated[StrictInt, Field(ge=1000, le=65533)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class BootMethod(StrEnum):
    IPXE_HTTP = "ipxe-http"
    PXELINUX = "pxelinux"


class DhcpMode(StrEnum):
    """How dnsmasq serves DHCP on the cluster network."""

    AUTHORITATIVE = "authoritative"  # the only DHCP server there: addresses, names, boot files
    PROXY = "proxy"  # next to the site's DHCP server: only PXE/iPXE boot answers, no addresses
    OFF = "off"  # no DHCP at all (TFTP and DNS only): another server points the nodes here


class NfsServer(StrEnum):
    KERNEL = "kernel"
    GANESHA = "ganesha"


class Cluster(_Section):
    name: Hostname = "lab"
    """The cluster's name (a host label)."""
    domain: Domain = "cluster.local"
    """DNS domain of the nodes and the frontend on the cluster network."""
    frontend_name: Hostname = "frontend"
    """The frontend's host name on the cluster network."""


class Network(_Section):
    interface: IfName = "eth1"
    """The frontend's interface on the cluster network (the NIC facing the nodes; the lab's bridge)."""
    dhcp: DhcpMode = DhcpMode.AUTHORITATIVE
    """How dnsmasq serves DHCP: authoritative (the only DHCP server there), proxy (next to the site's DHCP server: boot
    answers only) or off (TFTP and DNS only)."""
    address: IPv4Interface = IPv4Interface("10.10.0.1/24")
    """The frontend's address on the cluster network, with the prefix length."""
    dhcp_range: tuple[IPv4Address, IPv4Address] = (IPv4Address("10.10.0.100"), IPv4Address("10.10.0.199"))
    """First and last address handed to machines not registered yet."""
    lease_time: Annotated[str, AfterValidator(_lease_time)] = "12h"
    """DHCP lease time: seconds, or with s, m, h, d or w, or infinite."""
    static_pool: tuple[IPv4Address, IPv4Address] | None = None
    """First and last fixed address given to registered nodes (unset: a node keeps the address it leased)."""
    leases_file: AbsPath = "/var/lib/kestrel/dnsmasq.leases"
    """dnsmasq's leases file (kestrel-nodes --register reads it)."""
    mtu: Annotated[StrictInt, Field(ge=576, le=9000)] | None = None
    """MTU told to the nodes by DHCP (a VXLAN switch carries 1450 over a 1500-byte underlay); unset: none told."""
    # Router advertisements on this prefix stop iPXE waiting ~13 s for IPv6 autoconfiguration.
    ipv6_prefix: IPv6Network | None = None
    """A prefix to send router advertisements on: iPXE stops waiting about 13 s for IPv6 autoconfiguration."""
    dns_port: Annotated[StrictInt, Field(ge=0, le=65535)] = 53
    """Port of dnsmasq's DNS server on the cluster network (0: no DNS)."""
    # The cluster network lives in this network namespace (the lab): programs open their sockets to
    # nodes (ssh, Wake-on-LAN) inside it.
    netns: IfName | None = None
    """The network namespace the cluster network lives in (the lab): ssh and Wake-on-LAN open their sockets there."""

    @model_validator(mode="after")
    def _inside_network(self) -> Network:
        net = self.address.network
        if self.address.ip in (net.network_address, net.broadcast_address):
            raise ValueError(f"address: {self.address} is the network or broadcast address, not a host address")
        for field, pair in (("dhcp_range", self.dhcp_range), ("static_pool", self.static_pool)):
            if pair is None:
                continue
            start, end = pair
            for ip in pair:
                if ip not in net or ip in (net.network_address, net.broadcast_address):
                    raise ValueError(f"{field}: {ip} is outside the cluster network {net}")
            if start > end:
                raise ValueError(f"{field}: start {start} is after end {end}")
            if start <= self.address.ip <= end:
                raise ValueError(f"{field}: contains the frontend address {self.address.ip}")
        if self.static_pool and _overlap(self.static_pool, self.dhcp_range):
            raise ValueError("static_pool overlaps dhcp_range")
        return self

    @property
    def network(self) -> IPv4Network:
        return self.address.network

    @property
    def ip(self) -> IPv4Address:
        return self.address.ip


class Boot(_Section):
    method: BootMethod = BootMethod.IPXE_HTTP
    """ipxe-http (iPXE fetches kernel and initrd over HTTP, fast) or pxelinux (everything over TFTP)."""
    http_port: Port = 80
    """Port of nginx serving boot files to iPXE."""
    keys_port: Port = 8079
    """Port of nginx serving each registered node its image's SSH host keys at boot (module firewall: only to the
    registered MAC + address pairs)."""
    menu_timeout: Annotated[StrictInt, Field(ge=0, le=600)] = 3
    """Seconds the boot menu waits for new (unregistered) nodes before booting the default image."""
    cmdline: Cmdline = "console=ttyS0,115200 console=tty0"
    """Kernel command-line extras for every image (an image definition's cmdline adds to it)."""


class Nfs(_Section):
    server: NfsServer = NfsServer.KERNEL
    """kernel (nfs-kernel-server) or ganesha (userspace nfs-ganesha: the only one on hosts without nfsd)."""
    home: AbsPath = "/home"
    """The homes exported read-write to the nodes."""


class KvmMode(StrEnum):
    AUTO = "auto"
    YES = "yes"
    NO = "no"


class VmKind(StrEnum):
    """What runs a virtual node: qemu boots the image from the network; a container runs the image itself."""

    QEMU = "qemu"
    CONTAINER = "container"


class ContainerInit(StrEnum):
    """What runs a container node: Kestrel's minimal init (the image's DHCP client, then its sshd) or the image's
    systemd (nspawn --boot), which costs more memory and start time (docs/ARCHITECTURE.md has the figures)."""

    MINIMAL = "minimal"
    SYSTEMD = "systemd"


class Vm(_Section):
    """Virtual nodes (kestrel-vm): defaults for new VMs and container nodes; the bridge is network.interface.
    A container node gets memory and cpus as cgroup limits."""

    kvm: KvmMode = KvmMode.AUTO
    """auto (KVM only where /dev/kvm works), yes or no (TCG emulation) for qemu nodes."""
    memory: Annotated[StrictInt, Field(ge=128, le=1048576)] = 1024
    """Memory of a virtual node, in MiB (a cgroup limit for a container node)."""
    cpus: Annotated[StrictInt, Field(ge=1, le=256)] = 1
    """CPUs of a virtual node (a cgroup limit for a container node)."""
    container_init: ContainerInit = ContainerInit.MINIMAL
    """What runs a container node: minimal (Kestrel's init: DHCP client, then sshd) or systemd."""


APPROVE = "approve"


def _auto_register(value: object) -> bool | str:
    """true: a machine that takes a lease is a node; approve: it waits in the pending list for
    kestrel-nodes approve; false: nodes are registered only by command."""
    if value is True or value is False or value == APPROVE:
        return value
    raise ValueError(f"must be true, false or approve (got {value!r})")


class Nodes(_Section):
    name_pattern: Annotated[str, AfterValidator(_name_pattern)] = "node{index:02d}"
    """Names of new nodes: {index} once, like node{index:02d}."""
    default_image: Name = "default"
    """The image a new node boots."""
    default_group: GroupName = "compute"
    """The group a new node joins."""
    auto_register: Annotated[bool | str, PlainValidator(_auto_register)] = True
    """true: a machine that takes a lease is a node; approve: it waits for kestrel-nodes approve; false: nodes are
    registered only by command."""
    first_index: Annotated[StrictInt, Field(ge=0, le=999_999)] = 1
    """The index of the first node name ({index} of name_pattern)."""
    # The frontend's private key (under --root): a machine that accepts it over SSH is a node.
    ssh_key: AbsPath = "/root/.ssh/id_ed25519"
    """The frontend's private SSH key (a machine that accepts it is a node; fan-out and status use it)."""
    ssh_port: Port = 22
    """The nodes' SSH port."""
    ssh_timeout: Annotated[StrictInt, Field(ge=1, le=600)] = 10
    """Seconds an SSH connection to a node may take."""
    # A node that answered SSH and stops answering is marked down within this many seconds (status monitor).
    down_after: Annotated[StrictInt, Field(ge=4, le=86400)] = 60
    """Seconds after which a node that answered SSH and stopped answering is marked down."""


ServerName = Annotated[str, AfterValidator(names.check_hostname), Field(max_length=10)]
# Memory a server keeps for itself beyond its nodes' vm.memory (its kernel, sshd, qemu's own overhead).
SERVER_RESERVED_MIB = 512


class Server(_Section):
    """A machine of a multi-server cluster (servers:): how to reach it over SSH and what it can host."""

    name: ServerName
    """The server's name (at most 10 characters: it is part of interface names)."""
    address: IPv4Address | IPv6Address
    """Its underlay address (IPv4 or IPv6): SSH and the VXLAN tunnels use it."""
    ssh_port: Port = 22
    """Its SSH port."""
    user: Name = "root"
    """The SSH user (root: ip and nft need it)."""
    key: AbsPath | None = None
    """The private SSH key to log in with (unset: nodes.ssh_key); or password."""
    password: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """The SSH password (instead of key)."""
    cpus: Annotated[StrictInt, Field(ge=1, le=4096)] | None = None
    """Its CPUs."""
    memory: Annotated[StrictInt, Field(ge=256, le=64 * 1024 * 1024)] | None = None
    """Its memory in MiB: nodes × vm.memory + 512 must fit."""
    disk: Annotated[StrictInt, Field(ge=1, le=1024 * 1024)] | None = None
    """Its disk in GiB."""
    nodes: Annotated[StrictInt, Field(ge=0, le=4096)] = 0
    """How many virtual nodes it hosts."""
    underlay_interface: IfName = "eth0"
    """The interface of its underlay address (the VXLAN tunnels' device)."""

    @model_validator(mode="after")
    def _one_secret(self) -> Server:
        if self.key is not None and self.password is not None:
            raise ValueError("password: give key or password, not both")
        return self


MTU_AUTO = "auto"


def _switch_mtu(value: object) -> int | str:
    if value == MTU_AUTO or (type(value) is int and 576 <= value <= 9000):
        return value
    raise ValueError(f"must be auto or a number from 576 to 9000 (got {value!r})")


class SwitchConfig(_Section):
    """The VXLAN switch host (one of servers:) and how it joins every server's cluster bridge (kestrel-switch)."""

    server: ServerName
    """Which of servers: is the switch host (it may host nodes too)."""
    vni_base: Annotated[StrictInt, Field(ge=1, le=16_000_000)] = 100
    """The first VXLAN network identifier (one per server, from here)."""
    port: Port = 4789
    """The VXLAN UDP port, always passed explicitly to ip (Linux's own default is 8472); open to peers only."""
    mtu: Annotated[int | str, PlainValidator(_switch_mtu)] = MTU_AUTO
    """MTU of the cluster network: auto (the smallest underlay MTU minus 50, 70 over IPv6) or a number under that."""
    bridge: IfName = "kbr0"  # the cluster bridge on each server (the frontend's network.interface)
    """The cluster bridge on each server (the frontend's network.interface)."""
    device_prefix: Annotated[str, AfterValidator(names.check_ifname), Field(max_length=5)] = "kvx"
    """Prefix of the switch devices' names (at most 5 characters)."""


class GatewayEngine(StrEnum):
    HAPROXY = "haproxy"
    NGINX = "nginx"


class Balance(StrEnum):
    ROUNDROBIN = "roundrobin"
    LEASTCONN = "leastconn"


class Gateway(_Section):
    """The gateway module: a load balancer on the frontend over the web servers of one node group."""

    group: Name | None = None  # None: nodes.default_group
    """The node group whose web servers are the backends (default: nodes.default_group)."""
    port: Port = 8080
    """The port the load balancer listens on."""
    listen: list[IPv4Address] = []  # empty: the frontend's cluster address
    """Addresses it listens on (default: the frontend's cluster address)."""
    engine: GatewayEngine = GatewayEngine.HAPROXY
    """haproxy (active health checks) or nginx (passive checks only)."""
    balance: Balance = Balance.ROUNDROBIN
    """roundrobin or leastconn."""
    backend_port: Port = 80  # where the nodes' web servers (the web module) listen
    """Where the nodes' web servers (module web) listen."""
    check_interval_ms: Annotated[StrictInt, Field(ge=100, le=60000)] = 1000  # active checks (haproxy)
    """Milliseconds between HAProxy's health checks (a dead node is out after two failed ones)."""

    @model_validator(mode="after")
    def _unique(self) -> Gateway:
        if len(set(self.listen)) != len(self.listen):
            raise ValueError("listen: an address is given twice")
        return self


class Users(_Section):
    """Cluster users: same uid on the frontend and every node, homes under nfs.home."""

    uid_range: tuple[Uid, Uid] = (2000, 2999)
    """First and last uid (and gid of the private group) of cluster users, the same on every node."""
    shell: AbsPath = "/bin/bash"
    """Login shell of new cluster users."""
    admin_group: Name = "sudo"
    """The group kestrel-users add --admin puts a user in, where it exists."""

    @model_validator(mode="after")
    def _ordered(self) -> Users:
        if self.uid_range[0] > self.uid_range[1]:
            raise ValueError(f"uid_range: start {self.uid_range[0]} is after end {self.uid_range[1]}")
        return self


class Slurm(_Section):
    """The slurm module (modules: [..., slurm]): slurmctld and munge on the frontend, slurmd on the nodes."""

    # SlurmctldHost's name: slurmctld starts only on the host of that name (default: this host's own name).
    controller: Hostname | None = None
    """SlurmctldHost's name: slurmctld starts only on the host of that name (default: this host's name)."""
    port: Port = 6817
    """slurmctld's port."""
    # A node's RealMemory is its `slurmd -C` memory minus this: its root is a tmpfs overlay in the same RAM.
    memory_headroom_mb: Annotated[StrictInt, Field(ge=0, le=1048576)] = 256
    """MiB subtracted from a node's memory for its RealMemory (its root overlay lives in the same RAM)."""
    # True: proctrack/cgroup + task/cgroup (and a cgroup.conf). Off by default: on bookworm's Slurm 22.05 a
    # configless node's slurmstepd failed to set up cgroup/v2 (measured in the lab), and containers or cgroup v1
    # without systemd cannot use them at all: proctrack/linuxproc + task/none.
    cgroups: StrictBool = False
    """proctrack/cgroup and task/cgroup (with a cgroup.conf); off: proctrack/linuxproc and task/none."""
    max_nodes: Annotated[StrictInt, Field(ge=1, le=65000)] = 1024  # MaxNodeCount: dynamic nodes that may join
    """MaxNodeCount: dynamic nodes that may join."""
    slurmd_timeout: Annotated[StrictInt, Field(ge=10, le=3600)] = 60  # seconds before a silent node is DOWN
    """Seconds before a silent node is DOWN."""


class Images(_Section):
    """Published node images."""

    # Versions of each image kept on disk (the current one included) for rollback; versions up nodes run on are
    # kept beyond this number.
    keep: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    """Versions of each image kept on disk, the current one included, for rollback (versions up nodes run on are kept
    beyond it)."""


class Config(_Section):
    """kestrel.yaml. The key names of the documented default are a contract (scripts read them)."""

    cluster: Cluster = Cluster()
    """The cluster's names."""
    network: Network = Network()
    """The cluster network and DHCP."""
    boot: Boot = Boot()
    """How nodes boot."""
    nfs: Nfs = Nfs()
    """The NFS server of images and homes."""
    nodes: Nodes = Nodes()
    """New nodes and how Kestrel reaches them."""
    vm: Vm = Vm()
    """Virtual nodes (kestrel-vm): defaults for new VMs and container nodes."""
    users: Users = Users()
    """Cluster users (kestrel-users)."""
    modules: list[Name] = ["core", "nfsroot", "sshd", "openmpi"]
    """Enabled modules: core (required), nfsroot, sshd, openmpi, mpich, slurm, web, gateway, firewall, and the admin's
    own phase-script prefixes."""
    servers: list[Server] = []
    """The servers of a multi-server cluster (kestrel-switch): name, address, SSH user and key, size, nodes."""
    switch: SwitchConfig | None = None
    """The VXLAN switch host and the servers it joins (kestrel-switch); unset: one server."""
    gateway: Gateway = Gateway()
    """The gateway module's load balancer."""
    slurm: Slurm = Slurm()
    """The slurm module."""
    images: Images = Images()
    """Published node images."""

    _known_modules = field_validator("modules")(_check_modules)
    _core_module = field_validator("modules")(_with_core)

    @model_validator(mode="after")
    def _servers(self) -> Config:
        check_servers(self.servers, self.switch, self.vm.memory)
        return self

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


class BootstrapMethod(StrEnum):
    MMDEBSTRAP = "mmdebstrap"
    DEBOOTSTRAP = "debootstrap"
    TARBALL = "tarball"


_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{0,99}")


def check_package(text: str) -> str:
    """A Debian package name (policy 5.6.1: a-z, 0-9, '+', '-', '.'); it reaches apt's argv."""
    if not isinstance(text, str) or not _PACKAGE.fullmatch(text):
        raise ValueError(f"{text!r} is not a Debian package name (a-z, 0-9, '+', '-', '.')")
    return text


Package = Annotated[str, AfterValidator(check_package)]

# What every bootstrapped base holds (the cached part); a node image adds its modules' package lists.
BASE_PACKAGES = ["systemd-sysv", "udev", "kmod", "iproute2", "procps", "netbase", "ca-certificates"]


class Bootstrap(_Section):
    method: BootstrapMethod = BootstrapMethod.MMDEBSTRAP
    """mmdebstrap (fast), debootstrap or tarball."""
    tarball: AbsPath | None = None
    """The root file system to import (method tarball)."""
    packages: list[Package] = BASE_PACKAGES
    """Packages of the cached base."""
    components: list[Name] = ["main"]
    """Archive components (main, contrib, non-free, non-free-firmware)."""

    @model_validator(mode="after")
    def _tarball_given(self) -> Bootstrap:
        if self.method is BootstrapMethod.TARBALL and not self.tarball:
            raise ValueError("method 'tarball' needs 'tarball: PATH'")
        return self


class ImageDefinition(_Section):
    """images/NAME.yaml: how to build one node image."""

    # Another definition (by name) whose keys this one starts from; keys given here replace them.
    parent: Name | None = Field(default=None, alias="from")
    """Another definition (by name) whose keys this one starts from; keys given here replace them."""
    description: Text = ""
    """One line about the image, for its readers."""
    suite: Name = "bookworm"
    """The Debian release."""
    mirror: Url = "http://deb.debian.org/debian"
    """The Debian mirror."""
    updates: StrictBool = True  # also SUITE-updates from the mirror
    """Also SUITE-updates from the mirror."""
    security_mirror: Url | None = "http://deb.debian.org/debian-security"
    """The security archive (unset: none)."""
    architecture: Name = "amd64"
    """The Debian architecture."""
    variant: Name = "minbase"
    """mmdebstrap or debootstrap variant."""
    packages: list[Package] = []  # extra packages, installed with the modules' lists in one transaction
    """Extra packages, installed with the modules' lists in one transaction."""
    modules: list[Name] | None = None  # None: the modules of kestrel.yaml
    """The image's modules (default: the modules of kestrel.yaml)."""
    cmdline: Cmdline = ""
    """Kernel command-line extras for this image."""
    bootstrap: Bootstrap = Bootstrap()
    """How the base is made."""

    _known_modules = field_validator("modules")(_check_modules)


def check_servers(servers: list[Server], switch: SwitchConfig | None, vm_memory: int) -> None:
    """Names and addresses unique, the switch one of the servers, each server's nodes fit its memory."""
    for i, server in enumerate(servers):
        for field in ("name", "address"):
            value = getattr(server, field)
            first = next(j for j, s in enumerate(servers) if getattr(s, field) == value)
            if first != i:
                raise ValueError(f"servers[{i}].{field}: {str(value)!r} is also servers[{first}]'s {field}")
        if server.memory is not None and server.nodes:
            need = server.nodes * vm_memory + SERVER_RESERVED_MIB
            if need > server.memory:
                raise ValueError(
                    f"servers[{i}].nodes: {server.nodes} nodes of vm.memory {vm_memory} MiB need {need} MiB "
                    f"(with {SERVER_RESERVED_MIB} for the server), it has {server.memory}"
                )
    if switch is not None and switch.server not in [s.name for s in servers]:
        listed = ", ".join(s.name for s in servers) or "none"
        raise ValueError(f"switch.server: {switch.server!r} is not one of servers: ({listed})")


def _overlap(a: tuple[IPv4Address, IPv4Address], b: tuple[IPv4Address, IPv4Address]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def load_config(path: Path, text: str | None = None, admin_dir: Path | None = None) -> Config:
    """Load and validate kestrel.yaml; a missing file is an error (the default ships in etc-kestrel/). ADMIN_DIR
    holds the admin's phase scripts (their modules may be enabled): default, the config's own folder."""
    return load_model(Config, path, text, context={"admin_dir": admin_dir or path.parent})


def load_image_definition(path: Path) -> ImageDefinition:
    names.check_name(path.stem, "image name")
    # ROOT/etc/kestrel/images/NAME.yaml: the admin's phase scripts are under ROOT/etc/kestrel
    return load_model(ImageDefinition, path, context={"admin_dir": path.parent.parent})
