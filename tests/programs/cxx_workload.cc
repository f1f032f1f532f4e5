// A C++ program that leans on every allocation path the C++ runtime has
// (containers, array new, over-aligned new, nothrow new, sized delete,
// exceptions, threads that free what other threads allocated, shared_ptr)
// and prints checksums that depend only on the values computed, never on
// addresses or thread timing.  The programs suite runs it once on glibc and
// once under LD_PRELOAD and demands identical output; it is never linked to
// the allocator under test.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

// Any mismatch is a wrong answer from the allocator (or a bug here): say what
// and stop, so the suite sees a non-zero exit and a differing stdout.
[[noreturn]] void die(const char *what, unsigned long long detail) {
    std::printf("ERROR: %s (%llu)\n", what, detail);
    std::fflush(stdout);
    std::exit(1);
}

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed) {}
    uint64_t next() {
        // splitmix64: tiny, fast, and the same sequence on every run.
        uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    size_t below(size_t n) { return static_cast<size_t>(next() % n); }
};

uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    return h;
}

uint64_t mix_str(uint64_t h, const std::string &s) {
    for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ULL;
    return mix(h, s.size());
}

std::string make_word(Rng &r, size_t maxlen) {
    size_t n = 1 + r.below(maxlen);
    std::string w;
    for (size_t i = 0; i < n; i++) w.push_back(static_cast<char>('a' + r.below(26)));
    return w;
}

uint64_t containers() {
    Rng r(1);
    uint64_t h = 0;
    std::vector<std::string> vec;
    std::map<int, std::string> ordered;
    std::unordered_map<std::string, int> hashed;
    std::deque<std::vector<int>> dq;
    std::list<std::string> lst;
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < 2000; i++) {
            std::string w = make_word(r, 40);
            vec.push_back(w);
            ordered[static_cast<int>(r.below(50000))] = w + "#" + std::to_string(i);
            hashed[w] += i;
            dq.emplace_back(r.below(64), static_cast<int>(i));
            if (i % 3 == 0) lst.push_front(w); else lst.push_back(w);
        }
        // Erase roughly half of everything so blocks are freed out of order
        // and the next round reuses them.
        for (size_t i = 0; i < vec.size(); i += 2) vec[i].clear();
        vec.erase(std::remove(vec.begin(), vec.end(), std::string()), vec.end());
        for (auto it = ordered.begin(); it != ordered.end();)
            it = (it->first % 2 == round % 2) ? ordered.erase(it) : std::next(it);
        for (auto it = hashed.begin(); it != hashed.end();)
            it = (it->second % 3 == 0) ? hashed.erase(it) : std::next(it);
        while (dq.size() > 1000) { h = mix(h, dq.front().size()); dq.pop_front(); }
        lst.remove_if([](const std::string &s) { return s.size() % 4 == 1; });
        vec.shrink_to_fit();
    }
    std::sort(vec.begin(), vec.end());
    for (const auto &s : vec) h = mix_str(h, s);
    for (const auto &kv : ordered) { h = mix(h, static_cast<uint64_t>(kv.first)); h = mix_str(h, kv.second); }
    // unordered_map iteration order depends on the library, not the
    // allocator, but sort anyway so the checksum is about contents only.
    std::vector<std::pair<std::string, int>> hv(hashed.begin(), hashed.end());
    std::sort(hv.begin(), hv.end());
    for (const auto &kv : hv) { h = mix_str(h, kv.first); h = mix(h, static_cast<uint64_t>(kv.second)); }
    for (const auto &v : dq) for (int x : v) h = mix(h, static_cast<uint64_t>(x));
    for (const auto &s : lst) h = mix_str(h, s);
    std::printf("containers: vec=%zu map=%zu umap=%zu deque=%zu list=%zu sum=%016llx\n",
                vec.size(), ordered.size(), hashed.size(), dq.size(), lst.size(),
                static_cast<unsigned long long>(h));
    return h;
}

struct Counted {
    static inline int alive = 0;
    std::string s;
    Counted() : s(17, 'x') { alive++; }
    ~Counted() { alive--; }
};

