# Lays out the initial tree of the git check in the current directory:
# FILES text files (400 unless -v FILES=N) in 10 directories, plus
# "manifest", the list of files that git_edit.awk rewrites round after round.
BEGIN {
    seed = 7
    if (FILES == "") FILES = 400
    for (n = 0; n < FILES; n++) {
        d = "dir" (n % 10)
        if (!(d in made)) { system("mkdir -p " d); made[d] = 1 }
        f = d "/file" n ".txt"
        seed = (seed * 16807) % 2147483647
        lines = 20 + seed % 40
        for (l = 1; l <= lines; l++)
            printf "%s line %d: value %d %s\n", f, l, (n * 131 + l * 17) % 1000, substr("lorem ipsum dolor sit amet consectetur", 1 + (n + l) % 20) > f
        close(f)
        print f > "manifest"
    }
    close("manifest")
}
