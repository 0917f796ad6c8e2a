"""The converged site converged again and run in --check --diff mode: nothing changes, and no secret is shown.

make test runs this module right after its converge of the site, beside the last molecule scenario (the guest's,
which leaves a core free), not with the other integration tests: they follow in a stage of their own."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from testbed.inventory import Inventory
from tests.integration.conftest import REPO, ansible_playbook, node_shell, recap

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def no_change_runs(
    site: Inventory, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, subprocess.CompletedProcess[str]]:
    """A second converge and a --check --diff run of the converged site, side by side: neither may change anything,
    and each spends much of its time waiting for its tasks on the guests (alone: 290 s and about 210 s; side by
    side: 329-387 s, 60 % of the two cores busy). The check run has its own fact cache: two runs writing one jsonfile
    cache can read each other's half-written files."""
    facts = tmp_path_factory.mktemp("check-facts")
    if (REPO / ".testbed" / "facts").is_dir():
        shutil.copytree(REPO / ".testbed" / "facts", facts, dirs_exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        converge = pool.submit(ansible_playbook, "site.yml")
        check = pool.submit(
            ansible_playbook, "site.yml", "--check", "--diff", env_extra={"ANSIBLE_CACHE_PLUGIN_CONNECTION": str(facts)}
        )
        return {"converge": converge.result(), "check": check.result()}


def test_second_converge_changes_nothing(no_change_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    proc = no_change_runs["converge"]
    counters = recap(proc.stdout)
    assert counters, proc.stdout[-2000:]
    changed = {host: c["changed"] for host, c in counters.items() if c.get("changed")}
    assert changed == {}, f"second converge changed something: {changed}\n{proc.stdout[-4000:]}"


def test_no_secret_shows_in_the_runs_output(
    site: Inventory, no_change_runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    """The MUNGE key and the database passwords (slurmdbd's, each user's of the conditions database) never reach
    Ansible's output: not in a converge, not in a --check --diff run (a template's diff would show them), not in make
    test's own converge of the site."""
    secret_dir = REPO / ".testbed" / "secrets"
    key = node_shell(site, "head", "base64 -w0 /etc/munge/munge.key")
    assert key.returncode == 0 and len(key.stdout.strip()) > 100, key.stderr
    secrets = {"the MUNGE key (base64)": key.stdout.strip()}
    for name in ("slurmdbd-storage", "conditions-physicist", "conditions-theorist"):
        secrets[f"the password in {name}"] = (secret_dir / name).read_text().split()[0]
    outputs = {name: p.stdout + p.stderr for name, p in no_change_runs.items()}
    if (REPO / ".testbed" / "site.log").is_file():  # make test's converge of the site
        outputs["site.log"] = (REPO / ".testbed" / "site.log").read_text()
    leaks = [
        f"{what} in the {name} output" for name, text in outputs.items() for what, s in secrets.items() if s in text
    ]
    assert leaks == []
    for name in ("converge", "check"):  # the tasks that handle them ran in both
        assert "Give every host the cluster key" in outputs[name] and "slurmdbd" in outputs[name], name
        assert "Write the users' option files" in outputs[name], name


def test_check_mode_on_a_converged_site_changes_nothing(
    no_change_runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    proc = no_change_runs["check"]
    changed = {host: c["changed"] for host, c in recap(proc.stdout).items() if c.get("changed")}
    assert changed == {}, f"--check --diff reported changes: {changed}\n{proc.stdout[-4000:]}"
