# The sort check's input: about BYTES bytes of "word number key float" lines
# with many duplicate keys (so -u and stable ordering matter).
function rnd() { seed = (seed * 16807) % 2147483647; return seed }
BEGIN {
    seed = 3
    for (w = 0; w < 20; w++) rnd()  # the first outputs of a small seed are small
    total = 0
    # Words are slices of one random string: building each one a letter at
    # a time made generation the slowest part of the check.
    pool = ""
    for (j = 0; j < 4000; j++) pool = pool substr("abcdefghijklmnopqrstuvwxyz", 1 + rnd() % 26, 1)
    while (total < BYTES) {
        w = substr(pool, 1 + rnd() % 3980, 3 + rnd() % 10)
        line = sprintf("%s %d k%d %d.%de%d", w, rnd() % 1000000 - 500000, rnd() % 5000, rnd() % 100, rnd() % 1000, rnd() % 5 - 2)
        print line
        total += length(line) + 1
    }
}
