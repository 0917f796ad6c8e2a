"""Ansible's linear strategy run through Mitogen (https://mitogen.networkgenomics.com/ansible_detailed.html).

Mitogen keeps one Python interpreter per host for the whole run and sends it each module once, instead of starting
Python and unpacking and compiling the module's zip for every task: on a guest under QEMU's software emulation
(TCG) a plain task cost 10-30 s here and a Mitogen one 1-3 s. ansible.cfg selects it; any run can go back to
Ansible's own with ANSIBLE_STRATEGY=linear. The pinned mitogen package (requirements.txt) provides it; this file
only puts it on the project's strategy path, as mitogen's own plugin file does.
"""

from __future__ import annotations

import ansible.plugins.strategy.linear
import ansible_mitogen.strategy


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, ansible.plugins.strategy.linear.StrategyModule):
    pass
