"""Host keys delivered after boot (the firewall module): a real sshd "node" that holds only the image's public key
starts with a throwaway key; the frontend pushes the image's key over SSH, then every connection pins it."""

from __future__ import annotations

import shutil
from ipaddress import IPv4Address
from pathlib import Path

from kestrel import runner, supervisor
from kestrel.config import load_config
from kestrel.frontend import hostkeys
from kestrel.net.netns import Topology
from kestrel.nodes import knownhosts, registry, ssh
from kestrel.sysroot import Sysroot
from kestrel.users import userkeys
from kestrel.users.userlist import USERS_PATH, ClusterUser, format_users
from tests.integration import sshnodes
from tests.integration.test_firewall import wait_port

NODE = registry.Node("node01", "52:54:00:10:00:01", IPv4Address("10.10.0.101"), sshnodes.IMAGE, "compute")
_LAUNCH = """set -e
mkdir -m 755 /run/sshd
mount -t overlay kt-etc -o "lowerdir=$1/etc:/etc,upperdir=$2,workdir=$3" /etc
mount --bind "$1/root" /root
mkdir -p -m 700 /run/kestrel
ssh-keygen -q -t ed25519 -N "" -C boot -f /run/kestrel/boot_host_ed25519_key
exec /usr/sbin/sshd -D -e -f "$4"
"""


def offered_key(cluster_ns: str, address: str) -> str:
    """The ed25519 host key the node's sshd shows now (ssh-keyscan from the frontend's namespace)."""
    out = runner.run(["ssh-keyscan", "-t", "ed25519", address], via=runner.Netns(cluster_ns), timeout=20).stdout
    return out.split()[-1]


def test_a_node_without_private_keys_gets_its_image_key_and_is_then_pinned(tree: Sysroot, topology: Topology) -> None:
    fe = topology.add_netns("fe")
    bridge = topology.add_bridge(fe, "br", "10.10.0.1/24")
    config_path = tree.path("/etc/kestrel/kestrel.yaml")
    text = config_path.read_text().replace("interface: eth1", f"interface: {bridge}\n  netns: {fe}")
    config_path.write_text(text.replace("modules: [core,", "modules: [firewall, core,"))
    config = load_config(config_path)
    image = sshnodes.make_image(tree)
    store = tree.path(f"{hostkeys.KEYS_DIR}/{sshnodes.IMAGE}")
    store.mkdir(parents=True)
    for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"):
        shutil.copy2(image / "etc" / "ssh" / name, store / name)
    (image / "etc" / "ssh" / "ssh_host_ed25519_key").unlink()  # the exported image: the public key only
    tree.path(registry.REGISTRY_PATH).write_text(registry.format_registry([NODE]))
    ns = topology.add_netns("n1")
    _, dev = topology.add_veth(fe, "v1", ns, "e0", master_a=bridge, address_b=f"{NODE.ip}/24")
    work = tree.path("/var/tmp/n1")
    (work / "upper").mkdir(parents=True)
    (work / "work").mkdir()
    conf = work / "sshd_config"
    conf.write_text(
        f"ListenAddress {NODE.ip}\nHostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /run/kestrel/boot_host_ed25519_key\n"
        "PidFile /run/sshd.pid\nUsePAM no\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n"
    )
    image_key = (store / "ssh_host_ed25519_key.pub").read_text().split()[1]
    # a cluster user whose key pair the frontend keeps out of the exported /home (userkeys)
    alice = ClusterUser("alice", 2001, "/bin/bash")
    tree.path(USERS_PATH).write_text(format_users([alice]))
    keys = tree.path(f"{userkeys.USER_KEYS_DIR}/alice")
    keys.mkdir(parents=True)
    runner.run(ssh.keygen_argv(str(keys / "id_ed25519"), "alice@test"))
    try:
        runner.run(["ip", "-n", ns, "link", "set", dev, "address", "52:54:00:10:00:99"])  # not its MAC yet
        argv = ["sh", "-c", _LAUNCH, "sh", str(image), str(work / "upper"), str(work / "work"), str(conf)]
        supervisor.start(tree, "n1", argv, netns=ns, private_run=True)
        assert wait_port(fe, str(NODE.ip), 22)
        assert offered_key(fe, str(NODE.ip)) != image_key  # the boot key
        [refused] = hostkeys.deliver(tree, config, [ssh.Target(NODE.name, str(NODE.ip))])
        assert not refused.ok and "not listed" in refused.why  # another MAC answers for its address: no keys
        runner.run(["ip", "-n", fe, "neigh", "flush", "all"])
        runner.run(["ip", "-n", ns, "link", "set", dev, "address", NODE.mac])
        [done] = hostkeys.deliver(tree, config, [ssh.Target(NODE.name, str(NODE.ip))])
        assert done.ok and done.changed, done.why
        assert wait_port(fe, str(NODE.ip), 22)
        assert offered_key(fe, str(NODE.ip)) == image_key
        # from now on a plain pinned pool (no vouching) reaches it, as exec, check and the Slurm join do
        entries = knownhosts.parse(f"{NODE.ip} ssh-ed25519 {image_key}\n")
        node = ssh.Target(NODE.name, str(NODE.ip))
        user_key = f"{userkeys.NODE_KEYS_DIR}/alice/id_ed25519"
        with ssh.root_pool(tree, config.nodes.ssh_key, 10, fe, entries) as pool:
            result = runner.run(["cat", "/etc/ssh/ssh_host_ed25519_key"], via=pool.on(node))
            delivered = runner.run(["cat", user_key], via=pool.on(node))
            owner = runner.run(["stat", "-c", "%u:%a", user_key], via=pool.on(node))
        assert result.stdout == (store / "ssh_host_ed25519_key").read_text()
        assert (delivered.stdout, owner.stdout) == ((keys / "id_ed25519").read_text(), "2001:600\n")
        [again] = hostkeys.deliver(tree, config, [ssh.Target(NODE.name, str(NODE.ip))])
        assert again.ok and not again.changed
    finally:
        supervisor.stop(tree, "n1")


