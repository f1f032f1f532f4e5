# Writes a C program of a few thousand lines for the gcc check: many
# functions with tables, loops, switches, structs and string formatting, so
# cc1's optimisers (which allocate heavily) have real work, plus a handful of
# deliberate -Wall/-Wextra warnings so diagnostics are compared too.
# Usage: awk -v NFUNC=150 -f gen_c.awk > gen.c
function rnd() {
    # LCG of our own: awk's rand() differs between implementations.
    seed = (seed * 16807) % 2147483647
    return seed
}
BEGIN {
    seed = 42
    if (NFUNC == "") NFUNC = 150
    print "#include <stdio.h>"
    print "#include <stdint.h>"
    print "#include <string.h>"
    print ""
    print "struct acc { uint64_t sum; uint32_t count; char label[48]; };"
    print ""
    for (f = 0; f < NFUNC; f++) {
        print "static const int table_" f "[16] = {"
        line = "   "
        for (k = 0; k < 16; k++) line = line " " (rnd() % 1000 - 500) ","
        print line
        print "};"
        print ""
        if (f % 37 == 5)
            print "static uint64_t fn_" f "(uint64_t x, struct acc *a, int spare)"
        else
            print "static uint64_t fn_" f "(uint64_t x, struct acc *a)"
        print "{"
        print "    uint64_t h = x ^ " rnd() "u;"
        if (f % 41 == 7) print "    int unused_" f " = (int)x;"
        print "    for (int i = 0; i < " (20 + rnd() % 200) "; i++) {"
        print "        h = h * 6364136223846793005u + (uint64_t)table_" f "[i & 15];"
        print "        switch ((h >> 17) & 7) {"
        for (c = 0; c < 8; c++) {
            op = rnd() % 4
            if (op == 0) expr = "h ^= h >> " (1 + rnd() % 31) ";"
            else if (op == 1) expr = "h += (uint64_t)i * " (1 + rnd() % 97) "u;"
            else if (op == 2) expr = "h = (h << " (1 + rnd() % 13) ") | (h >> " (64 - 1 - rnd() % 13) ");"
            else expr = "h -= (uint64_t)table_" f "[(i + " c ") & 15];"
            print "        case " c ": " expr " break;"
        }
        print "        }"
        print "    }"
        print "    a->sum += h;"
        print "    a->count++;"
        print "    snprintf(a->label, sizeof a->label, \"fn_" f ":%08llx\", (unsigned long long)(h & 0xffffffffu));"
        print "    return h;"
        print "}"
        print ""
    }
    print "int main(void)"
    print "{"
    print "    struct acc a;"
    print "    memset(&a, 0, sizeof a);"
    print "    uint64_t x = 1;"
    for (f = 0; f < NFUNC; f++) {
        if (f % 37 == 5) print "    x = fn_" f "(x, &a, " f ");"
        else print "    x = fn_" f "(x, &a);"
        if (f % 10 == 9) print "    printf(\"%d %016llx %s\\n\", " f ", (unsigned long long)x, a.label);"
    }
    print "    printf(\"total %016llx %u\\n\", (unsigned long long)a.sum, a.count);"
    print "    return 0;"
    print "}"
}
