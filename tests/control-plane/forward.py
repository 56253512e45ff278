#!/usr/bin/env python3
"""A TCP forwarder between the machine's loopback and the node's network namespace.

The cluster with a node lives in a network namespace of its own (node.sh): the API server,
the registry and every Service are addresses inside it, which nothing outside reaches. This
forwards one port across:

    forward.py NETNS LISTEN TARGET            listen here (root loopback), connect inside NETNS
    forward.py --reverse NETNS LISTEN TARGET  listen inside NETNS, connect here

NETNS is a name under /run/netns, or the path of a namespace (/proc/PID/ns/net). LISTEN and
TARGET are HOST:PORT; a LISTEN port of 0 picks a free one. The port listened on is
printed on the first line of stdout once the forwarder accepts connections. One process, no
children: each connection's socket on the far side is made in the other namespace (setns on
this single thread, then back) and both directions are copied until either side closes.
"""

import asyncio
import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


class Namespaces:
    def __init__(self, netns):
        self.here = os.open("/proc/self/ns/net", os.O_RDONLY)
        path = netns if netns.startswith("/") else f"/run/netns/{netns}"
        self.node = os.open(path, os.O_RDONLY)

    def socket_in(self, inside):
        """A TCP socket created in the node's namespace (inside) or in this one."""
        if not inside:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        setns(self.node)
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            setns(self.here)


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


async def main(argv):
    reverse = argv[:1] == ["--reverse"]
    if reverse:
        argv = argv[1:]
    if len(argv) != 3:
        sys.exit(__doc__)
    netns, listen, target = argv[0], address(argv[1]), address(argv[2])
    spaces = Namespaces(netns)

    listener = spaces.socket_in(inside=reverse)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(listen)
    listener.listen(128)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()

    async def serve(client_reader, client_writer):
        upstream = spaces.socket_in(inside=not reverse)
        upstream.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(upstream, target), 10)
        except (OSError, asyncio.TimeoutError):
            upstream.close()
            client_writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(sock=upstream)
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))

    server = await asyncio.start_server(serve, sock=listener)
    print(listener.getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