uint64_t arrays() {
    Rng r(2);
    uint64_t h = 0;
    std::vector<std::pair<unsigned char *, size_t>> live;
    for (int i = 0; i < 60000; i++) {
        // Mostly small, sometimes medium, rarely past a megabyte so the large
        // path is exercised too.
        size_t roll = r.below(1000);
        size_t n = roll < 900 ? 1 + r.below(512) : roll < 995 ? 1 + r.below(64 * 1024) : (1u << 20) + r.below(3u << 20);
        unsigned char *p = new unsigned char[n];
        unsigned char tag = static_cast<unsigned char>(i);
        std::memset(p, tag, n);
        live.emplace_back(p, n);
        if (live.size() > 300 || r.below(3) == 0) {
            size_t k = r.below(live.size());
            auto [q, m] = live[k];
            // Every byte must still be what we wrote: a block handed out twice
            // would have been overwritten by its other owner.
            for (size_t j = 0; j < m; j += 1 + m / 64)
                if (q[j] != q[0]) die("array block corrupted", j);
            h = mix(h, q[0]);
            h = mix(h, m);
            delete[] q;
            live[k] = live.back();
            live.pop_back();
        }
    }
    for (auto [q, m] : live) { h = mix(h, m); delete[] q; }

    // Arrays of a type with a destructor carry a cookie before the elements;
    // delete[] must get back the exact pointer new[] got.
    for (int i = 1; i < 400; i++) {
        Counted *c = new Counted[static_cast<size_t>(i)];
        h = mix(h, static_cast<uint64_t>(Counted::alive));
        delete[] c;
    }
    if (Counted::alive != 0) die("Counted leak", static_cast<unsigned long long>(Counted::alive));
    std::printf("arrays: sum=%016llx\n", static_cast<unsigned long long>(h));
    return h;
}

struct alignas(64) Line { uint64_t v[8]; };
struct alignas(4096) PageObj { unsigned char b[4096 * 2]; };

template <typename T> void check_align(const void *p, const char *what) {
    if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0)
        die(what, static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(p) % alignof(T)));
}

uint64_t aligned() {
    Rng r(3);
    uint64_t h = 0;
    std::vector<Line *> lines;
    for (int i = 0; i < 5000; i++) {
        Line *l = new Line;
        check_align<Line>(l, "alignas(64) new misaligned");
        for (int j = 0; j < 8; j++) l->v[j] = static_cast<uint64_t>(i * 8 + j);
        lines.push_back(l);
    }
    for (Line *l : lines) { h = mix(h, l->v[7]); delete l; }

    for (int i = 0; i < 200; i++) {
        size_t n = 1 + r.below(5);
        PageObj *p = new PageObj[n];
        check_align<PageObj>(p, "alignas(4096) new[] misaligned");
        std::memset(p, i, sizeof(PageObj) * n);
        h = mix(h, p[n - 1].b[100] + n);
        delete[] p;
        PageObj *q = new PageObj;
        check_align<PageObj>(q, "alignas(4096) new misaligned");
        q->b[0] = 1;
        delete q;
    }

    // The raw aligned operator pairs, sized and unsized, with every power of
    // two alignment from 16 to 64 KiB.
    for (int i = 0; i < 3000; i++) {
        size_t al = size_t(16) << r.below(13);
        size_t sz = 1 + r.below(20000);
        void *p = ::operator new(sz, std::align_val_t(al));
        if (reinterpret_cast<uintptr_t>(p) % al != 0) die("operator new(size, align) misaligned", al);
        std::memset(p, 0xA5, sz);
        h = mix(h, sz ^ al);
        if (i % 2) ::operator delete(p, sz, std::align_val_t(al));
        else ::operator delete(p, std::align_val_t(al));
    }
    std::printf("aligned: sum=%016llx\n", static_cast<unsigned long long>(h));
    return h;
}

