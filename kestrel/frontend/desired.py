"""The desired state of the frontend (dnsmasq, boot menus, NFS exports, nginx, /etc/hosts) as a plan."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from kestrel.config import BootMethod, Config, NfsServer
from kestrel.errors import CommandError, InputError
from kestrel.frontend import dnsmasq, firewall, keybundles, nfs, nginx, units
from kestrel.gateway import files as gateway
from kestrel.images import store
from kestrel.images.store import PublishedImage
from kestrel.nodes import bootlog, forgotten, hostfiles, leasequeue, registry
from kestrel.nodes import state as nodestate
from kestrel.nodes.registry import Node
from kestrel.nodes.state import States
from kestrel.plan import Action, Desired, Plan, plan_files
from kestrel.slurm import conf as slurm_conf
from kestrel.slurm import controller as slurm_controller
from kestrel.sysroot import LOG_DIR, RUN_DIR, SERVICE_MODE_PATH, Sysroot, decode, encode, replace_block, usual_services
from kestrel.templates import render
from kestrel.users import homes, userkeys

Images = list[PublishedImage]

TFTP_ROOT = "/srv/kestrel/tftp"
HTTP_ROOT = "/srv/kestrel/http"
DNS_HOSTS = "/etc/kestrel/hosts"
LEASE_HOOK = "/usr/local/lib/kestrel/lease-hook"
ETC_HOSTS = "/etc/hosts"
NGINX_STATE = "/var/lib/kestrel/nginx"

# (host file, name in the TFTP root, required for the method)
_LOADERS = {
    BootMethod.IPXE_HTTP: [
        ("/usr/lib/ipxe/undionly.kpxe", "undionly.kpxe", True),
        ("/usr/lib/ipxe/snponly.efi", "snponly.efi", False),
    ],
    BootMethod.PXELINUX: [
        ("/usr/lib/PXELINUX/pxelinux.0", "pxelinux.0", True),
        ("/usr/lib/syslinux/modules/bios/ldlinux.c32", "ldlinux.c32", True),
        ("/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi", "syslinux.efi", False),
        ("/usr/lib/syslinux/modules/efi64/ldlinux.e64", "ldlinux.e64", False),
    ],
}
_LOADER_PACKAGES = {BootMethod.IPXE_HTTP: "ipxe", BootMethod.PXELINUX: "pxelinux syslinux-common"}


@dataclass(frozen=True)
class Export:
    path: str
    pseudo: str
    read_only: bool
    squash: bool
    fsid: int


def paths(root: Sysroot, config: Config) -> dict[str, str]:
    """Every path written inside generated files, resolved under ROOT so a --root tree runs as is."""
    return {
        "tftp": root.sys(TFTP_ROOT),
        "http": root.sys(HTTP_ROOT),
        "registry": root.sys(registry.REGISTRY_PATH),
        "leases": root.sys(config.network.leases_file),
        "dns_hosts": root.sys(DNS_HOSTS),
        "lease_hook": root.sys(LEASE_HOOK),
        "queue": root.sys(leasequeue.QUEUE_DIR),
        "forgotten": root.sys(forgotten.FORGOTTEN_PATH),
        "ganesha_state": root.sys(nfs.GANESHA_STATE),
        "nginx_site": root.sys(nginx.SITE_PATH),
        "nginx_state": root.sys(NGINX_STATE),
        "host_keys": root.sys(keybundles.BUNDLES_DIR),
        "run": root.sys(RUN_DIR),
        "log": root.sys(LOG_DIR),
    }


def http_url(config: Config) -> str:
    port = config.boot.http_port
    return f"http://{config.network.ip}" + ("" if port == 80 else f":{port}")


def kernel_cmdline(root: Sysroot, config: Config, image: PublishedImage) -> str:
    """NFS root, read-only, with the tmpfs overlay (the initramfs 'rootovl' script) on top."""
    parts = [
        "boot=nfs",
        "root=/dev/nfs",
        f"nfsroot={config.network.ip}:{root.sys(image.root)},vers=3,tcp",
        "ip=dhcp",
        "ro",
        "rootovl",
        "net.ifnames=0",
        "panic=30",
        # the initramfs fetches this once the root is mounted: the status's root-mounted stage
        f"kestrel.mounted={http_url(config)}{bootlog.MOUNTED_PATH}",
        config.boot.cmdline,
        image.cmdline,
    ]
    return " ".join(p for p in parts if p)


def exports(root: Sysroot, config: Config, images: list[PublishedImage]) -> list[Export]:
    """Homes, hostfiles and IMAGES (current versions first, then older kept ones, as /images/NAME/VERSION)."""
    found = [
        Export(root.sys(config.nfs.home), "/home", read_only=False, squash=True, fsid=1),
        Export(root.sys(hostfiles.HOSTFILES_DIR), "/hostfiles", read_only=True, squash=True, fsid=2),
    ]
    used = {1, 2}
    for image in images:
        # per version, never moved: ganesha refuses a reload that changes an export's pseudo path
        pseudo = f"/images/{image.name}/{image.version}"
        fsid = export_id(image.name, image.version, used)
        used.add(fsid)
        found.append(Export(root.sys(image.root), pseudo, read_only=True, squash=False, fsid=fsid))
    for e in found:
        if any(c.isspace() or c in '"#\\' for c in e.path):
            raise InputError(f"{e.path}: an exported path cannot hold spaces, quotes, '#' or '\\'")
    return found


def export_id(name: str, version: str, used: set[int]) -> int:
    """The same id (NFS fsid, ganesha Export_Id) for a version every time: NFS file handles carry it, so a
    renumbering would break the mounts of running nodes. 1000..64999 (Export_Id is 16 bits)."""
    fsid = 1000 + zlib.crc32(f"{name}/{version}".encode()) % 64000
    while fsid in used:
        fsid = 1000 + (fsid - 1000 + 1) % 64000
    return fsid


def plan_frontend(root: Sysroot, config: Config, config_path: Path) -> Plan:
    nodes = registry.load_registry(root)
    images = [i for i in store.published_images(root) if i.bootable]
    plan = plan_files(
        root, desired_files(root, config, config_path, nodes, images), owned=_OWNED, directories=_directories(config)
    )
    if slurm_conf.enabled(config):
        # its folders and key first: slurmctld needs them before slurm.conf makes it reload
        key = slurm_controller.key_plan(root)
        plan.steps[:0] = [*slurm_controller.directories(root), *key.steps]
        plan.merge(Plan([], key.actions))
    if step := firewall.load_step(root, config, nodes):
        plan.add(step)  # after the files: the table loaded is the one just written
    plan.merge(homes.plan_keys_out_of_homes(root, config))
    return plan


# Node files that go away with their node (node_files plans them).
NODE_OWNED = [
    (f"{TFTP_ROOT}/pxelinux.cfg", "01-*"),
    *gateway.OWNED,
    (str(Path(firewall.FIREWALL_PATH).parent), Path(firewall.FIREWALL_PATH).name),
    (keybundles.BUNDLES_DIR, "*"),
]
_OWNED = [
    *NODE_OWNED,
    (f"{HTTP_ROOT}/boot", "*.ipxe"),
    ("/etc/exports.d", "kestrel.exports"),
    ("/etc/ganesha", "kestrel.conf"),
    ("/etc/ganesha", "kestrel-exports.conf"),
    (str(Path(nfs.GANESHA_DROPIN).parent), "kestrel.conf"),
    (str(Path(dnsmasq.DROPIN).parent), "kestrel.conf"),
    (str(Path(slurm_controller.SLURMCTLD_DROPIN).parent), "kestrel.conf"),
    ("/etc/kestrel", "nginx.conf"),
    (str(Path(SERVICE_MODE_PATH).parent), Path(SERVICE_MODE_PATH).name),
    units.OWNED,
    (str(Path(userkeys.CLIENT_CONFIG).parent), Path(userkeys.CLIENT_CONFIG).name),
]


def _directories(config: Config) -> list[str]:
    return [
        config.nfs.home,
        hostfiles.HOSTFILES_DIR,
        TFTP_ROOT,
        HTTP_ROOT,
        RUN_DIR,
        LOG_DIR,
        nfs.GANESHA_STATE,
        NGINX_STATE,
        str(Path(config.network.leases_file).parent),
        leasequeue.QUEUE_DIR,
    ]


def _context(root: Sysroot, config: Config, images: list[PublishedImage]) -> dict:
    names = [i.name for i in images]
    default = config.nodes.default_image if config.nodes.default_image in names else (names or [""])[0]
    return dict(
        config=config,
        paths=paths(root, config),
        images=images,
        default_image=default,
        http_url=http_url(config),
        netmask=config.network.network.netmask,
        range=config.network.dhcp_range,
        slurm=slurm_conf.enabled(config),
        network=str(config.network.network),
        network_address=str(config.network.network.network_address),
        forward_dns=root.uses_systemd,
        gateway_site=gateway.nginx_include(root, config),
    )


def desired_files(root: Sysroot, config: Config, config_path: Path, nodes: list[Node], images: Images) -> list[Desired]:
    """Every file of the frontend: the services' own, then those that follow from the nodes."""
    ctx = _context(root, config, images)
    out = [
        Desired(dnsmasq.CONF_PATH, encode(render(root, "dnsmasq.conf", **ctx)), on_change=("dnsmasq", Action.RESTART)),
        Desired(LEASE_HOOK, encode(render(root, "lease-hook", **ctx)), mode=0o755),
        Desired(nginx.SITE_PATH, encode(render(root, "nginx-site.conf", **ctx)), on_change=("nginx", Action.RELOAD)),
    ]
    if root.uses_systemd:  # restarts Debian's dnsmasq when it dies; the lab revives its own (services.apply)
        dropin = encode(render(root, "dnsmasq.service.conf"))
        out.append(Desired(dnsmasq.DROPIN, dropin, on_change=("dnsmasq", Action.RESTART)))
    else:  # the lab's own nginx; a real frontend's is Debian's, which includes the site
        out.append(
            Desired(
                nginx.STANDALONE_PATH, encode(render(root, "nginx.conf", **ctx)), on_change=("nginx", Action.RESTART)
            )
        )
    if root.services is not usual_services(root.root):
        out.append(Desired(SERVICE_MODE_PATH, encode(f"{root.services}\n")))
    if root.read(registry.REGISTRY_PATH) is None:
        # dnsmasq wants its hostsfile to exist; the registry itself belongs to kestrel-nodes.
        out.append(Desired(registry.REGISTRY_PATH, encode(registry.format_registry([]))))
    out += _nfs_files(root, config, images, ctx)
    out += units.unit_files(root, config)
    out += _boot_files(root, config, images, ctx)
    if slurm_conf.enabled(config):
        out += slurm_controller.desired_files(root, config, nodes)
    if userkeys.enabled(config):
        out.append(Desired(userkeys.CLIENT_CONFIG, encode(userkeys.client_config(userkeys.USER_KEYS_DIR))))
    return out + _node_files(root, config, nodes, images, nodestate.load_states(root), ctx)


