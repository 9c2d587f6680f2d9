#!/usr/bin/perl
# The demo's multi-domain corpus, from files every Debian machine with fusellm's build
# dependencies has (README, "The demo": the list and the licenses), split by document:
#   code   C and C++ headers under /usr/include (glibc, GCC, Open MPI, HDF5, ...)
#   docs   the Perl library's reference documentation (the POD in /usr/share/perl*, rendered as
#          text by Pod::Text, which is what pod2text does)
#   legal  license texts: /usr/share/common-licenses/* and every package's /usr/share/doc/*/copyright
# A document is one file, cut to its first 6000 bytes at a line end (texts of similar length:
# the licenses would otherwise dominate), kept if at least 400 bytes of valid UTF-8 remain;
# identical documents are kept once. Its split is fixed by its content's SHA-1, so the same file
# lands in the same split on every machine: (first 16 bits mod 100) 0-59 "source" (what that
# domain's source model learns from), 60-89 "fusion" (the target's continual-training corpus,
# all domains mixed), 90-94 "valid", 95-99 "test". Each split of a domain is filled in SHA-1
# order up to its byte budget. A domain that gives less than half its budget falls back to the
# shipped snapshot of this corpus (examples/fusion_demo/corpus.tar.gz, made by this script with
# --snapshot on Debian 12), and says so.
# Writes OUT/<split>/<domain>/<sha1>.txt and OUT/manifest.tsv (split, domain, bytes, sha1, origin).
#   perl scripts/demo/corpus.pl OUT [--scale F] [--fallback-only] [--snapshot FILE.tar.gz]
use strict;
use warnings;
use Digest::SHA qw(sha1_hex);
use Encode qw(decode encode FB_CROAK);
use File::Find;
use File::Path qw(make_path remove_tree);
use File::Basename qw(dirname);
use Pod::Text;
use Cwd ();

my $MAX_DOC = 6000;
my %BUDGET = (source => 900_000, fusion => 200_000, valid => 40_000, test => 60_000);
my @SPLITS = qw(source fusion valid test);

my ($out, $scale, $fallback_only, $snapshot_out) = (undef, 1.0, 0, undef);
while (@ARGV) {
  my $a = shift @ARGV;
  if ($a eq '--scale') { $scale = shift @ARGV; }
  elsif ($a eq '--fallback-only') { $fallback_only = 1; }
  elsif ($a eq '--snapshot') { $snapshot_out = shift @ARGV; }
  elsif ($a =~ /^-/ || defined $out) { die "corpus.pl: unknown argument '$a'\n"; }
  else { $out = $a; }
}
die "usage: corpus.pl OUT [--scale F] [--fallback-only] [--snapshot FILE.tar.gz]\n" unless defined $out;
my $root = dirname(dirname(dirname(Cwd::abs_path($0))));
my $snapshot = "$root/examples/fusion_demo/corpus.tar.gz";

sub slurp { my ($f) = @_; open(my $h, '<:raw', $f) or return undef; local $/; my $s = <$h>; close $h; return $s; }

# A text cut to a document: valid UTF-8, at most $MAX_DOC bytes ending at a line end; undef when
# too short or not UTF-8.
sub cut_doc {
  my ($bytes) = @_;
  return undef unless defined $bytes;
  my $text = eval { decode('UTF-8', $bytes, FB_CROAK) };
  return undef unless defined $text;
  $bytes = encode('UTF-8', $text);
  if (length($bytes) > $MAX_DOC) {
    $bytes = substr($bytes, 0, $MAX_DOC);
    $bytes =~ s/[^\n]*\z//;  # drop the partial last line
  }
  return length($bytes) >= 400 ? $bytes : undef;
}

sub files_under {  # sorted regular files under the dirs matching the pattern
  my ($re, @dirs) = @_;
  my @f;
  find({ wanted => sub { push @f, $File::Find::name if -f $_ && $_ =~ $re }, follow_skip => 2, no_chdir => 0 },
       grep { -d } @dirs);
  return sort @f;
}

