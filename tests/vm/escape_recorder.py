#!/usr/bin/env python3
"""A listener for the escape suite (tests/vm/escape_test.cc): records every hit, one line each.

usage: escape_recorder.py NAME [--tcp PORT]... [--udp PORT]... [--icmp] [--sniff IFACE]...
       escape_recorder.py --probe HOST TCP_PORT UDP_PORT

With --probe it is the other side, for a recorder's self-check: a TCP connection, a datagram and
an ICMP echo request to HOST, each waiting for its answer (3 s); exits 0 when all three came.

Prints 'ready' once every socket is bound, then one line per hit, flushed at once:
  tcp SRC DST PORT        a TCP connection accepted (IPv4 or IPv6); it is sent 'NAME-PORT\\n'
  udp SRC DST PORT        a datagram (DST is the address it was sent to: unicast, broadcast or
                          multicast); the sender gets a TFTP ERROR packet whose text is 'NAME-udp'
  icmp SRC DST TYPE       an ICMP packet delivered to this namespace (after its firewall)
  icmp6 SRC DST TYPE      the same for ICMPv6
  frame IFACE in|out ipv4|ipv6 SRC DST   a frame on IFACE, seen before any firewall
An IPv6 socket that cannot be made (IPv6 off) prints 'note ...' instead. Runs until killed.
"""
import socket
import struct
import sys
import threading

lock = threading.Lock()


def emit(*words):
    with lock:
        print(*words, flush=True)


def serve_tcp(sock, name, port):
    while True:
        conn, peer = sock.accept()
        emit("tcp", peer[0], conn.getsockname()[0], port)
        try:
            conn.sendall(("%s-%d\n" % (name, port)).encode())
        finally:
            conn.close()


def serve_udp(sock, name, port):
    ip_pktinfo = getattr(socket, "IP_PKTINFO", 8)
    reply = b"\x00\x05\x00\x00" + ("%s-udp" % name).encode() + b"\x00"
    while True:
        _, anc, _, peer = sock.recvmsg(2048, 256)
        dst = "?"
        for level, kind, data in anc:
            if level == socket.IPPROTO_IP and kind == ip_pktinfo and len(data) >= 12:
                dst = socket.inet_ntoa(data[8:12])
        emit("udp", peer[0], dst, port)
        sock.sendto(reply, peer)


def serve_icmp(sock):
    while True:
        data = sock.recv(65536)
        ihl = (data[0] & 15) * 4
        emit("icmp", socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20]), data[ihl])


def serve_icmp6(sock):
    while True:
        data, peer = sock.recvfrom(65536)
        emit("icmp6", peer[0], "?", data[0])


def sniff(sock, iface):
    while True:
        data, addr = sock.recvfrom(65536)
        direction = "out" if addr[2] == socket.PACKET_OUTGOING else "in"
        kind = struct.unpack("!H", data[12:14])[0]
        if kind == 0x0800 and len(data) >= 34:
            emit("frame", iface, direction, "ipv4", socket.inet_ntoa(data[26:30]),
                 socket.inet_ntoa(data[30:34]))
        elif kind == 0x86DD and len(data) >= 54:
            emit("frame", iface, direction, "ipv6", socket.inet_ntop(socket.AF_INET6, data[22:38]),
                 socket.inet_ntop(socket.AF_INET6, data[38:54]))


def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def probe(host, tcp_port, udp_port):
    socket.create_connection((host, tcp_port), 3).recv(64)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(3)
    u.sendto(b"probe", (host, udp_port))
    u.recv(512)
    echo = struct.pack("!BBHHH", 8, 0, 0, 0x7064, 1) + b"paddock!"
    echo = echo[:2] + struct.pack("!H", checksum(echo)) + echo[4:]
    i = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    i.settimeout(3)
    i.sendto(echo, (host, 0))
    while True:
        data = i.recv(65536)
        ihl = (data[0] & 15) * 4
        if data[ihl] == 0 and socket.inet_ntoa(data[12:16]) == host:
            return


def main():
    args = sys.argv[1:]
    if args and args[0] == "--probe":
        probe(args[1], int(args[2]), int(args[3]))
        return
    name = args.pop(0)
    jobs = []
    while args:
        flag = args.pop(0)
        if flag == "--tcp":
            port = int(args.pop(0))
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(64)
            jobs.append((serve_tcp, (s, name, port)))
            try:
                s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s6.bind(("::", port))
                s6.listen(64)
                jobs.append((serve_tcp, (s6, name, port)))
            except OSError as e:
                emit("note", "no tcp6 listener on", port, e)
        elif flag == "--udp":
            port = int(args.pop(0))
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_PKTINFO", 8), 1)
            s.bind(("0.0.0.0", port))
            jobs.append((serve_udp, (s, name, port)))
        elif flag == "--icmp":
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            jobs.append((serve_icmp, (s,)))
            try:
                s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
                jobs.append((serve_icmp6, (s6,)))
            except OSError as e:
                emit("note", "no icmp6 listener", e)
        elif flag == "--sniff":
            iface = args.pop(0)
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            s.bind((iface, 0))
            jobs.append((sniff, (s, iface)))
        else:
            sys.exit("unknown argument " + flag)
    for fn, fn_args in jobs:
        threading.Thread(target=fn, args=fn_args, daemon=True).start()
    emit("ready")
    threading.Event().wait()


if __name__ == "__main__":
    main()
