"""The lab's tree: a complete --root (default /var/lib/kestrel-lab) with its own config, state and shell exports.

Its config and state files are written through plans (plan_tree, plan_state). The tree survives
`kestrel-lab down`, so the built image is reused by the next `up`.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

from kestrel import runner, shipped
from kestrel.config import CONFIG_PATH, load_config
from kestrel.errors import CommandError, InputError
from kestrel.net.netns import Topology
from kestrel.nodes import registry, ssh
from kestrel.plan import Desired, FileChange, Plan, apply_changes, plan_files
from kestrel.sysroot import Sysroot

logger = logging.getLogger(__name__)


LAB_ROOT = "/var/lib/kestrel-lab"


DEFAULT_PREFIX = "klab-"


STATE_PATH = "/run/kestrel/lab.json"


SHIPPED_ETC = shipped.ETC_KESTREL


OVERLAY_MTU = 1450  # the lab's underlay veths have 1500: VXLAN over IPv4 takes 50

LAB_MODULES = ["core", "nfsroot", "sshd", "openmpi", "mpich"]


@dataclass
class LabState:
    prefix: str
    namespaces: list[str] = field(default_factory=list)


def check_lab_root(root: Sysroot) -> Sysroot:
    if root.is_host:
        raise InputError(f"the lab needs a tree of its own, not / (for example --root {LAB_ROOT})")
    return root


def names_for(prefix: str) -> tuple[str, str]:
    """(namespace, bridge) of a lab with PREFIX."""
    topo = Topology(prefix)
    return topo.name("fe"), topo.name("br0")


def lab_config_text(
    shipped: str, prefix: str, fresh: bool, modules: list[str] | None = None, servers: dict | None = None
) -> str:
    """The lab's kestrel.yaml: SHIPPED with the lab's namespace and bridge (and, when FRESH, the lab's choices),
    MODULES added to its modules (kept for later ups: kestrel-lab up --modules), SERVERS (servers: and switch:,
    kestrel-lab up --servers) in place of the ones it had, with the overlay's MTU for the nodes.

    Round-trip YAML, so an admin's comments and edits of the lab's config survive a change of prefix.
    """
    ns, bridge = names_for(prefix)
    yaml = YAML(typ="rt")
    data = yaml.load(shipped) or {}
    net = data.setdefault("network", {})
    net["interface"], net["netns"] = bridge, ns
    if fresh:
        net["ipv6_prefix"] = "fd10::/64"
        data.setdefault("nfs", {})["server"] = "ganesha"
        boot = data.setdefault("boot", {})
        boot["menu_timeout"] = 1
        # qemu nodes have no display, and kernel chatter on the emulated serial port costs boot time.
        boot["cmdline"] = "console=ttyS0,115200 quiet"
        data["modules"] = yaml.load(json.dumps(LAB_MODULES))
    if servers is not None:
        data["servers"] = yaml.load(json.dumps(servers["servers"]))
        data["switch"] = yaml.load(json.dumps(servers["switch"]))
        net["mtu"] = OVERLAY_MTU
    for module in modules or []:
        have = data.setdefault("modules", yaml.load(json.dumps(LAB_MODULES)))
        if module not in have:
            have.append(module)
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def plan_tree(
    root: Sysroot, prefix: str, modules: list[str] | None = None, servers: dict | None = None
) -> tuple[Plan, str]:
    """ROOT/etc/kestrel from the shipped defaults on the first run (no config yet), and a config that names this
    lab's devices and has MODULES on: the plan (pure given the disk) and the config's text."""
    old = root.read(CONFIG_PATH)
    wanted = []
    if old is None:
        if not SHIPPED_ETC.is_dir():
            raise CommandError(f"{SHIPPED_ETC}: the shipped /etc/kestrel is missing: reinstall Kestrel")
        for path in sorted(SHIPPED_ETC.rglob("*")):
            if path.is_file() and path.relative_to(SHIPPED_ETC) != Path("kestrel.yaml"):
                wanted.append(
                    Desired(
                        f"/etc/kestrel/{path.relative_to(SHIPPED_ETC)}",
                        path.read_bytes(),
                        mode=path.stat().st_mode & 0o7777,
                    )
                )
        text = lab_config_text((SHIPPED_ETC / "kestrel.yaml").read_text(), prefix, True, modules, servers)
    else:
        text = lab_config_text(old.decode(), prefix, False, modules, servers)
    wanted.append(Desired(CONFIG_PATH, text.encode(), mode=None if old is not None else 0o644))
    return plan_files(root, wanted), text


def prepare_tree(root: Sysroot, prefix: str, modules: list[str] | None = None, servers: dict | None = None) -> Path:
    """Carry out plan_tree, once the config it makes is known to be valid."""
    plan, text = plan_tree(root, prefix, modules, servers)
    config_path = root.path(CONFIG_PATH)
    load_config(config_path, text)
    apply_changes(root, plan)
    return config_path


def load_state(root: Sysroot) -> LabState | None:
    try:
        return LabState(**json.loads(root.path(STATE_PATH).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise InputError(f"{root.path(STATE_PATH)}: not a lab state file ({e}); remove it") from None


def plan_state(root: Sysroot, state: LabState | None) -> Plan:
    """The lab's state file holding STATE (None: removed)."""
    old = root.read(STATE_PATH)
    new = json.dumps(asdict(state), indent=1).encode() if state else None
    return Plan([FileChange(STATE_PATH, old, new)] if old != new else [])


def save_state(root: Sysroot, state: LabState | None) -> None:
    apply_changes(root, plan_state(root, state))


def env_text(root: Sysroot) -> str:
    """Shell lines that point Kestrel's programs at the lab (eval "$(kestrel-lab env)")."""
    config_path = root.path(CONFIG_PATH)
    config = load_config(config_path)
    ns = config.network.netns or ""
    return (
        f"export KESTREL_ROOT={root.root}\n"
        f"export KESTREL_CONFIG={config_path}\n"
        f"export KESTREL_LAB_NETNS={ns}\n"
        f"# The cluster network lives in namespace {ns}: kestrel-nodes exec/check/wake reach it from here;\n"
        f"# other tools: ip netns exec {ns} COMMAND, or kestrel-lab ssh NODE.\n"
    )


def ssh_argv(root: Sysroot, node: str, command: list[str]) -> list[str]:
    """ssh as root to NODE from inside the lab's namespace, with the frontend's key and known_hosts."""
    config = load_config(root.path(CONFIG_PATH))
    target = registry.find_node(registry.load_registry(root), node)
    if not config.network.netns:
        raise InputError(f"{root.path(CONFIG_PATH)}: network.netns is not set: not a lab tree")
    key, known_hosts = root.path(config.nodes.ssh_key), root.path(ssh.KNOWN_HOSTS)
    options = ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    login = ["ssh", "-i", str(key), *options, "-o", f"HostKeyAlias={target.name}", f"root@{target.ip}", *command]
    return runner.netns_argv(config.network.netns, login)