sub collect_code { return map { slurp($_) } grep { my $s = -s $_; $s > 1000 && $s < 200_000 } files_under(qr/\.h\z/, '/usr/include'); }
sub collect_docs {
  my @docs;
  for my $f (files_under(qr/\.(pm|pod)\z/, '/usr/share/perl', '/usr/share/perl5')) {
    my $text = '';
    my $p = Pod::Text->new(width => 76, sentence => 0);
    $p->output_string(\$text);
    $p->no_errata_section(1);
    $p->complain_stderr(0);
    eval { $p->parse_file($f) };
    push @docs, encode('UTF-8', $text) unless $@;
  }
  return @docs;
}
sub collect_legal {
  my @lic = map { slurp($_) } files_under(qr/./, '/usr/share/common-licenses');
  my @cr;
  for my $d (sort glob('/usr/share/doc/*')) { push @cr, slurp("$d/copyright") if -f "$d/copyright"; }
  return (@lic, @cr);
}

sub from_snapshot {  # the documents of one domain in the shipped snapshot
  my ($dom) = @_;
  my $tmp = "$out/.snapshot";
  make_path($tmp);
  system('tar', '-xzf', $snapshot, '-C', $tmp, $dom) == 0 or die "corpus.pl: cannot read $snapshot\n";
  my @docs = map { slurp($_) } files_under(qr/\.txt\z/, "$tmp/$dom");
  remove_tree($tmp);
  return @docs;
}

remove_tree($out);
make_path($out);
open(my $manifest, '>', "$out/manifest.tsv") or die "corpus.pl: $out/manifest.tsv: $!\n";
print $manifest "split\tdomain\tbytes\tsha1\torigin\n";
my $total_budget = 0; $total_budget += $_ for values %BUDGET;
my %all;  # domain -> { sha -> bytes }: for --snapshot
for my $dom (qw(code docs legal)) {
  my %docs;
  my $origin = 'system';
  my $collect = { code => \&collect_code, docs => \&collect_docs, legal => \&collect_legal }->{$dom};
  my @raw = $fallback_only ? () : $collect->();
  my $found = 0;
  for my $r (@raw) { my $d = cut_doc($r); next unless defined $d; $docs{sha1_hex($d)} //= $d; }
  $found += length($_) for values %docs;
  if ($fallback_only || $found < $total_budget * $scale / 2) {
    print STDERR "corpus: $dom: only $found bytes on this machine; using the shipped snapshot $snapshot\n" unless $fallback_only;
    %docs = ();
    for my $r (from_snapshot($dom)) { my $d = cut_doc($r); $docs{sha1_hex($d)} //= $d if defined $d; }
    $origin = 'snapshot';
  }
  $all{$dom} = \%docs;
  my %used = map { $_ => 0 } @SPLITS;
  my %count = map { $_ => 0 } @SPLITS;
  for my $sha (sort keys %docs) {
    my $b = hex(substr($sha, 0, 4)) % 100;
    my $split = $b < 60 ? 'source' : $b < 90 ? 'fusion' : $b < 95 ? 'valid' : 'test';
    my $len = length($docs{$sha});
    next if $used{$split} + $len > $BUDGET{$split} * $scale;
    $used{$split} += $len; $count{$split}++;
    make_path("$out/$split/$dom");
    open(my $h, '>:raw', "$out/$split/$dom/$sha.txt") or die "corpus.pl: $out/$split/$dom/$sha.txt: $!\n";
    print $h $docs{$sha}; close $h;
    print $manifest "$split\t$dom\t$len\t$sha\t$origin\n";
  }
  printf STDERR "corpus: %-6s %s (%s)\n", $dom, join(', ', map { "$_ $count{$_} docs $used{$_} B" } @SPLITS), $origin;
}
close $manifest;

if (defined $snapshot_out) {  # the shipped fallback: the documents this machine gave, in budget
  my $tmp = "$out/.snap";
  for my $dom (keys %all) {
    make_path("$tmp/$dom");
    for my $split (@SPLITS) {
      for my $f (glob("$out/$split/$dom/*.txt")) { system('cp', $f, "$tmp/$dom/") == 0 or die; }
    }
  }
  system('tar', '--sort=name', '--owner=0', '--group=0', '--mtime=@0', '-czf', $snapshot_out, '-C', $tmp, 'code', 'docs', 'legal') == 0
    or die "corpus.pl: cannot write $snapshot_out\n";
  remove_tree($tmp);
}
