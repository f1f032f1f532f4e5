# One round of edits for the git check (round number in k): changes lines
# inside some files, appends to others, deletes and renames a few, adds new
# ones, and rewrites the manifest.  Deterministic in k.
# usage: awk -v k=ROUND -f git_edit.awk manifest
{ files[NR] = $0 }
# Round 9 is the side branch: it only touches what rounds 1-5 never do
# (files whose number is 0 mod 6 and that no main round deletes or renames,
# and a directory of its own), so the later merge is clean.
k == 9 {
    num = $0; sub(/.*file/, "", num); sub(/[^0-9].*/, "", num); num += 0
    if (num % 6 == 0 && !(num % 29 >= 1 && num % 29 <= 5) && !(num % 31 >= 4 && num % 31 <= 8)) {
        print "side branch line for " num >> $0
        close($0)
    }
}
END {
    if (k == 9) {
        system("mkdir -p side")
        for (j = 0; j < 20; j++) { f = "side/s" j ".txt"; print "side " j > f; close(f) }
        exit
    }
    nout = 0
    for (i = 1; i <= NR; i++) {
        f = files[i]
        num = f; sub(/.*file/, "", num); sub(/[^0-9].*/, "", num); num += 0
        # file77 stays put so the check can blame it across all rounds.
        if (num != 77 && num % 29 == k) { system("rm -f " f); continue }
        if (num != 77 && num % 31 == k + 3) {
            nf = f; sub(/\.txt$/, "", nf); nf = nf ".r" k ".txt"
            system("mv " f " " nf); f = nf
        }
        if (num % 6 == k % 6 || num == 77) {
            n = 0
            while ((getline line < f) > 0) {
                n++
                if (n % (k + 3) == 0) line = line " [edited in round " k "]"
                buf[n] = line
            }
            close(f)
            for (j = 1; j <= n; j++) print buf[j] > f
            if (num % 4 == 0) print "appended in round " k > f
            close(f)
        }
        out[++nout] = f
    }
    for (j = 0; j < 5; j++) {
        f = "dir" j "/new" k "_" j ".txt"
        for (l = 0; l < 10 + j; l++) print "new file of round " k " line " l > f
        close(f)
        out[++nout] = f
    }
    for (j = 1; j <= nout; j++) print out[j] > "manifest"
    close("manifest")
}