def test_exported_trees_hold_no_private_key(tree: Sysroot, tmp_path: Path) -> None:
    """The image script with the firewall module: the image keeps the public keys only, the frontend the pair."""
    config_path = tree.path("/etc/kestrel/kestrel.yaml")
    config_path.write_text(config_path.read_text().replace("modules: [core,", "modules: [firewall, core,"))
    config = load_config(config_path)
    image = tree.path("/srv/kestrel/images/default.versions/1")
    (image / "etc" / "ssh").mkdir(parents=True)
    script = Path(__file__).resolve().parents[2] / "phases/node/configure.d/sshd_host-keys"
    env = {
        "KESTREL_IMAGE_ROOT": str(image),
        "KESTREL_ROOT": str(tree.root),
        "KESTREL_IMAGE": "default",
        "KESTREL_CONFIG_JSON": config.to_json(),
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
    }
    runner.run([str(script)], env=env)
    assert private_keys_under(image) == []
    assert (image / "etc/ssh/ssh_host_ed25519_key.pub").exists()
    assert (
        "HostKey /run/kestrel/boot_host_ed25519_key"
        in (image / "etc/ssh/sshd_config.d/kestrel-hostkeys.conf").read_text()
    )
    unit = (image / "etc/systemd/system/kestrel-host-keys.service").read_text()
    assert (image / "etc/systemd/system/ssh.service.wants/kestrel-host-keys.service").exists()
    assert "/usr/lib/kestrel/host-keys http://10.10.0.1:8079/host-keys /etc/ssh" in unit
    assert "ssh-keygen -q -t ed25519" in unit  # the throwaway key when the fetch fails
    assert private_keys_under(tree.path(hostkeys.KEYS_DIR)) != []  # kept on the frontend
    client = image / "etc/ssh/ssh_config.d/kestrel-user-keys.conf"  # users' keys: delivered with the host keys
    assert client.read_text() == userkeys.client_config(userkeys.NODE_KEYS_DIR)
    # without the module: as before (the keys in the image), the boot key's files gone
    config_path.write_text(config_path.read_text().replace("modules: [firewall, core,", "modules: [core,"))
    runner.run([str(script)], env=env | {"KESTREL_CONFIG_JSON": load_config(config_path).to_json()})
    assert private_keys_under(image) != []
    assert not (image / "etc/ssh/sshd_config.d/kestrel-hostkeys.conf").exists()
    assert not (image / "etc/systemd/system/kestrel-host-keys.service").exists()
    assert not (image / "usr/lib/kestrel/host-keys").exists()
    assert not client.exists()


def private_keys_under(folder: Path) -> list[Path]:
    """Every file under FOLDER that holds a private key (OpenSSH, PEM RSA/EC/DSA or PKCS#8), a munge key, found
    by content, not by name."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            head = path.read_bytes()[:4096]
            if b"PRIVATE KEY-----" in head or path.name == "munge.key":
                found.append(path)
    return found
