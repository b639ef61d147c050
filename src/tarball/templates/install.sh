#!/bin/sh
# install.sh: finish installing an unpacked slurm-factory tarball where it is.
#
# Binaries find their libraries through $ORIGIN-relative RPATHs, but some have the build's
# prefix compiled in as C strings (Slurm's libslurmfull.so: its prefix, SBINDIR and default
# PluginDir). data/relocate-binary.txt lists them and data/build-prefixes.txt the prefixes;
# the program the tarball carries (data/bin/tarball-publish, static, the same relocation
# engine as slurm-factory's buildcache installer) rewrites them in place to this view.
# Text files name their own location with the placeholder @SLURM_FACTORY_PREFIX@ (the
# absolute path of view/); data/relocate-text.txt lists them, and sed writes the real path.
# Run it again after moving the directory: it remembers the path it wrote
# (data/.installed-prefix) and rewrites from that one. Running it twice in place changes
# nothing. Needs only a POSIX shell and sed: no Spack, Python or Perl.
#
# Usage: sh <prefix>/data/install.sh
set -eu

fail() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P) || fail "cannot find the directory of $0"
root=$(dirname -- "$here")
view="$root/view"
list="$here/relocate-text.txt"
state="$here/.installed-prefix"
placeholder='@SLURM_FACTORY_PREFIX@'

[ -d "$view" ] || fail "$view is missing: run the install.sh of an unpacked tarball (<prefix>/data/install.sh)"
[ -f "$list" ] || fail "$list is missing: the tarball is incomplete; unpack it again"
case $view in
  *'
'*) fail "the install path contains a line break; unpack the tarball somewhere else" ;;
esac

old=$placeholder
if [ -f "$state" ]; then
  old=$(cat "$state")
  [ -n "$old" ] || fail "$state is empty; delete it only if no file was relocated yet, then run again"
fi
if [ "$old" = "$view" ]; then
  printf 'install.sh: already installed at %s; nothing to do\n' "$view"
  exit 0
fi

# sed gets the old path as a basic regular expression and the new one as a replacement, both
# escaped, with a delimiter (control-A) that no path here contains.
d=$(printf '\001')
case $old$view in
  *"$d"*) fail "the install path contains a control-A character; unpack the tarball somewhere else" ;;
esac
pattern=$(printf '%s\n' "$old" | sed -e 's/[][\\.*^$]/\\&/g')
replacement=$(printf '%s\n' "$view" | sed -e 's/[\\&]/\\&/g')

# Binaries first: if this fails, the state below still names what the text files say.
if [ -s "$here/relocate-binary.txt" ]; then
  relocator="$here/bin/tarball-publish"
  [ -x "$relocator" ] || fail "$relocator is missing or not executable: the tarball is incomplete; unpack it again"
  "$relocator" relocate "$root" || fail "could not rewrite the compiled-in paths of the binaries listed in $here/relocate-binary.txt (see above)"
fi

count=0
while IFS= read -r rel || [ -n "$rel" ]; do
  [ -n "$rel" ] || continue
  case $rel in
    /* | ../* | */../* | *..) fail "relocate-text.txt names $rel, outside the tarball; refusing" ;;
  esac
  file="$root/$rel"
  [ -f "$file" ] || fail "$file is listed in relocate-text.txt but missing; unpack the tarball again"
  [ -L "$file" ] && fail "$file is a symlink; refusing to write through it"
  tmp="$file.install-sh.$$"
  sed -e "s$d$pattern$d$replacement${d}g" "$file" > "$tmp" || { rm -f "$tmp"; fail "cannot rewrite $file"; }
  # Write back in place: keeps the file's mode and hard links.
  cat "$tmp" > "$file" || { rm -f "$tmp"; fail "cannot write $file (is the directory writable?)"; }
  rm -f "$tmp"
  if grep -F -q -e "$old" "$file"; then
    fail "$file still names $old after rewriting it"
  fi
  count=$((count + 1))
done < "$list"

printf '%s\n' "$view" > "$state" || fail "cannot write $state"
printf 'install.sh: relocated %s file(s) to %s\n' "$count" "$view"
printf 'install.sh: Slurm finds its plugins in %s/lib/slurm; point SLURM_CONF at your slurm.conf (template: %s/slurm.conf)\n' "$view" "$here"
printf 'install.sh: load it with: module use %s/modules && module load slurm\n' "$root"
