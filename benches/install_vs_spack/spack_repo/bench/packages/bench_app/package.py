# Bench data for benches/install_vs_spack.sh: 45 programs and 5 shared libraries compiled with
# the host gcc (RPATHs into this prefix and bench-lib's), 900 text files naming both prefixes,
# 20 scripts whose (padded, long) shebang Spack routes through sbang, and 24 MiB of
# incompressible data.
import os

from spack_repo.builtin.build_systems.generic import Package

from spack.package import *


class BenchApp(Package):
    """Many small programs, libraries, scripts and text files that name their prefixes."""

    homepage = "https://example.com/bench-app"
    has_code = False

    version("1.0")

    depends_on("bench-lib", type=("build", "link", "run"))

    def install(self, spec, prefix):
        gcc = Executable("/usr/bin/gcc")
        lib = spec["bench-lib"].prefix
        mkdirp(prefix.bin)
        mkdirp(prefix.lib)
        etc = join_path(prefix.etc, "bench-app")
        mkdirp(etc)
        data = join_path(prefix.share, "bench-app")
        mkdirp(data)
        for i in range(5):
            src = join_path(self.stage.path, "a%d.c" % i)
            with open(src, "w") as f:
                f.write('const char* a%d_prefix(void){ return "%s"; }\n' % (i, prefix))
            gcc("-shared", "-fPIC", "-O1", "-o", join_path(prefix.lib, "liba%d.so" % i), src)
        for i in range(45):
            src = join_path(self.stage.path, "p%d.c" % i)
            with open(src, "w") as f:
                f.write(
                    "#include <stdio.h>\n"
                    "const char* b%d_prefix(void); int b%d_value(void); const char* a%d_prefix(void);\n"
                    'static const char* conf = "%s/etc/bench-app/p%d.conf";\n'
                    'int main(void){ printf("%%s %%s %%s %%d\\n", conf, a%d_prefix(), b%d_prefix(), b%d_value()); return 0; }\n'
                    % (i % 40, i % 40, i % 5, prefix, i, i % 5, i % 40, i % 40)
                )
            gcc(
                "-O1",
                "-o",
                join_path(prefix.bin, "p%d" % i),
                src,
                "-L%s" % lib.lib,
                "-L%s" % prefix.lib,
                "-lb%d" % (i % 40),
                "-la%d" % (i % 5),
                "-Wl,-rpath,%s:%s" % (prefix.lib, lib.lib),
            )
        for i in range(900):
            with open(join_path(etc, "c%03d.conf" % i), "w") as f:
                for k in range(15):
                    f.write("key%d = %s/share/bench-app/x%d\n" % (k, prefix, k))
                f.write("plugins = %s/lib/plugins\n" % lib)
        for i in range(20):
            path = join_path(prefix.bin, "tool%d.sh" % i)
            with open(path, "w") as f:
                f.write("#!%s/bin/p%d-shell\nexec %s/bin/p%d \"$@\"\n" % (prefix, i, prefix, i))
            os.chmod(path, 0o755)
            shell = join_path(prefix.bin, "p%d-shell" % i)
            with open(shell, "w") as f:
                f.write('#!/bin/sh\nexec /bin/sh "$@"\n')
            os.chmod(shell, 0o755)
        with open(join_path(data, "blob.bin"), "wb") as f:
            f.write(os.urandom(24 << 20))
