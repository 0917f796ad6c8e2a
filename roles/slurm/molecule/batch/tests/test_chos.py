"""A CHOS node of the cluster (role chos, converged here by playbooks/cluster.yml): every environment is entered
through schroot, chosen like PDSF did, exit codes pass through."""

import json

from magellan import contract

testinfra_hosts = ["podman://molecule-c1"]


def version(host, cmd, **env):
    prefix = " ".join(f"{k}={v}" for k, v in env.items())
    return host.run(f"{prefix} chos run {cmd} -- cat /etc/debian_version")


def test_schroot_knows_every_environment(host):
    out = host.check_output("schroot --list --all-chroots")
    assert "chroot:chos-bookworm" in out and "chroot:chos-bullseye" in out
    cfg = json.loads(host.file("/etc/chos/environments.json").content_string)
    assert cfg["default"] == "bookworm"


def test_list_marks_the_default(host):
    out = host.check_output("chos list")
    assert "* bookworm" in out and "  bullseye" in out


def test_flag_env_and_default(host):
    assert version(host, "-e bullseye").stdout.startswith("11.")
    assert version(host, "", CHOS="bullseye").stdout.startswith("11.")
    assert version(host, "").stdout.startswith("12.")


def test_user_dotchos_is_honoured(host):
    host.run("printf 'bullseye\\n' > /root/.chos")
    try:
        assert version(host, "").stdout.startswith("11.")
        assert version(host, "", CHOS="bookworm").stdout.startswith("12.")  # $CHOS beats ~/.chos
    finally:
        host.run("rm -f /root/.chos")


def test_unknown_environment_is_a_clear_error(host):
    run = host.run("chos run -e sl6 -- true")
    assert run.rc == 2
    assert "available: bookworm, bullseye" in run.stderr


def test_exit_codes_pass_through(host):
    assert host.run("chos run -e bullseye -- sh -c 'exit 7'").rc == 7
    assert host.run("chos run -- sh -c 'kill -TERM $$'").rc == 143


def test_binds_and_python_inside(host):
    probe = f"{contract.JOBS_DIR}/chos-probe"
    host.run(f"mkdir -p {contract.JOBS_DIR} && echo seen > {probe}")
    assert host.check_output(f"chos run -e bullseye -- cat {probe}") == "seen"
    assert host.check_output("chos run -e bullseye -- python3 -c 'import sys; print(sys.version_info[:2])'") == "(3, 9)"
    assert host.check_output("chos run -e bullseye -- ls /proc/self/status") == "/proc/self/status"
