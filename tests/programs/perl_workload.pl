#!/usr/bin/perl
# Text processing of the access-log-like file the suite generates: regex
# parsing, hashes of hashes, sorting with custom comparators, sprintf,
# split/join, tr, s///e, pack/unpack, and a slurp of the whole file, all of
# which allocate SVs, hash entries and string buffers through malloc.
# Output is fully sorted, so it depends only on the input.
use strict;
use warnings;

my $file = shift or die "usage: $0 FILE\n";
open(my $fh, '<', $file) or die "open $file: $!\n";

my (%by_status, %by_user, %paths, %bytes_by_hour, @slow);
my $lines = 0;
my $bad = 0;
while (my $line = <$fh>) {
    chomp $line;
    $lines++;
    # 10.1.2.3 - user42 [2024-01-05T13:04:59] "GET /a/b/c?x=1 HTTP/1.1" 200 5123 0.123 "agent"
    unless ($line =~ m{^(\d+\.\d+\.\d+\.\d+) - (\S+) \[(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\] "(\w+) (\S+) HTTP/1\.[01]" (\d{3}) (\d+) ([\d.]+) "([^"]*)"$}) {
        $bad++;
        next;
    }
    my ($ip, $user, $hour, $method, $url, $status, $bytes, $secs, $agent) = ($1, $2, $6, $9, $10, $11, $12, $13, $14);
    $by_status{$status}{count}++;
    $by_status{$status}{bytes} += $bytes;
    push @{ $by_user{$user}{methods} }, $method;
    $by_user{$user}{ips}{$ip} = 1;
    my ($path, $query) = split /\?/, $url, 2;
    my @segs = grep { length } split m{/}, $path;
    $paths{ join('/', @segs[0 .. ($#segs < 1 ? $#segs : 1)]) }++;
    $bytes_by_hour{$hour} += $bytes;
    if (defined $query) {
        my %q = map { my ($k, $v) = split /=/, $_, 2; ($k => $v // '') } split /&/, $query;
        $by_user{$user}{params} += scalar keys %q;
    }
    push @slow, [$secs, $url, $user] if $secs > 0.9;
    (my $ua = $agent) =~ tr/a-z/A-Z/;
    $by_user{$user}{agent_len} += length $ua;
}
close $fh;

printf "lines %d bad %d users %d paths %d\n", $lines, $bad, scalar(keys %by_user), scalar(keys %paths);
for my $s (sort { $a <=> $b } keys %by_status) {
    printf "status %s count %7d bytes %12d avg %10.2f\n", $s, $by_status{$s}{count}, $by_status{$s}{bytes},
        $by_status{$s}{bytes} / $by_status{$s}{count};
}
my @top_paths = (sort { $paths{$b} <=> $paths{$a} || $a cmp $b } keys %paths)[0 .. 14];
printf "path %-24s %d\n", $_, $paths{$_} for @top_paths;
for my $h (sort keys %bytes_by_hour) {
    printf "hour %s %s\n", $h, ('#' x int($bytes_by_hour{$h} / 2_000_000));
}
my @users = sort {
    @{ $by_user{$b}{methods} } <=> @{ $by_user{$a}{methods} } or $a cmp $b
} keys %by_user;
for my $u (@users[0 .. 19]) {
    my %m;
    $m{$_}++ for @{ $by_user{$u}{methods} };
    printf "user %-10s req %5d ips %4d params %5d agent %8d methods %s\n", $u, scalar @{ $by_user{$u}{methods} },
        scalar(keys %{ $by_user{$u}{ips} }), $by_user{$u}{params} // 0, $by_user{$u}{agent_len},
        join(',', map {"$_=$m{$_}"} sort keys %m);
}
@slow = sort { $b->[0] <=> $a->[0] || $a->[1] cmp $b->[1] || $a->[2] cmp $b->[2] } @slow;
printf "slow %d first %s\n", scalar @slow, join(' ', map { sprintf "%.3f:%s", $_->[0], $_->[1] } @slow[0 .. 4]);

# Whole-file passes: slurp, global substitution with code, word frequencies,
# and a pack/unpack round trip over every number in the file.
open($fh, '<', $file) or die "open $file: $!\n";
my $all = do { local $/; <$fh> };
close $fh;
my $subs = ($all =~ s/(\d+)\.(\d+)\.(\d+)\.(\d+)/sprintf("%02x%02x%02x%02x", $1, $2, $3, $4)/ge);
my %words;
$words{lc $1}++ while $all =~ /([A-Za-z]{4,})/g;
my @wtop = (sort { $words{$b} <=> $words{$a} || $a cmp $b } keys %words)[0 .. 9];
print "subs $subs words ", scalar(keys %words), " top ", join(',', map {"$_:$words{$_}"} @wtop), "\n";
my @nums = ($all =~ /\b(\d{3,6})\b/g);
my $packed = pack('N*', @nums);
my @back = unpack('N*', $packed);
my $sum = 0;
$sum = ($sum * 31 + $_) % 4294967291 for @back;
printf "nums %d packed %d sum %d\n", scalar @nums, length $packed, $sum;
my @rev = map { scalar reverse $_ } (split /\n/, $all)[0 .. 999];
print "rev ", join('|', @rev[0 .. 2]), "\n";
