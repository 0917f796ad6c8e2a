"""Ansible's linear strategy run through Mitogen (https://mitogen.networkgenomics.com/ansible_detailed.html).

Mitogen keeps one Python interpreter per host for the whole run and sends it each module once, instead of starting
Python and unpacking and compiling the module's zip for every task: on a guest under QEMU's software emulation
(TCG) a plain task cost 10-30 s here and a Mitogen one 1-3 s. ansible.cfg selects it; any run can go back to
Ansible's own with ANSIBLE_STRATEGY=linear. The pinned mitogen package (requirements.txt) provides it; this file
only puts it on the project's strategy path, as mitogen's own plugin file does.
"""

from __future__ import annotations

import ansible.plugins.strategy.linear
import ansible_mitogen.affinity
import ansible_mitogen.strategy

# No CPU pinning. Mitogen pins Ansible's processes to CPUs, and everything they start inherits it: on a 2-CPU
# machine its connection multiplexer got CPU 0 and the controller, every task worker and every child of theirs CPU 1
# (ssh, podman, so also each container podman started and every process in it, for the container's life). The local
# site's nodes then ran all their services on one core, and make test's parallel Ansible runs shared that core.
# The base Policy pins nothing; Mitogen looks its policy up here for every process it assigns.
ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, ansible.plugins.strategy.linear.StrategyModule):
    pass
