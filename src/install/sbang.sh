#!/bin/sh
# sbang, as test-install (slurm-factory) installs it into an install tree: runs a script whose
# interpreter path is too long for the kernel's #! line. Spack rewrites such a script to start
#   #!/bin/sh <install root>/bin/sbang
#   #!/long/path/to/interpreter [argument]
# (`//!` or `--!` instead of `#!` on the second line for languages whose comments differ). The
# kernel then runs `/bin/sh sbang <script> [args...]`; this reads the script's second line and
# runs `interpreter [argument] <script> [args...]`, as the kernel would have.
set -u
if [ "$#" -lt 1 ]; then
    echo "usage: sbang <script> [arguments...]" >&2
    exit 2
fi
script=$1
first=
second=
if ! { IFS= read -r first && { IFS= read -r second || [ -n "$second" ]; }; } <"$script"; then
    echo "sbang: cannot read the second line of $script" >&2
    exit 126
fi
case $first in
    '#!'*) ;;
    *)
        echo "sbang: $script does not start with #!; run it directly" >&2
        exit 127
        ;;
esac
case $second in
    '#!'*) line=${second#??} ;;
    '//!'* | '--!'*) line=${second#???} ;;
    *)
        echo "sbang: $script: its second line names no interpreter (expected #!/path/to/interpreter)" >&2
        exit 127
        ;;
esac
# The interpreter ends at the first blank; the rest of the line, trimmed, is one argument.
line=${line#"${line%%[! 	]*}"}
line=${line%"${line##*[! 	]}"}
interpreter=${line%%[ 	]*}
argument=${line#"$interpreter"}
argument=${argument#"${argument%%[! 	]*}"}
if [ -z "$interpreter" ]; then
    echo "sbang: $script: its second line names no interpreter" >&2
    exit 127
fi
if [ -n "$argument" ]; then
    exec "$interpreter" "$argument" "$@"
fi
exec "$interpreter" "$@"