def node_files(root: Sysroot, config: Config, nodes: list[Node], images: Images, states: States) -> list[Desired]:
    """Only the files that follow from the nodes (what a registry change rewrites, on the lease hook's path):
    both hosts files, the hostfiles, the per-MAC pxelinux menus, the gateway's config and the firewall's table."""
    return _node_files(root, config, nodes, images, states, _context(root, config, images))


def _node_files(
    root: Sysroot, config: Config, nodes: list[Node], images: Images, states: States, ctx: dict
) -> list[Desired]:
    hosts_body = render(root, "hosts-block", **ctx, nodes=nodes)
    out = [
        Desired(DNS_HOSTS, encode(hosts_body), on_change=("dnsmasq", Action.RELOAD)),
        Desired(
            ETC_HOSTS,
            encode(replace_block(decode(root.read(ETC_HOSTS)) or "", hosts_body, root.sys(ETC_HOSTS))),
            mode=None,
        ),
    ]
    if config.boot.method is BootMethod.PXELINUX:
        out += _pxelinux_node_files(root, config, nodes, images, ctx)
    out += gateway.desired_files(root, config, nodes, states)
    out += firewall.desired_files(root, config, nodes)
    out += keybundles.desired_files(root, config, nodes)
    return out + hostfiles.desired_hostfiles(root, config, nodes, states)