uint64_t nothrow_and_sized() {
    Rng r(4);
    uint64_t h = 0;
    for (int i = 0; i < 20000; i++) {
        size_t n = 1 + r.below(3000);
        int *p = new (std::nothrow) int[n];
        if (!p) die("nothrow new returned null for a small size", n);
        p[n - 1] = i;
        h = mix(h, static_cast<uint64_t>(p[n - 1]) + n);
        delete[] p;
        void *q = ::operator new(n, std::nothrow);
        if (!q) die("operator new(nothrow) returned null", n);
        static_cast<char *>(q)[0] = 1;
        ::operator delete(q, std::nothrow);
        void *s = ::operator new(n);
        ::operator delete(s, n);
        void *a = ::operator new(n, std::align_val_t(256), std::nothrow);
        if (!a || reinterpret_cast<uintptr_t>(a) % 256) die("aligned nothrow new", n);
        ::operator delete(a, std::align_val_t(256), std::nothrow);
    }
    // Impossible sizes: nothrow new must return null, plain new must throw
    // bad_alloc; the allocator must fail cleanly rather than crash or lie.
    volatile size_t huge = ~size_t(0) / 4;
    void *z = ::operator new(huge, std::nothrow);
    std::printf("nothrow huge: %s\n", z ? "non-null (wrong)" : "null");
    bool threw = false;
    try {
        void *w = ::operator new(huge);
        ::operator delete(w);
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    std::printf("throwing huge: %s\n", threw ? "bad_alloc" : "no exception (wrong)");
    threw = false;
    try {
        void *w = ::operator new(huge, std::align_val_t(4096));
        ::operator delete(w, std::align_val_t(4096));
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    std::printf("throwing huge aligned: %s\n", threw ? "bad_alloc" : "no exception (wrong)");
    std::printf("nothrow/sized: sum=%016llx\n", static_cast<unsigned long long>(h));
    return h;
}

struct DeepError : std::runtime_error {
    std::vector<int> trail;
    DeepError(const std::string &m, int depth) : std::runtime_error(m), trail(static_cast<size_t>(depth), depth) {}
};

int dive(int depth, int limit, Rng &r) {
    // Every frame owns heap memory that unwinding must free.
    std::vector<std::string> frame_data(4, std::string(32 + static_cast<size_t>(depth), 'f'));
    if (depth == limit) {
        if (r.below(2)) throw DeepError("deep " + std::to_string(depth), depth);
        throw std::out_of_range(std::string(200, 'o') + std::to_string(depth));
    }
    try {
        return dive(depth + 1, limit, r) + static_cast<int>(frame_data.size());
    } catch (const DeepError &e) {
        if (depth % 5 == 4) {
            // Nest the exception: one more allocation holding the first.
            std::throw_with_nested(std::logic_error("wrapped at " + std::to_string(depth)));
        }
        throw;
    }
}

uint64_t exceptions() {
    Rng r(5);
    uint64_t h = 0;
    int deep = 0, range = 0, nested = 0;
    for (int i = 0; i < 3000; i++) {
        int limit = 1 + static_cast<int>(r.below(40));
        try {
            h = mix(h, static_cast<uint64_t>(dive(0, limit, r)));
        } catch (const DeepError &e) {
            deep++;
            h = mix(h, e.trail.size());
            h = mix_str(h, e.what());
        } catch (const std::out_of_range &e) {
            // Before logic_error: out_of_range is one.
            range++;
            h = mix_str(h, e.what());
        } catch (const std::logic_error &e) {
            nested++;
            h = mix_str(h, e.what());
            try {
                std::rethrow_if_nested(e);
            } catch (const DeepError &inner) {
                h = mix(h, inner.trail.size());
            }
        }
    }
    // exception_ptr keeps an exception object alive past its catch block and
    // lets another thread rethrow (and so free) it.
    std::vector<std::exception_ptr> kept;
    for (int i = 0; i < 500; i++) {
        try {
            throw std::runtime_error("kept " + std::to_string(i));
        } catch (...) {
            kept.push_back(std::current_exception());
        }
    }
    std::thread t([&] {
        for (auto &ep : kept) {
            try {
                std::rethrow_exception(ep);
            } catch (const std::runtime_error &e) {
                h = mix_str(h, e.what());
            }
        }
        kept.clear();
    });
    t.join();
    std::printf("exceptions: deep=%d nested=%d range=%d sum=%016llx\n", deep, nested, range,
                static_cast<unsigned long long>(h));
    return h;
}

struct Parcel {
    uint64_t id;
    std::vector<uint64_t> payload;
    std::string label;
    std::shared_ptr<const std::string> shared;
};

// A bounded hand-off queue between neighbouring threads, so almost every
// Parcel is freed by a thread other than the one that allocated it.
class Mailbox {
public:
    void put(std::unique_ptr<Parcel> p) {
        std::unique_lock<std::mutex> lk(mu_);
        not_full_.wait(lk, [&] { return q_.size() < 64; });
        q_.push_back(std::move(p));
        not_empty_.notify_one();
    }
    std::unique_ptr<Parcel> take() {
        std::unique_lock<std::mutex> lk(mu_);
        not_empty_.wait(lk, [&] { return !q_.empty(); });
        auto p = std::move(q_.front());
        q_.pop_front();
        not_full_.notify_one();
        return p;
    }

private:
    std::mutex mu_;
    std::condition_variable not_empty_, not_full_;
    std::deque<std::unique_ptr<Parcel>> q_;
};

uint64_t threads() {
    constexpr int kThreads = 8;
    constexpr int kPerThread = 6000;
    std::vector<Mailbox> boxes(kThreads);
    std::vector<uint64_t> sums(kThreads, 0);
    auto common = std::make_shared<const std::string>(1000, 'c');
    std::weak_ptr<const std::string> watcher = common;
    std::vector<std::thread> pool;
    for (int t = 0; t < kThreads; t++) {
        pool.emplace_back([&, t] {
            Rng r(100 + static_cast<uint64_t>(t));
            uint64_t local = 0;
            // Produce for the right-hand neighbour, consume from our own box;
            // interleaving keeps both queues moving without deadlock.
            for (int i = 0; i < kPerThread; i++) {
                auto p = std::make_unique<Parcel>();
                p->id = static_cast<uint64_t>(t) * 1000000 + static_cast<uint64_t>(i);
                p->payload.resize(1 + r.below(200));
                for (size_t k = 0; k < p->payload.size(); k++) p->payload[k] = p->id + k;
                p->label = "parcel-" + std::to_string(p->id) + std::string(r.below(100), 'p');
                p->shared = (i % 4 == 0) ? common : std::make_shared<const std::string>(p->label);
                boxes[static_cast<size_t>((t + 1) % kThreads)].put(std::move(p));
                auto got = boxes[static_cast<size_t>(t)].take();
                for (size_t k = 0; k < got->payload.size(); k++)
                    if (got->payload[k] != got->id + k) die("parcel payload corrupted", got->id);
                // Addition commutes, so the order parcels arrive in does not
                // change the per-thread sum.
                local += got->id * 31 + got->payload.size() + got->label.size() + got->shared->size();
            }
            sums[static_cast<size_t>(t)] = local;
        });
    }
    for (auto &th : pool) th.join();
    uint64_t h = 0;
    for (int t = 0; t < kThreads; t++) h = mix(h, sums[static_cast<size_t>(t)]);
    long uses = common.use_count();
    common.reset();
    std::printf("threads: uses_after=%ld expired=%d sum=%016llx\n", uses, watcher.expired() ? 1 : 0,
                static_cast<unsigned long long>(h));
    return h;
}

// Objects born in short-lived threads and freed after those threads exited:
// the allocator must keep memory of a dead thread's heap valid.
uint64_t orphans() {
    std::vector<std::shared_ptr<std::vector<std::string>>> kept;
    std::mutex mu;
    uint64_t h = 0;
    for (int round = 0; round < 20; round++) {
        std::vector<std::thread> ts;
        for (int t = 0; t < 4; t++) {
            ts.emplace_back([&, round, t] {
                auto v = std::make_shared<std::vector<std::string>>();
                for (int i = 0; i < 500; i++) v->push_back(std::to_string(round * 10000 + t * 1000 + i));
                std::lock_guard<std::mutex> g(mu);
                kept.push_back(std::move(v));
            });
        }
        for (auto &th : ts) th.join();
        if (kept.size() > 40) {
            std::sort(kept.begin(), kept.end(), [](const auto &a, const auto &b) { return (*a)[0] < (*b)[0]; });
            for (size_t i = 0; i < 20; i++) for (const auto &s : *kept[i]) h = mix_str(h, s);
            kept.erase(kept.begin(), kept.begin() + 20);
        }
    }
    std::sort(kept.begin(), kept.end(), [](const auto &a, const auto &b) { return (*a)[0] < (*b)[0]; });
    for (const auto &v : kept) for (const auto &s : *v) h = mix_str(h, s);
    std::printf("orphans: kept=%zu sum=%016llx\n", kept.size(), static_cast<unsigned long long>(h));
    return h;
}

} // namespace

int main() {
    uint64_t total = 0;
    total = mix(total, containers());
    total = mix(total, arrays());
    total = mix(total, aligned());
    total = mix(total, nothrow_and_sized());
    total = mix(total, exceptions());
    total = mix(total, threads());
    total = mix(total, orphans());
    std::printf("total: %016llx\n", static_cast<unsigned long long>(total));
    return 0;
}
