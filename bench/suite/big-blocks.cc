// Very large blocks: 20 live buffers of 5 - 25 MiB; each round replaces
// one at random: the old buffer is verified and deleted, the new one is
// value-initialised (new char[n](), so the allocator's memory is zeroed by
// the program on top of whatever the allocator did) and stamped.
//
// A stamp is a 64-bit word every 64 KiB, derived from the buffer's identity
// and the offset; every other word sampled is checked to be still zero.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

extern "C" {
#include "check.h"
}

namespace {

constexpr size_t kStride = 64 * 1024;

struct Buffer {
    char *p = nullptr;
    size_t n = 0;
    uint64_t id = 0;
};

uint64_t stamp_at(uint64_t id, size_t off)
{
    return (id * 0x9E3779B97F4A7C15ull) ^ (off * 0xD6E8FEB86659FD93ull) ^ 1;
}

void stamp(Buffer &b)
{
    for (size_t off = 0; off + 8 <= b.n; off += kStride) {
        uint64_t v = stamp_at(b.id, off);
        std::memcpy(b.p + off, &v, 8);
    }
}

// Verifies the stamps, and that the word half a stride past each stamp is
// still the zero new char[n]() put there.
uint64_t verify(const Buffer &b)
{
    uint64_t sum = 0;
    for (size_t off = 0; off + 8 <= b.n; off += kStride) {
        uint64_t v, z = 1;
        std::memcpy(&v, b.p + off, 8);
        if (v != stamp_at(b.id, off))
            check_failed("a large buffer's stamp changed while it was live");
        if (off + kStride / 2 + 8 <= b.n)
            std::memcpy(&z, b.p + off + kStride / 2, 8);
        else
            z = 0;
        if (z != 0)
            check_failed("a large buffer's zeroed bytes changed while it was live");
        sum = mix(sum, v);
    }
    if (b.n > 0 && b.p[b.n - 1] != 0 && (b.n - 1) % kStride >= 8)
        check_failed("a large buffer's last byte is not zero");
    return sum;
}

void fresh(Buffer &b, bench_rng *r, uint64_t id)
{
    b.n = (5u << 20) + static_cast<size_t>(bench_rng_below(r, (20u << 20) + 1));
    b.id = id;
    b.p = new char[b.n]();
    stamp(b);
}

}  // namespace

int main(int argc, char **argv)
{
    suite_opt o[] = {
        {"rounds", 2000, "buffers replaced"},
        {"live", 20, "buffers live at once"},
        {"seed", 1, "generator seed"},
    };
    parse_args(argc, argv, o, sizeof o / sizeof o[0]);
    bench_rng r;
    bench_rng_seed(&r, o[2].value);
    const size_t live = o[1].value;
    Buffer *bufs = new Buffer[live];
    uint64_t id = 1, sum = 0;
    try {
        for (size_t i = 0; i < live; i++)
            fresh(bufs[i], &r, id++);
        for (uint64_t round = 0; round < o[0].value; round++) {
            Buffer &b = bufs[bench_rng_below(&r, live)];
            sum = mix(sum, verify(b));
            delete[] b.p;
            fresh(b, &r, id++);
        }
    } catch (const std::bad_alloc &) {
        std::fprintf(stderr, "%s: a large allocation failed\n", suite_prog);
        return SUITE_EXIT_NOMEM;
    }
    for (size_t i = 0; i < live; i++) {
        sum = mix(sum, verify(bufs[i]));
        delete[] bufs[i].p;
    }
    delete[] bufs;
    print_result(sum, o[0].value, nullptr);
    return 0;
}
