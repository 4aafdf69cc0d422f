"""The lab's tree: a complete --root (default /var/lib/kestrel-lab) with its own config, state and shell exports.

The tree survives `kestrel-lab down`, so the built image is reused by the next `up`.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

from kestrel import shipped
from kestrel.config import CONFIG_PATH, load_config
from kestrel.errors import CommandError, InputError
from kestrel.net.netns import Topology
from kestrel.nodes import registry, ssh
from kestrel.sysroot import Sysroot, atomic_write

logger = logging.getLogger(__name__)


LAB_ROOT = "/var/lib/kestrel-lab"


DEFAULT_PREFIX = "klab-"


STATE_PATH = "/run/kestrel/lab.json"


SHIPPED_ETC = shipped.ETC_KESTREL


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


def lab_config_text(shipped: str, prefix: str, fresh: bool) -> str:
    """The lab's kestrel.yaml: SHIPPED with the lab's namespace and bridge (and, when FRESH, the lab's choices).

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
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def prepare_tree(root: Sysroot, prefix: str) -> Path:
    """ROOT/etc/kestrel from the shipped defaults on the first run; the config names this lab's devices."""
    etc = root.path("/etc/kestrel")
    config_path = root.path(CONFIG_PATH)
    fresh = not config_path.exists()
    if fresh:
        if not SHIPPED_ETC.is_dir():
            raise CommandError(f"{SHIPPED_ETC}: the shipped /etc/kestrel is missing: reinstall Kestrel")
        shutil.copytree(SHIPPED_ETC, etc, dirs_exist_ok=True)
        logger.info(f"Created the lab's tree {root.root}")
    text = config_path.read_text()
    new = lab_config_text(text if not fresh else (SHIPPED_ETC / "kestrel.yaml").read_text(), prefix, fresh)
    if new != text:
        atomic_write(config_path, new.encode())
    load_config(config_path)
    return config_path


def load_state(root: Sysroot) -> LabState | None:
    try:
        return LabState(**json.loads(root.path(STATE_PATH).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise InputError(f"{root.path(STATE_PATH)}: not a lab state file ({e}); remove it") from None


def save_state(root: Sysroot, state: LabState) -> None:
    atomic_write(root.path(STATE_PATH), json.dumps(asdict(state), indent=1).encode())


def env_text(root: Sysroot) -> str:
    """Shell lines that point Kestrel's programs at the lab (eval "$(kestrel-lab env)")."""
    config_path = root.path(CONFIG_PATH)
    config = load_config(config_path)
    ns = config.network.netns or ""
    return (f"export KESTREL_ROOT={root.root}\n"
            f"export KESTREL_CONFIG={config_path}\n"
            f"export KESTREL_LAB_NETNS={ns}\n"
            f"# The cluster network lives in namespace {ns}: kestrel-nodes exec/check/wake reach it from here;\n"
            f"# other tools: ip netns exec {ns} COMMAND, or kestrel-lab ssh NODE.\n")


def ssh_argv(root: Sysroot, node: str, command: list[str]) -> list[str]:
    """ssh as root to NODE from inside the lab's namespace, with the frontend's key and known_hosts."""
    config = load_config(root.path(CONFIG_PATH))
    target = registry.find_node(registry.load_registry(root), node)
    if not config.network.netns:
        raise InputError(f"{root.path(CONFIG_PATH)}: network.netns is not set: not a lab tree")
    return ["ip", "netns", "exec", config.network.netns, "ssh", "-i", str(root.path(config.nodes.ssh_key)),
            "-o", f"UserKnownHostsFile={root.path(ssh.KNOWN_HOSTS)}", "-o", "StrictHostKeyChecking=yes",
            "-o", f"HostKeyAlias={target.name}", f"root@{target.ip}", *command]
