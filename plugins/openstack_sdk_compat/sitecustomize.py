"""openstack.cloud 2.5.0 (the collection the `ansible` package ships) reads openstack.version.__version__, which
openstacksdk removed in 4.15.0 (we pin 4.22.0): every module of the collection fails with "module 'openstack' has no
attribute 'version'" (fixed in the collection's 2.6.0, which Galaxy would give; it is not on PyPI).

playbooks/tier3_openstack.yml puts this directory on its modules' PYTHONPATH only, so that their Python gives the
openstack package the attribute back, with the installed distribution's version. It does nothing where the SDK still
has it. Remove it (and the playbook's environment line) once the ansible package ships openstack.cloud >= 2.6.0.
"""

import importlib.metadata
import sys
import types

try:
    import openstack
except ImportError:  # no SDK here: the module says so itself
    pass
else:
    if not hasattr(openstack, "version"):
        version = types.ModuleType("openstack.version")
        version.__version__ = importlib.metadata.version("openstacksdk")  # type: ignore[attr-defined]
        sys.modules["openstack.version"] = version
        openstack.version = version  # type: ignore[attr-defined]
