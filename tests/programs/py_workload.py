# Allocation-heavy Python whose output depends only on the values computed.
# Run with PYTHONMALLOC=malloc so every object goes through the preloaded
# malloc instead of pymalloc's arenas.  Hash randomisation is pinned by the
# suite (PYTHONHASHSEED=0) so set/dict iteration order is stable too.

import hashlib
import json
import re
import sys
import threading
from collections import Counter, OrderedDict, defaultdict, deque


def rng(seed):
    # A tiny LCG: the same numbers on every run and every Python build.
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) & ((1 << 64) - 1)
        yield state >> 33


def words(seed, n):
    r = rng(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = []
    for _ in range(n):
        k = 1 + next(r) % 12
        out.append("".join(letters[next(r) % 26] for _ in range(k)))
    return out


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def section_dicts_lists():
    w = words(1, 60000)
    counts = Counter(w)
    by_len = defaultdict(list)
    for x in w:
        by_len[len(x)].append(x)
    od = OrderedDict()
    for i, x in enumerate(w):
        od[x] = i
        if i % 7 == 0:
            od.move_to_end(x, last=False)
    for k in list(od)[::3]:
        del od[k]
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    print("dicts: distinct", len(counts), "top", top)
    print("dicts: by_len", {k: len(v) for k, v in sorted(by_len.items())})
    print("dicts: ordered", len(od), digest(list(od.items())[:1000]))
    lst = list(range(100000))
    lst[::2] = [x * 3 for x in lst[::2]]
    del lst[1000:5000]
    lst.extend(reversed(lst[:2000]))
    dq = deque(maxlen=5000)
    for x in lst:
        dq.append(x)
    print("lists:", len(lst), sum(lst), sum(dq), digest(lst[-50:]))


def section_strings_re():
    w = words(2, 40000)
    text = " ".join(w)
    up = text.upper()
    parts = re.split(r"[aeiou]{2,}", text)
    found = re.findall(r"\b([bcd]\w{3,5})\b", text)
    subbed = re.sub(r"(\w)(\w*)", lambda m: m.group(2) + m.group(1), text[:200000])
    fmt = ["%05d:%s:%x" % (i, s, len(s) * 31) for i, s in enumerate(w[:20000])]
    joined = "|".join(fmt)
    enc = joined.encode("utf-8")
    uni = "".join(chr(0x3b1 + (ord(c) - 97) % 24) for c in text[:50000])
    print("strings:", len(text), hashlib.md5(up.encode()).hexdigest())
    print("re: parts", len(parts), "found", len(found), "sub", hashlib.sha1(subbed.encode()).hexdigest())
    print("fmt:", len(joined), hashlib.sha256(enc).hexdigest()[:20], len(uni.encode("utf-8")))
    print("unicode:", uni[:20], uni.count("\u03b1"))


def section_json_sort():
    r = rng(3)
    records = []
    for i in range(20000):
        records.append({
            "id": i,
            "name": "item-%d" % (next(r) % 5000),
            "price": (next(r) % 100000) / 100.0,
            "tags": ["t%d" % (next(r) % 50) for _ in range(next(r) % 6)],
            "nested": {"a": next(r) % 10, "b": [None, True, False, "x" * (next(r) % 30)]},
        })
    blob = json.dumps(records, sort_keys=True)
    back = json.loads(blob)
    assert back == records
    pretty = json.dumps(back[:200], indent=2, sort_keys=True)
    back.sort(key=lambda d: (d["name"], -d["price"], d["id"]))
    print("json:", len(blob), hashlib.sha256(blob.encode()).hexdigest()[:20], len(pretty))
    print("sort:", [d["id"] for d in back[:10]], back[-1]["name"])
    nums = [next(r) % 1000003 for _ in range(100000)]
    print("sorted:", sorted(nums)[:5], sorted(nums, reverse=True)[:5], len(set(nums)))


def section_big_structure():
    # A generated structure of 10^5 elements: a tree of dicts and tuples that
    # is built, walked, copied, partly dropped and hashed.
    r = rng(4)
    nodes = [{"k": i, "v": (i * 7919) % 100003, "kids": []} for i in range(100000)]
    for i in range(1, 100000):
        parent = nodes[next(r) % i]
        parent["kids"].append(nodes[i])
    depth = {0: 0}
    stack = [nodes[0]]
    total = 0
    while stack:
        n = stack.pop()
        total += n["v"]
        for c in n["kids"]:
            depth[c["k"]] = depth[n["k"]] + 1
            stack.append(c)
    leaves = sum(1 for n in nodes if not n["kids"])
    flat = tuple((n["k"], n["v"], len(n["kids"])) for n in nodes)
    sets = [frozenset(range(i % 50)) for i in range(100000)]
    del nodes[::2]
    print("big: total", total, "maxdepth", max(depth.values()), "leaves", leaves,
          "flat", digest(flat[::997]), "sets", sum(map(len, sets[:1000])), "left", len(nodes))


class Shape:
    registry = []

    def __init__(self, name):
        self.name = name
        Shape.registry.append(self)

    def area(self):
        raise NotImplementedError

    def describe(self):
        return "%s(%s) area=%.3f" % (type(self).__name__, self.name, self.area())


class Rect(Shape):
    def __init__(self, name, w, h):
        super().__init__(name)
        self.w, self.h = w, h

    def area(self):
        return self.w * self.h


class Square(Rect):
    def __init__(self, name, s):
        super().__init__(name, s, s)


class Circle(Shape):
    __slots__ = ("r",)

    def __init__(self, name, r):
        super().__init__(name)
        self.r = r

    def area(self):
        return 3.141592653589793 * self.r * self.r


def section_classes():
    r = rng(5)
    kinds = [lambda i: Rect("r%d" % i, next(r) % 100, next(r) % 100),
             lambda i: Square("s%d" % i, next(r) % 100),
             lambda i: Circle("c%d" % i, (next(r) % 1000) / 10.0)]
    shapes = [kinds[next(r) % 3](i) for i in range(30000)]
    shapes.sort(key=lambda s: (s.area(), s.name))
    by_type = Counter(type(s).__name__ for s in shapes)
    print("classes:", sorted(by_type.items()), shapes[0].describe(), shapes[-1].describe())
    print("classes: area sum %.4f" % sum(s.area() for s in shapes), len(Shape.registry))
    Shape.registry.clear()


def section_hashlib():
    data = b"".join(i.to_bytes(4, "little") for i in range(250000))
    out = []
    for name in ("md5", "sha1", "sha256", "sha512", "blake2b", "sha3_256"):
        h = hashlib.new(name)
        for off in range(0, len(data), 65536):
            h.update(data[off:off + 65536])
        out.append("%s=%s" % (name, h.hexdigest()[:16]))
    print("hashlib:", " ".join(out))


def section_threads():
    # Each thread builds and frees its own data; objects also cross threads
    # through a shared list guarded by a lock.  Results are combined in a
    # fixed order, so scheduling does not change the output.
    results = [None] * 4
    shared = []
    lock = threading.Lock()

    def work(t):
        w = words(10 + t, 20000)
        d = {}
        for x in w:
            d.setdefault(x, []).append(len(x))
        with lock:
            shared.append((t, [x.upper() for x in w[:5000]]))
        results[t] = (len(d), sum(len(v) for v in d.values()), digest(sorted(d)[:100]))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    shared.sort()
    print("threads:", results, digest([s[1][:10] for s in shared]))


def main():
    section_dicts_lists()
    section_strings_re()
    section_json_sort()
    section_big_structure()
    section_classes()
    section_hashlib()
    section_threads()
    print("done", sys.version_info[:2])


main()
