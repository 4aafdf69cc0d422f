"""Where the files Kestrel ships live, inside the installed package: phase scripts, image definitions and the
default /etc/kestrel. In the repository they sit at the top level (phases/, images/, etc-kestrel/); kestrel/data/
links to them (what an editable install sees), and a wheel carries copies with their modes (setup.cfg's
package_data; tests/integration/test_wheel.py installs one)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
PHASES = DATA / "phases"
IMAGES = DATA / "images"
ETC_KESTREL = DATA / "etc-kestrel"
