"""A replay of an OpenStack cloud for the tier3 provider's tests: requests-mock answers openstacksdk's HTTP requests
with the recorded response bodies of tests/fixtures/openstack/ (Keystone v3, Nova 2.1 up to microversion 2.53,
Neutron v2.0, Glance v2, Cinder v3; see its README), filled in from a small in-memory state so that what one request
creates the next one lists. No cloud is contacted: every URL is under *.example.com and requests-mock refuses any
request it does not know.

The same state and routes are also served by `serve(cloud)`, a ThreadingHTTPServer on 127.0.0.1 only, for clients
in processes of their own (ansible-playbook's modules, tests/unit/test_tier3_playbook.py): http://127.0.0.1:PORT/
<service>/... stands for https://<service>.example.com/..., and the recorded URLs in the answers (catalog, version
documents) are rewritten to the loopback ones. A request the replay has no answer for is a 500 there, listed in
`cloud.errors`.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import ipaddress
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import openstack.connection
import requests_mock

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "openstack"
TOKEN = json.loads((FIXTURES / "keystone-v3-token.json").read_text())
PROJECT = TOKEN["token"]["project"]["id"]
NEUTRON_KINDS = {
    "networks": "network",
    "subnets": "subnet",
    "routers": "router",
    "security-groups": "security_group",
    "security-group-rules": "security_group_rule",
    "ports": "port",
    "floatingips": "floatingip",
}
FIXTURE_OF = {"security_group": "security-group", "security_group_rule": "security-group-rule"}


def demo_spec(tmp_path: Path) -> dict[str, Any]:
    """The Tier-3 description the tests use (provider openstack, cloud `recorded`), with an image file and a public
    key written under tmp_path."""
    image = tmp_path / "root.qcow2"
    image.write_bytes(b"QFI\xfb the certified OS tree")
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB controller\n")
    return {
        "name": "demo",
        "provider": "openstack",
        "cloud": "recorded",
        "head": {"flavour": "m1.medium"},
        "workers": {"count": 2, "flavour": "m1.large"},
        "image": {"path": str(image), "format": "qcow2"},
        "storage_gb": 50,
        "network": {"cidr": "10.213.41.0/24"},
        "controller_cidr": "203.0.113.0/24",
        "ssh": {"public_key": str(key)},
        "slurm": {"accounts": [{"name": "atlas", "users": ["alice"]}]},
    }


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def template(kind: str) -> dict[str, Any]:
    body = fixture(FIXTURE_OF.get(kind, kind))
    return copy.deepcopy(body.get(kind, body))


SERVICES = ("identity", "compute", "network", "image", "block-storage")
RECORDED = "https://{service}.example.com"  # the catalog's hosts, as recorded


class Context:
    """What a handler sets on its answer (the part of requests-mock's context the handlers use)."""

    def __init__(self) -> None:
        self.status_code = 200
        self.headers: dict[str, str] = {}


class Request:
    """A request as the handlers read it (the part of requests-mock's request they use), for the loopback server."""

    def __init__(self, method: str, url: str, body: bytes | None) -> None:
        self.method = method
        self.url = url
        self.body = body or None

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class Cloud:
    """The cloud's state (resources by kind and id) and its routes, served by requests-mock (`Cloud(mock)`) or by a
    loopback HTTP server (`serve(cloud)`, for processes of their own such as ansible-playbook's modules)."""

    def __init__(self, mock: requests_mock.Mocker | None = None) -> None:
        self.mock = mock
        self.state: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in NEUTRON_KINDS.values()}
        self.state |= {"server": {}, "keypair": {}, "image": {}, "volume": {}}
        self.failures: list[tuple[str, re.Pattern[str], int, str]] = []
        self.boot_errors: set[str] = set()  # server names that go ERROR after create
        self.history: list[tuple[str, str]] = []  # (method, recorded URL) of every request answered
        self.errors: list[str] = []  # requests the loopback server had no answer for (a handler raised)
        self._fip = 0
        discovery = {
            "https://identity.example.com/": "keystone-discovery",
            "https://compute.example.com/v2.1/": "compute-version",
            "https://compute.example.com/v2.1": "compute-version",
            "https://network.example.com/": "network-version",
            "https://image.example.com/": "image-version",
            "https://block-storage.example.com/": "block-storage-version",
            "https://block-storage.example.com/v3/": "block-storage-version",
        }
        # (method or None for any, URL regex matched whole, handler(request, context) -> JSON body or None)
        self.routes: list[tuple[str | None, re.Pattern[str], Callable[[Any, Any], Any]]] = [
            ("GET", re.compile(re.escape(url)), self._static(name)) for url, name in discovery.items()
        ]
        self.routes += [
            ("POST", re.compile(re.escape("https://identity.example.com/v3/auth/tokens")), self._token),
            (None, re.compile(r"https://network\.example\.com/v2\.0/.*"), self._neutron),
            (None, re.compile(r"https://compute\.example\.com/v2\.1/.+"), self._nova),
            (None, re.compile(r"https://image\.example\.com/v2/.*"), self._glance),
            (None, re.compile(r"https://block-storage\.example\.com/v3/.+"), self._cinder),
        ]
        if mock is not None:
            for method, pattern, handler in self.routes:
                mock.register_uri(
                    method or requests_mock.ANY,
                    re.compile(pattern.pattern + r"(\?.*)?$"),
                    json=self._recorded(handler),
                )

    @staticmethod
    def _static(name: str) -> Callable[[Any, Any], Any]:
        return lambda request, context: fixture(name)

    @staticmethod
    def _token(request: Any, context: Any) -> Any:
        context.status_code = 201
        context.headers["X-Subject-Token"] = "gAAAAAB-recorded-token"
        return TOKEN

    def _recorded(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def answer(request: Any, context: Any) -> Any:
            self.history.append((request.method, request.url))
            return handler(request, context)

        return answer

    def dispatch(self, request: Any, context: Any) -> Any:
        """The answer to a request whose URL is a recorded one (https://<service>.example.com/...)."""
        path = request.url.split("?", 1)[0]
        for method, pattern, handler in self.routes:
            if method in (None, request.method) and pattern.fullmatch(path):
                return self._recorded(handler)(request, context)
        context.status_code = 404
        return {"error": {"code": 404, "message": f"the replay has no answer for {request.method} {request.url}"}}

    # -- helpers for the tests ------------------------------------------------------------------------------------

    def connection(self) -> openstack.connection.Connection:
        return openstack.connection.Connection(
            auth_url="https://identity.example.com",
            username="tier3-operator",
            password="recorded",
            project_name="magellan",
            user_domain_name="Default",
            project_domain_name="Default",
            region_name="RegionOne",
        )

    def fail(self, method: str, path: str, status: int = 500, message: str = "Internal Server Error") -> None:
        """The next `method` request whose path matches `path` (a regex) answers `status` instead."""
        self.failures.append((method, re.compile(path), status, message))

    def add(self, kind: str, **fields: Any) -> dict[str, Any]:
        """A resource that exists before the test (a foreign one, or a leftover)."""
        body = template(kind) | {"id": fields.pop("id", uuid.uuid4().hex)} | fields
        self.state[kind][body["id"]] = body
        return body

    def named(self, kind: str, name: str) -> list[dict[str, Any]]:
        return [r for r in self.state[kind].values() if r.get("name") == name]

    def writes(self) -> list[tuple[str, str]]:
        """(method, path) of every request that changed something, in order (Keystone's token POST excepted)."""
        return [
            (method, urlparse(url).path)
            for method, url in self.history
            if method in ("POST", "PUT", "PATCH", "DELETE") and "identity" not in url
        ]

    # -- dispatch -------------------------------------------------------------------------------------------------

    def _failure(self, request: Any, context: Any) -> dict[str, Any] | None:
        for i, (method, path, status, message) in enumerate(self.failures):
            if request.method == method and path.search(urlparse(request.url).path):
                del self.failures[i]
                context.status_code = status
                return {"computeFault" if "compute" in request.url else "NeutronError": {"message": message}}
        return None

    @staticmethod
    def _query(request: Any) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlparse(request.url).query).items()}

    @staticmethod
    def _matches(resource: dict[str, Any], query: dict[str, str]) -> bool:
        for key, value in query.items():
            if key in ("fields", "limit", "marker", "sort_key", "sort_dir"):
                continue
            if key in ("tags", "tag"):
                if not set(value.split(",")) <= set(resource.get("tags") or []):
                    return False
            elif str(resource.get(key)).lower() != value.lower():
                return False
        return True

    def _neutron(self, request: Any, context: Any) -> Any:
        if (failed := self._failure(request, context)) is not None:
            return failed
        parts = urlparse(request.url).path.split("/")[2:]  # after /v2.0
        if not parts or not parts[0]:
            return fixture("network-version")
        kind = NEUTRON_KINDS[parts[0]]
        store = self.state[kind]
        body = request.json() if request.body else {}
        if len(parts) == 1 and request.method == "GET":
            found = [r for r in store.values() if self._matches(r, self._query(request))]
            return {f"{kind}s": [self._neutron_view(kind, r) for r in found]}
        if len(parts) == 1 and request.method == "POST":
            context.status_code = 201
            if f"{kind}s" in body:  # bulk create, as openstacksdk sends a security group's rules
                return {f"{kind}s": [self._neutron_create(kind, fields) for fields in body[f"{kind}s"]]}
            return {kind: self._neutron_view(kind, self._neutron_create(kind, body[kind]))}
        resource = store.get(parts[1])
        if resource is None:
            context.status_code = 404
            return {"NeutronError": {"type": "NotFound", "message": f"{kind} {parts[1]} could not be found."}}
        if len(parts) == 3 and parts[2] == "tags":
            resource["tags"] = body["tags"]
            return {"tags": body["tags"]}
        if len(parts) == 3 and parts[2] == "add_router_interface":
            subnet = self.state["subnet"][body["subnet_id"]]
            port = self._port(subnet["network_id"], resource["id"], "network:router_interface", subnet["gateway_ip"])
            return {"id": resource["id"], "subnet_id": subnet["id"], "port_id": port["id"], "tenant_id": PROJECT}
        if len(parts) == 3 and parts[2] == "remove_router_interface":
            port = self.state["port"].pop(body["port_id"])
            return {"id": resource["id"], "port_id": port["id"], "subnet_id": port["fixed_ips"][0]["subnet_id"]}
        if request.method == "GET":
            return {kind: self._neutron_view(kind, resource)}
        if request.method == "PUT":
            resource.update(body[kind])
            if kind == "floatingip":
                resource["status"] = "ACTIVE" if resource.get("port_id") else "DOWN"
            return {kind: resource}
        if request.method == "DELETE":
            if kind == "network":
                if any(p["network_id"] == resource["id"] for p in self.state["port"].values()):
                    context.status_code = 409
                    return {"NeutronError": {"type": "NetworkInUse", "message": "One or more ports are in use."}}
                for subnet in [s for s in self.state["subnet"].values() if s["network_id"] == resource["id"]]:
                    del self.state["subnet"][subnet["id"]]
            del store[resource["id"]]
            context.status_code = 204
            return None
        raise AssertionError(f"unexpected Neutron request {request.method} {request.url}")

    def _neutron_view(self, kind: str, resource: dict[str, Any]) -> dict[str, Any]:
        """A security group shows its rules, as Neutron's does."""
        if kind != "security_group":
            return resource
        rules = [r for r in self.state["security_group_rule"].values() if r["security_group_id"] == resource["id"]]
        return resource | {"security_group_rules": copy.deepcopy(rules)}

    def _neutron_create(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        resource = self.add(kind, **fields)
        if kind == "subnet":
            net = ipaddress.ip_network(resource["cidr"])
            resource["gateway_ip"] = str(net[1])
            resource["allocation_pools"] = [{"start": str(net[2]), "end": str(net[-2])}]
            self.state["network"][resource["network_id"]]["subnets"].append(resource["id"])
        if kind == "security_group":
            for ethertype in ("IPv4", "IPv6"):  # what Neutron gives every new group
                self.add(
                    "security_group_rule", security_group_id=resource["id"], direction="egress", ethertype=ethertype
                )
        if kind == "floatingip":
            self._fip += 1
            resource["floating_ip_address"] = f"198.51.100.{100 + self._fip}"
            resource["status"] = "ACTIVE" if resource.get("port_id") else "DOWN"
        return resource

    def _port(self, network_id: str, device_id: str, owner: str, address: str | None = None) -> dict[str, Any]:
        subnet = next(s for s in self.state["subnet"].values() if s["network_id"] == network_id)
        if address is None:
            used = {ip["ip_address"] for p in self.state["port"].values() for ip in p["fixed_ips"]}
            address = next(
                str(a)
                for a in ipaddress.ip_network(subnet["cidr"]).hosts()
                if str(a) not in used | {subnet["gateway_ip"]}
            )
        fixed = [{"subnet_id": subnet["id"], "ip_address": address}]
        return self.add("port", network_id=network_id, device_id=device_id, device_owner=owner, fixed_ips=fixed)

    def _nova(self, request: Any, context: Any) -> Any:
        if (failed := self._failure(request, context)) is not None:
            return failed
        path = urlparse(request.url).path.split("/")[2:]  # after /v2.1
        body = request.json() if request.body else {}
        if path == ["flavors", "detail"]:
            return fixture("flavors")
        if path[0] == "flavors" and len(path) == 2:  # by id; a name is not an id (openstacksdk then lists)
            for flavour in fixture("flavors")["flavors"]:
                if flavour["id"] == path[1]:
                    return {"flavor": flavour}
            context.status_code = 404
            return {"itemNotFound": {"code": 404, "message": f"Flavor {path[1]} could not be found."}}
        if path[0] == "os-keypairs":
            return self._keypairs(request, context, path, body)
        if path[0] != "servers":
            raise AssertionError(f"unexpected Nova request {request.method} {request.url}")
        if path == ["servers", "detail"]:
            return {"servers": [self._server_view(s) for s in self.state["server"].values()]}
        if path == ["servers"] and request.method == "POST":
            return self._create_server(body["server"], context)
        server = self.state["server"].get(path[1])
        if server is None:
            context.status_code = 404
            return {"itemNotFound": {"code": 404, "message": "Instance could not be found."}}
        if path[2:] == ["os-volume_attachments"] and request.method == "POST":
            volume = self.state["volume"][body["volumeAttachment"]["volumeId"]]
            volume["status"] = "in-use"
            volume["attachments"] = [
                {
                    "server_id": server["id"],
                    "attachment_id": uuid.uuid4().hex,
                    "volume_id": volume["id"],
                    "device": "/dev/vdb",
                    "id": volume["id"],
                }
            ]
            return {
                "volumeAttachment": template("volume-attachment")["volumeAttachment"]
                | {"id": volume["id"], "serverId": server["id"], "volumeId": volume["id"]}
            }
        if path[2:] == ["os-security-groups"] and request.method == "GET":  # Compute API: by server
            names = {g["name"] for g in server["security_groups"]}
            groups = [g for g in self.state["security_group"].values() if g["name"] in names]
            return {
                "security_groups": [
                    {
                        "id": g["id"],
                        "name": g["name"],
                        "description": g["description"],
                        "tenant_id": PROJECT,
                        "rules": [],
                    }
                    for g in groups
                ]
            }
        if request.method == "GET":
            if server["status"] == "BUILD":
                server["status"] = "ERROR" if server["name"] in self.boot_errors else "ACTIVE"
                if server["status"] == "ERROR":
                    server["fault"] = {
                        "code": 500,
                        "message": "No valid host was found. There are not enough hosts available.",
                        "created": server["created"],
                    }
            return {"server": self._server_view(server)}
        if request.method == "DELETE":
            self._delete_server(server)
            context.status_code = 204
            return None
        raise AssertionError(f"unexpected Nova request {request.method} {request.url}")

    def _keypairs(self, request: Any, context: Any, path: list[str], body: dict[str, Any]) -> Any:
        if len(path) == 1 and request.method == "GET":
            return {"keypairs": [{"keypair": k} for k in self.state["keypair"].values()]}
        if len(path) == 1 and request.method == "POST":
            key = template("keypair") | body["keypair"] | {"fingerprint": "aa:bb:cc"}
            self.state["keypair"][key["name"]] = key
            return {"keypair": key}
        key = self.state["keypair"].get(path[1])
        if key is None:
            context.status_code = 404
            return {"itemNotFound": {"code": 404, "message": f"Keypair {path[1]} not found for user"}}
        if request.method == "DELETE":
            del self.state["keypair"][key["name"]]
            context.status_code = 202
            return None
        return {"keypair": key}

    def _create_server(self, fields: dict[str, Any], context: Any) -> dict[str, Any]:
        net_id = fields["networks"][0]["uuid"]
        server = template("server") | {
            "id": uuid.uuid4().hex,
            "name": fields["name"],
            "metadata": fields.get("metadata", {}),
            "key_name": fields.get("key_name"),
            "security_groups": fields.get("security_groups", []),
            "image": {"id": fields["imageRef"], "links": []},
            "flavor_ref": fields["flavorRef"],
            "status": "BUILD",
        }
        self.state["server"][server["id"]] = server
        self._port(net_id, server["id"], "compute:nova")
        context.status_code = 202
        return {
            "server": {
                "id": server["id"],
                "links": [],
                "OS-DCF:diskConfig": "MANUAL",
                "adminPass": "x",
                "security_groups": server["security_groups"],
            }
        }

    def _server_view(self, server: dict[str, Any]) -> dict[str, Any]:
        view = copy.deepcopy(server)
        view.pop("flavor_ref", None)
        addresses: dict[str, list[dict[str, Any]]] = {}
        for port in (p for p in self.state["port"].values() if p["device_id"] == server["id"]):
            net = self.state["network"][port["network_id"]]["name"]
            mac = {"OS-EXT-IPS-MAC:mac_addr": port["mac_address"], "version": 4}
            for ip in port["fixed_ips"]:
                addresses.setdefault(net, []).append({"addr": ip["ip_address"], "OS-EXT-IPS:type": "fixed"} | mac)
            for fip in (f for f in self.state["floatingip"].values() if f.get("port_id") == port["id"]):
                addresses[net].append({"addr": fip["floating_ip_address"], "OS-EXT-IPS:type": "floating"} | mac)
        view["addresses"] = addresses
        view["os-extended-volumes:volumes_attached"] = [
            {"id": v["id"], "delete_on_termination": False}
            for v in self.state["volume"].values()
            if any(a["server_id"] == server["id"] for a in v["attachments"])
        ]
        return view

    def _delete_server(self, server: dict[str, Any]) -> None:
        del self.state["server"][server["id"]]
        for port in [p for p in self.state["port"].values() if p["device_id"] == server["id"]]:
            del self.state["port"][port["id"]]
            for fip in self.state["floatingip"].values():
                if fip.get("port_id") == port["id"]:
                    fip.update(port_id=None, fixed_ip_address=None, status="DOWN")
        for volume in self.state["volume"].values():
            if any(a["server_id"] == server["id"] for a in volume["attachments"]):
                volume.update(attachments=[], status="available")

    def _glance(self, request: Any, context: Any) -> Any:
        if (failed := self._failure(request, context)) is not None:
            return failed
        path = urlparse(request.url).path.split("/")[2:]  # after /v2
        store = self.state["image"]
        if path == ["images"] and request.method == "GET":
            found = [i for i in store.values() if self._matches(i, self._query(request))]
            return {"images": found, "schema": "/v2/schemas/images", "first": "/v2/images"}
        if path == ["images"] and request.method == "POST":
            image = self.add("image", **request.json())
            image.update(self="/v2/images/" + image["id"], file=f"/v2/images/{image['id']}/file")
            context.status_code = 201
            return image
        image = store.get(path[1])
        if image is None:
            context.status_code = 404
            return {"message": "No image found", "code": "404 Not Found"}
        if path[2:] == ["file"] and request.method == "PUT":
            data = request.body.read() if hasattr(request.body, "read") else request.body
            image.update(status="active", size=len(data or b""))
            context.status_code = 204
            return None
        if request.method == "PATCH":  # a JSON patch of the image's properties (openstack.cloud.image sets them so)
            for change in request.json():
                key = change["path"].lstrip("/")
                if change["op"] in ("add", "replace"):
                    image[key] = change["value"]
                elif change["op"] == "remove":
                    image.pop(key, None)
            return image
        if request.method == "DELETE":
            del store[image["id"]]
            context.status_code = 204
            return None
        return image

    def _cinder(self, request: Any, context: Any) -> Any:
        if (failed := self._failure(request, context)) is not None:
            return failed
        path = urlparse(request.url).path.split("/")[3:]  # after /v3/<project>
        store = self.state["volume"]
        if path == ["volumes", "detail"]:
            query = self._query(request)
            return {"volumes": [v for v in store.values() if self._matches(v, query)]}
        if path == ["volumes"] and request.method == "POST":
            volume = self.add("volume", **request.json()["volume"])
            context.status_code = 202
            answer = copy.deepcopy(volume)
            volume["status"] = "available"  # the next GET finds it made
            return {"volume": answer}
        volume = store.get(path[1])
        if volume is None:
            context.status_code = 404
            return {"itemNotFound": {"code": 404, "message": "Volume could not be found."}}
        if request.method == "DELETE":
            del store[volume["id"]]
            context.status_code = 202
            return None
        return {"volume": volume}


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves a Cloud on 127.0.0.1: /<service>/<path> is the recorded https://<service>.example.com/<path>, and every
    recorded URL in an answer is rewritten to the loopback one, so a client that follows the catalog stays here."""

    cloud: Cloud
    lock: threading.Lock
    protocol_version = "HTTP/1.1"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().strip() or b"0", 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self) -> None:
        root = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"  # type: ignore[index]
        service, _, rest = self.path.lstrip("/").partition("/")
        body = self._body()
        context = Context()
        answer: Any
        if service not in SERVICES:
            context.status_code, answer = 404, {"error": {"message": f"no service {service!r} here"}}
        else:
            with self.lock:
                try:
                    answer = self.cloud.dispatch(
                        Request(self.command, f"{RECORDED.format(service=service)}/{rest}", body), context
                    )
                except Exception as exc:  # an answer the replay lacks: say which, as a server error would
                    context.status_code = 500
                    answer = {"error": {"code": 500, "message": f"replay: {type(exc).__name__}: {exc}"}}
                    self.cloud.errors.append(f"{self.command} {self.path}: {type(exc).__name__}: {exc}")
        data = b""
        if answer is not None:
            text = json.dumps(answer)
            for name in SERVICES:
                text = text.replace(RECORDED.format(service=name), f"{root}/{name}")
            data = text.encode()
        self.send_response(context.status_code)
        for key, value in context.headers.items():
            self.send_header(key, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(cloud: Cloud) -> Iterator[str]:
    """Serve `cloud` on a free port of 127.0.0.1 (loopback only) in a thread; yields the Keystone URL."""
    handler = type("Handler", (_Handler,), {"cloud": cloud, "lock": threading.Lock()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="openstack-replay", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/identity"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
