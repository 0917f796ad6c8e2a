"""What a TCP connection from this host to ADDRESS PORT gives: prints `open`, or the error's name
(ConnectionRefusedError: a firewall's TCP reset; TimeoutError: a silent drop). The firewall tests send this file's
text to a node as `python3 -c TEXT ADDRESS PORT`, to try a port from that node."""

import socket
import sys

try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    print("open")
except OSError as e:
    print(type(e).__name__)
