# The sqlite check's load script: two tables, N (default 100k) + 2k rows in one
# transaction, and indexes built afterwards.
function rnd() { seed = (seed * 16807) % 2147483647; return seed }
BEGIN {
    seed = 99
    if (N == "") N = 100000
    for (w = 0; w < 20; w++) rnd()  # the first outputs of a small seed are small
    print "PRAGMA journal_mode=DELETE;"
    print "CREATE TABLE customer(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, tier INTEGER);"
    print "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER REFERENCES customer(id), item TEXT, qty INTEGER, price REAL, note TEXT);"
    print "BEGIN;"
    for (i = 1; i <= 2000; i++)
        printf "INSERT INTO customer VALUES(%d,'cust%05d','city%d',%d);\n", i, rnd() % 100000, rnd() % 40, rnd() % 5
    for (i = 1; i <= N; i++) {
        n = rnd() % 60
        note = substr("the quick brown fox jumps over the lazy dog and keeps running far away", 1 + n % 20, n)
        printf "INSERT INTO orders VALUES(%d,%d,'item-%d',%d,%d.%02d,'%s');\n", i, 1 + rnd() % 2000, rnd() % 700, 1 + rnd() % 20, rnd() % 500, rnd() % 100, note
    }
    print "COMMIT;"
    print "CREATE INDEX orders_customer ON orders(customer);"
    print "CREATE INDEX orders_item ON orders(item, qty);"
}
