"""`testbed dashboards push` against a real Grafana: `make test-grafana GRAFANA_URL=... GRAFANA_TOKEN=...` (a
service-account token with the Editor role). Not part of `make test`: these machines have no Grafana. It runs the
recorded-API tests' cases that can run on a real server without harm: a first push, a second one that must save
nothing, a dry run, and a token Grafana refuses. It leaves the dashboards in their folders, as a site's push does."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.unit.test_grafana_push import UIDS, push  # noqa: F401 - push is the shared fixture

URL = os.environ.get("GRAFANA_URL", "")
TOKEN = os.environ.get("GRAFANA_TOKEN", "")


@pytest.fixture(autouse=True)
def _grafana_given() -> None:
    if not URL or not TOKEN:
        pytest.fail("set GRAFANA_URL and GRAFANA_TOKEN (an Editor service-account token) for these tests")


def test_a_real_grafana_takes_every_dashboard_once(push: Any) -> None:  # noqa: F811
    rc, out = push(URL, token=TOKEN)
    assert rc == 0, out
    rc, out = push(URL, token=TOKEN)
    assert rc == 0 and out.count("unchanged, left as it is") == len(UIDS), out
    rc, out = push(URL, "--dry-run", token=TOKEN)
    assert rc == 0 and "(dry run: nothing is saved)" in out and out.count("unchanged") == len(UIDS), out


def test_a_real_grafana_refuses_a_bad_token(push: Any) -> None:  # noqa: F811
    rc, out = push(URL, token="not-a-token")
    assert rc == 1 and f"Grafana at {URL.rstrip('/')} refused the token" in out, out
