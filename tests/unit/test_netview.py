"""lab/netview.py's reading of an RTM_GETADDR dump (the lab's samplers:
who holds a VIP).  Bytes as the kernel sends them: nlmsghdr, ifaddrmsg,
rtattrs padded to 4."""

import socket
import struct

import pytest

from lab import netview


def rta(kind, data):
    return struct.pack("=HH", 4 + len(data), kind) + data + bytes(-len(data) % 4)


def newaddr(family, addr, label=b"eth0\0"):
    body = struct.pack("=BBBBI", family, 32, 0, 0, 2)
    if family == socket.AF_INET:
        body += rta(netview.IFA_ADDRESS, socket.inet_aton(addr)) + rta(netview.IFA_LOCAL, socket.inet_aton(addr))
    else:
        body += rta(netview.IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, addr))
    body += rta(3, label)  # IFA_LABEL
    return struct.pack("=IHHII", 16 + len(body), netview.RTM_NEWADDR, 2, 1, 0) + body


def done():
    return struct.pack("=IHHII", 20, netview.NLMSG_DONE, 2, 1, 0) + struct.pack("=i", 0)


def test_the_ipv4_addresses_of_a_dump_and_its_end():
    data = newaddr(socket.AF_INET, "198.18.2.241") + newaddr(socket.AF_INET6, "fe80::1") + newaddr(socket.AF_INET, "198.18.2.4")
    assert netview.parse_addresses(data) == ({"198.18.2.241", "198.18.2.4"}, False)
    assert netview.parse_addresses(data + done()) == ({"198.18.2.241", "198.18.2.4"}, True)


def test_an_error_from_the_kernel_is_raised():
    err = struct.pack("=IHHII", 36, netview.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -1) + bytes(16)
    with pytest.raises(OSError, match="RTM_GETADDR"):
        netview.parse_addresses(err)


def test_a_truncated_message_ends_the_parse():
    assert netview.parse_addresses(newaddr(socket.AF_INET, "10.0.0.1")[:20]) == (set(), False)
