"""A lab host's IPv4 addresses, read over rtnetlink, with no process spawned.

The samplers that look for a VIP on both load balancers read each host many
times a second.  A host holds a VIP when the address is on one of its
interfaces.  That is what answers ARP for it.  A local route is not enough:
a node that hands a VIP over keeps one for a few seconds (docs/carp.md,
"A planned handover is hitless"), and the kernel's route listing
(`fib_trie`) cannot tell that route from an address's own.

The netlink socket is opened inside the host's network namespace (setns(2)
on this thread, then back), once per host process, and asked for an
address dump (RTM_GETADDR) at each read.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading

CLONE_NEWNET = 0x40000000
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2

_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()
_sockets: dict[int, tuple[socket.socket, threading.Lock]] = {}  # by namespace inode


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _open(pid: int) -> socket.socket:
    """A NETLINK_ROUTE socket in pid's network namespace."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            _setns(target)
            try:
                return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            finally:
                _setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)


def _socket(pid: int) -> tuple[socket.socket, threading.Lock]:
    """The socket kept for pid's network namespace (by its inode: the same
    namespace however it is reached, a new one if pid moved)."""
    ino = os.stat(f"/proc/{pid}/ns/net").st_ino
    with _lock:
        if ino not in _sockets:
            s = _open(pid)
            if os.stat(f"/proc/{pid}/ns/net").st_ino != ino:
                s.close()
                raise OSError(f"process {pid} changed network namespace while it was read")
            s.settimeout(5)
            _sockets[ino] = (s, threading.Lock())
        return _sockets[ino]


def parse_addresses(data: bytes) -> tuple[set[str], bool]:
    """The IPv4 addresses in a chunk of an RTM_GETADDR dump, and whether
    the dump ended (NLMSG_DONE) in it."""
    out, done, off = set(), False, 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16 or off + length > len(data):
            break
        if kind == NLMSG_DONE:
            done = True
        elif kind == NLMSG_ERROR:
            errno_ = -struct.unpack_from("=i", data, off + 16)[0]
            raise OSError(errno_, f"RTM_GETADDR: {os.strerror(errno_)}")
        elif kind == RTM_NEWADDR and length >= 24:
            family = data[off + 16]
            attrs, end = off + 24, off + length
            found = {}
            while attrs + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, attrs)
                if alen < 4:
                    break
                if atype in (IFA_ADDRESS, IFA_LOCAL) and alen == 8:
                    found[atype] = socket.inet_ntoa(data[attrs + 4 : attrs + 8])
                attrs += (alen + 3) & ~3
            if family == socket.AF_INET and found:
                out.add(found.get(IFA_LOCAL) or found[IFA_ADDRESS])
        off += (length + 3) & ~3
    return out, done


def addresses(pid: int) -> set[str]:
    """The IPv4 addresses configured in pid's network namespace now."""
    s, lock = _socket(pid)
    with lock:
        s.send(
            struct.pack("=IHHII", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)
        )
        out = set()
        for _ in range(1000):  # a dump is a few messages; bounded all the same
            got, done = parse_addresses(s.recv(65536))
            out |= got
            if done:
                return out
    raise OSError("RTM_GETADDR: the dump did not end")