def _nfs_files(root: Sysroot, config: Config, images: list[PublishedImage], ctx: dict) -> list[Desired]:
    found = exports(root, config, images + store.older_versions(root, images))
    if config.nfs.server is NfsServer.KERNEL:
        return [
            Desired(
                nfs.EXPORTS_PATH,
                encode(render(root, "exports", **ctx | {"exports": found})),
                on_change=("nfs-kernel", Action.RELOAD),
            )
        ]
    text = render(
        root,
        "ganesha.conf",
        **ctx | {"exports_file": root.sys(nfs.GANESHA_EXPORTS), "plugins_dir": nfs.GANESHA_PLUGINS},
    )
    listed = render(root, "ganesha-exports.conf", **ctx | {"exports": found})
    unit = render(root, "nfs-ganesha.service.conf", config_file=root.sys(nfs.GANESHA_PATH))
    out = [
        Desired(nfs.GANESHA_PATH, encode(text), on_change=("nfs-ganesha", Action.RESTART)),
        Desired(nfs.GANESHA_EXPORTS, encode(listed), on_change=("nfs-ganesha", Action.RELOAD)),
    ]
    if root.uses_systemd:  # points Debian's unit at Kestrel's config; the lab starts ganesha itself
        out.append(Desired(nfs.GANESHA_DROPIN, encode(unit), on_change=("nfs-ganesha", Action.RESTART)))
    return out


