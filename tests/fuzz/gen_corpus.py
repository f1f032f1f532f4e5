#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus (tests/fuzz/corpus/<harness>/) once: valid
control frames, requests, state files and policies, hand-encoded like
tests/ctl/gen_policy.py, so that each harness starts from inputs that reach
deep.  Re-run it after a protocol change; commit what it writes.

usage: gen_corpus.py [OUT_DIR]   (default: corpus/ beside this script)"""
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ctl"))
import gen_policy as gp  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def msg(field, body):
    return gp.f_bytes(field, body)


def request(command_field, body=b"", stream=False, version=1):
    out = gp.f_varint(1, version)
    if stream:
        out += gp.f_varint(2, 1)
    return out + msg(command_field, body)


def site_key(h, off):
    return gp.f_varint(1, h) + gp.f_varint(2, off)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def fake_policy(n):
    """The fake core's own export format (tests/ctl/fake_core.c)."""
    out = b"FAKEPOL1"
    for i in range(n):
        out += struct.pack("<QQIHBxQQQddd", 0x5eed000000000abc, 0x1000 + i, 1 << 20, 4, 0, 1, 2, 3, 0.5, 0.6, 0.7)
    return out


def policy(n, odd=False):
    parts = [gp.f_bytes(1, b"hakmem.policy.v1"), gp.f_bytes(2, b"seed"), gp.f_varint(3, 1), gp.f_varint(4, 2)]
    for i in range(n):
        parts.append(gp.f_bytes(5, gp.site(i, gp.ODD_MODULE if odd and i == 0 else b"/usr/lib/libseed.so")))
    return b"".join(parts)


def write(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


REQUESTS = {
    "status": request(10),
    "procs": request(11),
    "sites": request(12, gp.f_varint(1, 5)),
    "sites_all_stream": request(12, b"", stream=True),
    "sites_module": request(12, gp.f_varint(1, 2) + gp.f_bytes(2, b"libextra3.so")),
    "export": request(13),
    "export_stream": request(13, stream=True),
    "import": request(14, gp.f_bytes(1, fake_policy(2))),
    "import_more": request(14, gp.f_bytes(1, fake_policy(1)) + gp.f_varint(2, 1)),
    "reset_all": request(15),
    "reset_site": request(15, msg(1, site_key(0xe77a000000000003, 0x1030))),
    "pin": request(16, msg(1, site_key(0xe77a000000000003, 0x1030)) + gp.f_varint(2, 1)),
    "unpin": request(16, msg(1, site_key(0xe77a000000000003, 0x1030)) + gp.f_varint(2, (1 << 64) - 1)),
    "metrics": request(17),
    "metrics_stream": request(17, stream=True),
    "version99": request(10, version=99),
}


def main():
    # fuzz_frame: raw byte streams of frames.
    write("fuzz_frame", "one", frame(REQUESTS["status"]))
    write("fuzz_frame", "two", frame(REQUESTS["status"]) + frame(REQUESTS["sites"]))
    write("fuzz_frame", "empty", frame(b""))
    write("fuzz_frame", "oversize", struct.pack(">I", 1 << 30) + b"x")
    write("fuzz_frame", "cut", frame(REQUESTS["metrics"])[:-1])
    # Around the harness's maximum (1024): the largest frame taken, and a
    # whole one just over it, which must be refused.
    write("fuzz_frame", "at_max", frame(bytes(1024)))
    write("fuzz_frame", "over_max", frame(bytes(1025)) + frame(REQUESTS["status"]))
    # fuzz_request: byte 0 the peer (0 root, 1 member, 2 outsider), byte 1
    # bit 0 raw, then 2-byte-length chunks the harness frames.
    for name, rq in REQUESTS.items():
        for peer in (0, 1):
            write("fuzz_request", "%s_%d" % (name, peer), bytes([peer, 0]) + struct.pack(">H", len(rq)) + rq)
    both = REQUESTS["status"], REQUESTS["sites_all_stream"], REQUESTS["pin"], REQUESTS["metrics"]
    write("fuzz_request", "several", bytes([0, 0]) + b"".join(struct.pack(">H", len(r)) + r for r in both))
    write("fuzz_request", "raw_outsider", bytes([2, 1]) + frame(REQUESTS["export"]))
    # fuzz_state: byte 0 bit 0 asks the harness for the header.
    pol = policy(3)
    write("fuzz_state", "fixed", b"\x01" + pol)
    write("fuzz_state", "odd_module", b"\x01" + policy(2, odd=True))
    write("fuzz_state", "whole_file", b"\x00" + b"HKMSTATE" + struct.pack("<II", len(pol), zlib.crc32(pol)) + pol)
    write("fuzz_state", "truncated", b"\x00" + b"HKMSTATE" + struct.pack("<II", len(pol), zlib.crc32(pol)) + pol[:40])
    # fuzz_policy: bare policies.
    write("fuzz_policy", "three", policy(3))
    write("fuzz_policy", "odd_module", policy(2, odd=True))
    write("fuzz_policy", "empty_policy", policy(0))
    # fuzz_split: byte 0 the part size, then a policy.
    write("fuzz_split", "three_small_parts", b"\x10" + policy(3))
    write("fuzz_split", "ten", b"\x40" + policy(10))
    write("fuzz_split", "header_only", b"\x00" + policy(0))


main()
