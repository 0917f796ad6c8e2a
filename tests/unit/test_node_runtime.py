"""The exporters as the nodes run them: Debian's Python with Debian's prometheus client (python3-prometheus-client
0.16, role magellan_python), not the venv's newer one. A name only the newer client has (CONTENT_TYPE_PLAIN_0_0_4 in
exporters/web.py once) passed every other unit test and stopped every exporter on the nodes."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = Path("/usr/bin/python3")
SCRIPT = f"""
import re, sys
sys.path.insert(0, {str(REPO)!r})
import prometheus_client
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from exporters import accounting, common, job, storage, virt, web
from exporters.paths import Paths
from exporters.storage_md import MdCollector

tree = Paths(procfs={str(REPO / "tests/fixtures/storage/procfs/proc")!r},
             sysfs={str(REPO / "tests/fixtures/storage/procfs/sys")!r})

def scrape():
    def build(problem):
        return [storage.DiskstatsCollector(tree, "n1", problem, re.compile(storage.DEVICE_EXCLUDE)),
                MdCollector(tree, "n1", problem)]
    return common.registry([storage.Collector("n1", build, clock=lambda: 1.0, timer=lambda: 0.0)], tree.self_procfs)

moving = re.compile(rb"^process_.*$", re.M)
assert moving.sub(b"", web.exposition(scrape())) == moving.sub(b"", generate_latest(scrape()))
print(prometheus_client.__file__)
"""


def test_the_exporters_import_and_scrape_with_debians_prometheus_client(tmp_path: Path) -> None:
    proc = subprocess.run([str(DEBIAN_PYTHON), "-I", "-c", SCRIPT], capture_output=True, text=True, cwd=tmp_path,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith("/usr/lib/python3/dist-packages/prometheus_client/"), proc.stdout
