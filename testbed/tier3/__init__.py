"""A virtual Tier-3: a small batch cluster an institution launches with one command (issue 19).

spec: its description; openstack: the OpenStack provider; inventory: the Ansible inventory of its machines.
"""


class Tier3Error(RuntimeError):
    """A step of a provider failed; the message names the resource, why, and what to do."""
