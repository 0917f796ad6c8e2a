"""The batch cluster works end to end: nodes idle, jobs in the CHOS environment they ask for, accounting."""

import re
import shlex
import time

import pytest
import testinfra

testinfra_hosts = ["podman://molecule-head"]
NODES = ("molecule-c1", "molecule-c2")
BULLSEYE = re.compile(r"^11\.\d+$")
BOOKWORM = re.compile(r"^12\.\d+$")


def as_user(host, command, user="physicist"):
    return host.run(f"su - {user} -c {shlex.quote(command)}")


def on_nodes(command):
    for node in NODES:
        testinfra.get_host(f"podman://{node}").check_output(command)


def test_nodes_idle(host):
    out = host.check_output("sinfo --noheader --Node --format='%N %P %t'")
    assert sorted(out.splitlines()) == ["molecule-c1 chos* idle", "molecule-c2 chos* idle"]


def test_srun_default_environment(host):
    assert BOOKWORM.match(host.check_output("srun -p chos cat /etc/debian_version"))


def test_srun_chos_bullseye(host):
    assert BULLSEYE.match(host.check_output("CHOS=bullseye srun -p chos cat /etc/debian_version"))


def test_sbatch_chos_without_wrapper(host):
    host.check_output("install -d -o physicist /home/physicist/t")
    on_nodes("install -d -o physicist /home/physicist/t")
    host.check_output("printf '#!/bin/sh\\ncat /etc/debian_version\\nexit 3\\n' > /home/physicist/t/job.sh")
    res = as_user(host, "cd ~/t && sbatch --wait --export=ALL,CHOS=bullseye -w molecule-c1 -o job.out job.sh")
    assert res.rc == 3, res.stderr  # the script's exit code is the job's
    out = testinfra.get_host("podman://molecule-c1").check_output("cat /home/physicist/t/job.out")
    assert BULLSEYE.match(out)


def test_user_dot_chos_honoured_and_overridden(host):
    on_nodes("echo bullseye > /home/physicist/.chos && chown physicist /home/physicist/.chos")
    try:
        assert BULLSEYE.match(as_user(host, "srun -p chos cat /etc/debian_version").stdout.strip())
        assert BOOKWORM.match(as_user(host, "CHOS=bookworm srun -p chos cat /etc/debian_version").stdout.strip())
    finally:
        on_nodes("rm -f /home/physicist/.chos")


def test_unknown_environment_is_a_job_error_listing_envs(host):
    res = host.run("CHOS=nosuch srun -p chos cat /etc/debian_version")
    assert res.rc == 2
    assert "unknown CHOS environment 'nosuch'" in res.stderr
    assert "bookworm, bullseye" in res.stderr


ACCT_JOB = """#!/usr/bin/python3
import os, time
buf = bytearray(64 << 20)
with open("/tmp/acct.bin", "wb") as f:
    f.write(os.urandom(16 << 20))
    f.flush()
    os.fsync(f.fileno())
while time.process_time() < 6:  # 6 s of CPU, however busy the machine is (make test converges the site beside it)
    pass
os.remove("/tmp/acct.bin")
"""


def test_sacct_has_cpu_memory_and_io(host):
    host.check_output(f"cat > /tmp/acct.py <<'EOF'\n{ACCT_JOB}EOF")
    res = as_user(host, "cd /tmp && sbatch --parsable --wait -o /dev/null /tmp/acct.py")
    assert res.rc == 0, res.stderr
    job_id = res.stdout.strip()
    fields = "JobID,State,TotalCPU,MaxRSS,TRESUsageOutTot"
    for _ in range(30):  # slurmctld sends the job's record to slurmdbd shortly after it ends
        out = host.check_output(f"sacct --noheader --parsable2 --jobs={job_id} --format={fields}")
        rows = [line.split("|") for line in out.splitlines()]
        if rows and rows[0][1] == "COMPLETED" and any(r[3] for r in rows[1:]):
            break
        time.sleep(1)
    assert rows[0][1] == "COMPLETED"
    minutes, seconds = rows[0][2].split(":")[-2:]
    assert int(minutes) * 60 + float(seconds) >= 4  # TotalCPU of a loop that burns 6 s of CPU
    batch = next(r for r in rows if r[0].endswith(".batch"))
    assert batch[3].endswith("K") and int(batch[3][:-1]) > 64 * 1024  # MaxRSS above the 64 MiB buffer
    assert int(dict(kv.split("=") for kv in batch[4].split(","))["fs/disk"]) >= 16 << 20  # bytes written


@pytest.mark.parametrize(("user", "account"), [("root", "atlas"), ("physicist", "atlas"), ("theorist", "theory")])
def test_users_have_an_account(host, user, account):
    out = host.check_output(f"sacctmgr --noheader --parsable2 list associations user={user} format=account")
    assert account in out.split()


def test_the_projects_have_their_shares_and_qos(host):
    out = host.check_output("sacctmgr --noheader --parsable2 list associations format=account,user,fairshare,qos")
    rows = {(r[0], r[1]): r[2:] for r in (line.split("|") for line in out.splitlines())}
    assert rows[("atlas", "")][0] == "2" and rows[("theory", "")] == ["1", "theory"]
    qos = host.check_output("sacctmgr --noheader --parsable2 list qos theory format=name,maxwall,maxjobspu,flags")
    assert qos.split("|") == ["theory", "00:10:00", "20", "DenyOnLimit"]
    refused = as_user(host, "sbatch -p chos --time=00:20:00 --wrap true", user="theorist")
    assert refused.rc != 0 and "Job violates accounting/QOS policy" in refused.stderr, refused.stderr


# The exporter listens on the head's site address (magellan_site_address: here its name, which podman resolves).
SCRAPE = "import urllib.request; print(urllib.request.urlopen('http://molecule-head:9811/metrics').read().decode())"


PHYSICIST_CPU = re.compile(r'magellan_accounting_cpu_seconds_total\{[^}]*user="physicist"[^}]*\} [1-9]')


def test_accounting_exporter_reports_the_jobs(host):
    # sacct is polled every 15 s in the background: a job that was still running at one poll counts at the next
    for _ in range(60):
        out = host.run(f"python3 -c {shlex.quote(SCRAPE)}").stdout
        if "magellan_accounting_jobs_total{" in out and PHYSICIST_CPU.search(out):
            break
        time.sleep(1)
    assert PHYSICIST_CPU.search(out), out
    assert "magellan_accounting_up" in out and re.search(r"^magellan_accounting_up\{.*\} 1\.0$", out, re.M)
    # sinfo's node states: both compute nodes in partition chos, responding.
    states = re.findall(r'^magellan_accounting_node_state\{[^}]*partition="chos",slurm_node="([^"]+)"', out, re.M)
    assert len(set(states)) == 2, out
    assert re.findall(r"^magellan_accounting_node_responding\{[^}]*\} (\S+)$", out, re.M) == ["1.0", "1.0"], out
