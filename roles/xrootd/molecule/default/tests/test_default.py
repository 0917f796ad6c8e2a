"""The server from a client's side: it serves the export over root://, byte for byte, and refuses writes."""

import hashlib

from magellan import contract

testinfra_hosts = ["podman://molecule-xrootd"]
PORT = contract.PORTS["xrootd"]
URL = f"root://localhost:{PORT}/"
CONTENT = b"magellan xrootd " * 4096  # prepare.yml's file


def test_the_instance_runs_enabled_with_the_exports_read_only(host):
    service = host.service("xrootd@magellan")
    assert service.is_running and service.is_enabled
    config = host.file("/etc/xrootd/xrootd-magellan.cfg")
    assert config.user == "xrootd" and f"xrd.port {PORT}" in config.content_string
    assert "all.export /srv/exports r/o" in config.content_string.splitlines()
    assert host.socket(f"tcp://0.0.0.0:{PORT}").is_listening or host.socket(f"tcp://:::{PORT}").is_listening


def test_a_file_is_read_back_through_root_byte_for_byte(host):
    listing = host.check_output(f"xrdfs {URL} ls /srv/exports/data")
    assert listing.split() == ["/srv/exports/data/events.bin"]
    host.check_output(f"xrdcp --force --nopbar {URL}/srv/exports/data/events.bin /tmp/copy.bin")
    copied = host.check_output("sha256sum /tmp/copy.bin").split()[0]
    assert copied == hashlib.sha256(CONTENT).hexdigest()


def test_a_write_is_refused(host):
    result = host.run(f"xrdcp --nopbar /etc/hostname {URL}/srv/exports/data/planted")
    assert result.rc != 0, result.stdout
    assert not host.file("/srv/exports/data/planted").exists
    assert "marked read/only" in result.stderr + result.stdout  # XRootD's answer to a write under an r/o export
