"""The converged site run again in --check --diff mode: nothing would change, no command would run, and no secret is
shown.

One check run, not a second converge beside it: in check mode every module says whether it would change anything, so
a changed=0 recap is the modules' idempotence; and a command or shell task that would run again on the converged site
is what check mode cannot show in the recap (the module skips itself, "Command would have run if not in check mode"),
so the run's JSON results are searched for those too. What a check run cannot catch is a module whose own check mode
predicts wrong; the molecule scenarios' idempotence steps (real second converges) and `make bench`'s warm `make
testbed` (a real second converge of the whole site, its changed= count printed) cover that. The second converge beside
the check run cost make test 1,126 s on CI's machine (its TCG guests are the bottleneck); the check run alone is half.

make test runs this module right after its converge of the site; the other integration tests follow in a stage of
their own."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.inventory import Inventory, ansible_env, play_result, task_results
from tests.integration.conftest import REPO, ansible_playbook, node_shell

pytestmark = pytest.mark.integration

# What the command, shell and raw modules answer in check mode when they would have run (ansible.builtin.command);
# and what Ansible answers for a module without check mode support.
WOULD_RUN = ("Command would have run if not in check mode", "does not support check mode")


@pytest.fixture(scope="module")
def check_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """site.yml --check --diff on the converged site, its results as JSON (ansible.posix.json: one document, after
    profile_tasks' lines), with a fact cache of its own (a copy of the site's)."""
    facts = tmp_path_factory.mktemp("check-facts")
    if (REPO / ".testbed" / "facts").is_dir():
        shutil.copytree(REPO / ".testbed" / "facts", facts, dirs_exist_ok=True)
    env = ansible_env(json_result=True) | {"ANSIBLE_CACHE_PLUGIN_CONNECTION": str(facts)}
    proc: subprocess.CompletedProcess[str] = ansible_playbook("site.yml", "--check", "--diff", env_extra=env)
    return proc.stdout + proc.stderr, play_result(proc.stdout)


def results(run: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(task name, host, result) of every task and loop item of the run."""
    for name, host, result in task_results(run):
        yield name, host, result
        for item in result.get("results") or []:
            if isinstance(item, dict):
                yield name, host, item


def test_check_mode_on_a_converged_site_changes_nothing(check_run: tuple[str, dict[str, Any]]) -> None:
    output, run = check_run
    assert run["stats"], output[-4000:]
    changed = {host: s["changed"] for host, s in run["stats"].items() if s["changed"]}
    tasks = sorted({f"{host}: {name}" for name, host, r in results(run) if r.get("changed")})
    assert changed == {}, f"--check --diff reported changes: {changed}\n" + "\n".join(tasks)
    failed = {host: s for host, s in run["stats"].items() if s["failures"] or s["unreachable"]}
    assert failed == {}


def test_no_command_would_run_again_on_a_converged_site(check_run: tuple[str, dict[str, Any]]) -> None:
    """A command or shell task that is not read-only must be guarded (a when, creates/removes) so that it does not run
    on a converged site; a read-only one runs in check mode too (check_mode: false) so that what depends on it is
    checked. Either way, none is left that check mode skips as "would have run"."""
    _, run = check_run
    would_run = sorted(
        {f"{host}: {name}" for name, host, r in results(run) if any(w in str(r.get("msg", "")) for w in WOULD_RUN)}
    )
    assert would_run == []


def test_no_secret_shows_in_the_runs_output(site: Inventory, check_run: tuple[str, dict[str, Any]]) -> None:
    """The MUNGE key and the database passwords (slurmdbd's, each user's of the conditions database) never reach
    Ansible's output: not in a --check --diff run (a template's diff would show them) with every task's full result
    (the JSON callback), not in make test's own converge of the site."""
    secret_dir = REPO / ".testbed" / "secrets"
    key = node_shell(site, "head", "base64 -w0 /etc/munge/munge.key")
    assert key.returncode == 0 and len(key.stdout.strip()) > 100, key.stderr
    secrets = {"the MUNGE key (base64)": key.stdout.strip()}
    for name in ("slurmdbd-storage", "conditions-physicist", "conditions-theorist"):
        secrets[f"the password in {name}"] = (secret_dir / name).read_text().split()[0]
    outputs = {"check": check_run[0]}
    if (REPO / ".testbed" / "site.log").is_file():  # make test's converge of the site
        outputs["site.log"] = (REPO / ".testbed" / "site.log").read_text()
    leaks = [
        f"{what} in the {name} output" for name, text in outputs.items() for what, s in secrets.items() if s in text
    ]
    assert leaks == []
    names = {name for name, _, _ in results(check_run[1])}  # the tasks that handle them ran
    for task in ("Give every host the cluster key", "slurmdbd", "Write the users' option files"):
        assert any(task in name for name in names), task