def _boot_files(root: Sysroot, config: Config, images: list[PublishedImage], ctx: dict) -> list[Desired]:
    method = config.boot.method
    out = [Desired(f"{TFTP_ROOT}/{name}", data) for name, data in _loaders(method)]
    cmdlines = {i.name: kernel_cmdline(root, config, i) for i in images}
    if method is BootMethod.IPXE_HTTP:
        out.append(Desired(f"{HTTP_ROOT}/boot.ipxe", encode(render(root, "boot.ipxe", **ctx))))
        for image in images:
            text = render(root, "image.ipxe", **ctx | {"image": image, "cmdline": cmdlines[image.name]})
            out.append(Desired(f"{HTTP_ROOT}/boot/{image.name}.ipxe", encode(text)))
        return out
    out.append(
        Desired(
            f"{TFTP_ROOT}/pxelinux.cfg/default", encode(render(root, "pxelinux.cfg", **ctx | {"cmdlines": cmdlines}))
        )
    )
    return out


def _pxelinux_node_files(
    root: Sysroot, config: Config, nodes: list[Node], images: list[PublishedImage], ctx: dict
) -> list[Desired]:
    """A menu per node whose image is not the default one (pxelinux reads pxelinux.cfg/01-MAC first)."""
    by_name = {i.name: i for i in images}
    out = []
    for node in nodes:
        chosen = by_name.get(node.image)
        if chosen is None or chosen.name == ctx["default_image"]:
            continue
        text = render(
            root,
            "pxelinux-node.cfg",
            **ctx | {"node": node, "image": chosen, "cmdline": kernel_cmdline(root, config, chosen)},
        )
        out.append(Desired(f"{TFTP_ROOT}/pxelinux.cfg/01-{node.mac.replace(':', '-')}", encode(text)))
    return out


def _loaders(method: BootMethod) -> list[tuple[str, bytes]]:
    found = []
    for source, name, required in _LOADERS[method]:
        try:
            found.append((name, Path(source).read_bytes()))
        except FileNotFoundError:
            if required:
                raise CommandError(f"{source} is missing: install {_LOADER_PACKAGES[method]}") from None
    return found
