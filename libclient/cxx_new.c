/* C++ operator new and delete, in every form, by their mangled names, so that
 * the library needs no C++ runtime of its own and C programs do not load one.
 * Failing plain new throws std::bad_alloc through libstdc++, found weakly:
 * only a program that uses libstdc++ can call operator new at all.  The
 * unwinder passes through these C frames thanks to their unwind tables. */
#ifndef HAKMEM_PREFIX
#include "alloc.h"
#include "internal.h"

#include <stdlib.h>

typedef void (*new_handler_fn)(void);
extern new_handler_fn _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

#define EXPORT __attribute__((visibility("default")))
#define RA() ((uintptr_t)__builtin_return_address(0))

static HK_NOINLINE void *new_failed(size_t size, size_t align, int nothrow, uintptr_t ra)
{
    for (;;) {
        new_handler_fn handler = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
        if (handler == NULL) {
            if (nothrow) return NULL;
            if (_ZSt17__throw_bad_allocv) _ZSt17__throw_bad_allocv();
            hk_fatal("operator new(%zu): out of memory", size);
        }
        handler();
        void *p = align ? hk_alloc_aligned(align, size, ra) : hk_alloc(size, ra);
        if (p) return p;
    }
}

static inline __attribute__((always_inline)) void *new_impl(size_t size, size_t align, int nothrow, uintptr_t ra)
{
    void *p = align ? hk_alloc_aligned(align, size, ra) : hk_alloc(size, ra);
    if (likely(p != NULL)) return p;
    return new_failed(size, align, nothrow, ra);
}

/* operator new(size_t) and new[] */
EXPORT void *_Znwm(size_t n) { return new_impl(n, 0, 0, RA()); }
EXPORT void *_Znam(size_t n) { return new_impl(n, 0, 0, RA()); }
/* nothrow */
EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt) { (void)nt; return new_impl(n, 0, 1, RA()); }
EXPORT void *_ZnamRKSt9nothrow_t(size_t n, const void *nt) { (void)nt; return new_impl(n, 0, 1, RA()); }
/* aligned (std::align_val_t is a size_t underneath) */
EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t al) { return new_impl(n, al, 0, RA()); }
EXPORT void *_ZnamSt11align_val_t(size_t n, size_t al) { return new_impl(n, al, 0, RA()); }
EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt)
{ (void)nt; return new_impl(n, al, 1, RA()); }
EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt)
{ (void)nt; return new_impl(n, al, 1, RA()); }

/* operator delete in all its forms: sizes and alignments are known from the
 * block itself. */
#define DELETE_BODY hk_free(p, "operator delete()")
EXPORT void _ZdlPv(void *p) { DELETE_BODY; }
EXPORT void _ZdaPv(void *p) { DELETE_BODY; }
EXPORT void _ZdlPvm(void *p, size_t n) { (void)n; DELETE_BODY; }
EXPORT void _ZdaPvm(void *p, size_t n) { (void)n; DELETE_BODY; }
EXPORT void _ZdlPvRKSt9nothrow_t(void *p, const void *nt) { (void)nt; DELETE_BODY; }
EXPORT void _ZdaPvRKSt9nothrow_t(void *p, const void *nt) { (void)nt; DELETE_BODY; }
EXPORT void _ZdlPvSt11align_val_t(void *p, size_t al) { (void)al; DELETE_BODY; }
EXPORT void _ZdaPvSt11align_val_t(void *p, size_t al) { (void)al; DELETE_BODY; }
EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t al) { (void)n; (void)al; DELETE_BODY; }
EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t al) { (void)n; (void)al; DELETE_BODY; }
EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt)
{ (void)al; (void)nt; DELETE_BODY; }
EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt)
{ (void)al; (void)nt; DELETE_BODY; }
#else
typedef int hk_cxx_new_not_in_prefixed_build;
#endif
