"""Scripts that `make bench` runs on the nodes (through Ansible's script module): stdlib only, Python 3.9+."""
