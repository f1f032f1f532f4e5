#!/usr/bin/env python3
"""TEST ONLY: writes a hakmem policy (proto/policy.proto) with N sites, by
hand-encoded protobuf so that no generated code is needed.

usage: gen_policy.py N OUT [--state] [--odd-module] [--module PATH] [--first K] [--salt S]
  --state       write a state file (daemon/persist.c header: "HKMSTATE",
                u32 length LE, u32 CRC32 LE, payload) instead of a bare policy
  --odd-module  site 0's module path holds a newline, a double quote, a
                backslash, ESC and an invalid UTF-8 byte
  --module PATH module path of the other sites (default /usr/lib/gen/libgen.so)
  --first K     the sites are those numbered K to K+N-1 (default 0): two files
                with overlapping ranges share sites
  --salt S      another draw of pulls and rewards for the same sites
Every site has all eight arms with pulls, so it is learned and published."""
import struct
import sys
import zlib

ARMS = [
    ("large=1M,slots=4,thp=off", 1 << 20, 4, 0),
    ("large=1M,slots=4,thp=on", 1 << 20, 4, 1),
    ("large=1M,slots=0,thp=off", 1 << 20, 0, 0),
    ("large=1M,slots=0,thp=on", 1 << 20, 0, 1),
    ("large=256K,slots=4,thp=off", 256 << 10, 4, 0),
    ("large=256K,slots=4,thp=on", 256 << 10, 4, 1),
    ("large=256K,slots=0,thp=off", 256 << 10, 0, 0),
    ("large=256K,slots=0,thp=on", 256 << 10, 0, 1),
]
ODD_MODULE = b'/opt/odd\nname"q\\b\x1b[31mred\xffend'


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def f_varint(field, v):
    return key(field, 0) + varint(v)


def f_bytes(field, b):
    return key(field, 2) + varint(len(b)) + b


def f_fixed64(field, v):
    return key(field, 1) + struct.pack("<Q", v)


def f_double(field, v):
    return key(field, 1) + struct.pack("<d", v)


def arm(i, site, salt):
    name, large, slots, thp = ARMS[i]
    pulls = 3 + (site + i + 3 * salt) % 5
    mean = 0.2 + 0.6 * (((site * 7 + i * 3 + salt * 5) % 11) / 10.0)
    out = f_bytes(1, name.encode()) + f_varint(2, pulls) + f_double(3, mean * pulls)
    out += f_varint(4, large) + f_varint(5, slots)
    if thp:
        out += f_varint(6, 1)
    return out


def site(i, module, salt):
    best = (i * 5) % len(ARMS)
    out = f_fixed64(1, 0x6E6E000000000000 | (i >> 16)) + f_fixed64(2, 0x1000 + (i & 0xFFFF) * 16)
    out += f_bytes(3, module)
    for a in range(len(ARMS)):
        out += f_bytes(4, arm(a, i, salt))
    out += f_bytes(5, ARMS[best][0].encode()) + f_double(7, 50.0)
    return out


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    n, out = int(args[0]), args[1]
    module = b"/usr/lib/gen/libgen.so"
    if "--module" in args:
        module = args[args.index("--module") + 1].encode()
    first = int(args[args.index("--first") + 1]) if "--first" in args else 0
    salt = int(args[args.index("--salt") + 1]) if "--salt" in args else 0
    parts = [f_bytes(1, b"hakmem.policy.v1"), f_bytes(2, b"gen"), f_varint(3, 1700000000000), f_varint(4, 7)]
    for i in range(first, first + n):
        m = ODD_MODULE if i == 0 and "--odd-module" in args else module
        parts.append(f_bytes(5, site(i, m, salt)))
    payload = b"".join(parts)
    if "--state" in args:
        payload = b"HKMSTATE" + struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    with open(out, "wb") as f:
        f.write(payload)


if __name__ == "__main__":
    main()
