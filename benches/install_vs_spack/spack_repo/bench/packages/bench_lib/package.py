# Bench data for benches/install_vs_spack.sh: 40 shared libraries compiled with the host gcc,
# each embedding its prefix as a C string, their headers, and 600 text files naming the prefix.
from spack_repo.builtin.build_systems.generic import Package

from spack.package import *


class BenchLib(Package):
    """Many small shared libraries and text files that name their prefix."""

    homepage = "https://example.com/bench-lib"
    has_code = False

    version("1.0")

    def install(self, spec, prefix):
        gcc = Executable("/usr/bin/gcc")
        mkdirp(prefix.lib)
        mkdirp(prefix.include)
        doc = join_path(prefix.share, "bench-lib")
        mkdirp(doc)
        for i in range(40):
            src = join_path(self.stage.path, "b%d.c" % i)
            with open(src, "w") as f:
                f.write(
                    'const char* b%d_prefix(void){ return "%s/lib/plugins/b%d"; }\n'
                    "int b%d_value(void){ return %d; }\n" % (i, prefix, i, i, i)
                )
            gcc("-shared", "-fPIC", "-O1", "-o", join_path(prefix.lib, "libb%d.so" % i), src)
            with open(join_path(prefix.include, "b%d.h" % i), "w") as f:
                f.write(
                    "/* from %s */\nconst char* b%d_prefix(void);\nint b%d_value(void);\n"
                    % (prefix, i, i)
                )
        for i in range(600):
            with open(join_path(doc, "doc%03d.txt" % i), "w") as f:
                for k in range(20):
                    f.write("line %d of %d: see %s/share/bench-lib/doc%03d.txt\n" % (k, i, prefix, i))
