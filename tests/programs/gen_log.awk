# The perl check's input: N lines shaped like an HTTP access log, with a few
# malformed ones thrown in.
function rnd() { seed = (seed * 16807) % 2147483647; return seed }
BEGIN {
    seed = 5
    for (w = 0; w < 20; w++) rnd()  # the first outputs of a small seed are small
    split("GET GET GET POST PUT DELETE HEAD", meth, " ")
    split("200 200 200 200 304 404 500 301", stat, " ")
    split("Mozilla/5.0 curl/8.1 Wget/1.21 python-requests/2.31 Go-http-client/1.1", agents, " ")
    for (i = 0; i < N; i++) {
        if (rnd() % 500 == 0) { print "garbage line " i; continue }
        url = "/" substr("abcdefgh", 1 + rnd() % 8, 1 + rnd() % 3) "/" "p" (rnd() % 300)
        if (rnd() % 3 == 0) url = url "?id=" rnd() % 1000 "&q=x" rnd() % 50
        if (rnd() % 4 == 0) url = url "/deep/path/seg" rnd() % 9
        printf "10.%d.%d.%d - user%d [2024-01-%02dT%02d:%02d:%02d] \"%s %s HTTP/1.1\" %s %d %d.%03d \"%s\"\n",
            rnd() % 4, rnd() % 256, rnd() % 256, rnd() % 700, 1 + rnd() % 28, rnd() % 24, rnd() % 60, rnd() % 60,
            meth[1 + rnd() % 7], url, stat[1 + rnd() % 8], rnd() % 100000, rnd() % 2, rnd() % 1000, agents[1 + rnd() % 5]
    }
}
