# Copyright slurm-factory contributors.
# SPDX-License-Identifier: Apache-2.0
"""Slurm as slurm-factory builds it: relocatable, with the plugins HPC sites expect."""

import os

from spack_repo.builtin.build_systems.autotools import AutotoolsPackage

from spack.package import *

# Where each checksum below comes from (public material only; none is invented):
#   GitHub archive of the SchedMD tag, https://github.com/SchedMD/slurm/archive/slurm-<tag>.tar.gz,
#   as published in spack/spack-packages (commit 6ed69a4c8379537d3b124196d40cb846cbda97ef,
#   "slurm: add v25.05, v25.11, and v26.05").
# No public sha256 of SchedMD's own download (https://download.schedmd.com/slurm/slurm-X.Y.Z.tar.bz2)
# was found for these releases, so those versions fetch the GitHub archive of the same tag.
GITHUB_ARCHIVE = "https://github.com/SchedMD/slurm/archive/slurm-{0}.tar.gz"


class Slurm(AutotoolsPackage):
    """Slurm workload manager, built to run from any prefix.

    Every ELF file gets $ORIGIN-relative RPATHs next to Spack's absolute ones, so a merged,
    hardlinked view of Slurm and its dependencies keeps working after it is moved or unpacked
    somewhere else. The PMI-2 library (contribs/pmi2) and the NSS module (contribs/nss_slurm)
    are installed too. Note: sysconfdir and the plugin directory are compiled in; a moved
    install needs SLURM_CONF (or sysconfdir=/etc/slurm) and PluginDir in slurm.conf.
    """

    homepage = "https://slurm.schedmd.com"
    url = "https://download.schedmd.com/slurm/slurm-25.11.6.tar.bz2"

    license("GPL-2.0-or-later")

    # Versions are SchedMD tags (YY-MM-PATCH-BUILD); catalog.yaml names which ones are built.
    version(
        "26-05-1-1",
        sha256="432362d3ced66476a8edb61b6c06b6f0c0c1b3bbbf40589fae94de0664c803b5",
        url=GITHUB_ARCHIVE.format("26-05-1-1"),
    )
    # CHECKSUM-MISSING: no public checksum for Slurm 26.05.0 was found and none was invented.
    # Spack refuses to fetch this version until a reviewed sha256 is added here.
    version("26-05-0-1")
    version(
        "25-11-6-1",
        sha256="2e305a5cc051d08ded4d710e349636b6a054da2c371bbce85797744b693ca790",
        url=GITHUB_ARCHIVE.format("25-11-6-1"),
    )
    version(
        "24-11-6-1",
        sha256="282708483326f381eb001a14852a1a82e65e18f37b62b7a5f4936c0ed443b600",
        url=GITHUB_ARCHIVE.format("24-11-6-1"),
    )
    version(
        "23-11-11-1",
        sha256="e9234e664ce30be206f73c0ff1a5f33e0ce32be35ece812eac930fcaa9da2c2f",
        url=GITHUB_ARCHIVE.format("23-11-11-1"),
    )

    variant(
        "sysconfdir",
        default="PREFIX/etc",
        values=any,
        description="Directory of slurm.conf (slurm-factory builds use /etc/slurm)",
    )
    variant("nvml", default=False, description="NVIDIA GPU autodetection through NVML (CUDA)")
    variant("rsmi", default=False, description="AMD GPU autodetection through ROCm SMI")
    variant("pmix", default=True, description="PMIx support (srun --mpi=pmix)")
    variant("hdf5", default=True, description="HDF5 job profiling (acct_gather_profile/hdf5)")
    variant("restd", default=True, description="slurmrestd, with JWT authentication")
    variant("kafka", default=True, description="Kafka job completion plugin (jobcomp/kafka)")

    depends_on("c", type="build")
    depends_on("pkgconfig", type="build")
    depends_on("patchelf@0.14:", type="build")

    depends_on("curl")
    depends_on("json-c")
    depends_on("lz4")
    depends_on("munge")
    depends_on("openssl@3:")
    depends_on("zlib-api")
    depends_on("readline")
    depends_on("lua")
    depends_on("hwloc@2:")
    depends_on("libyaml")
    depends_on("libjwt")

    depends_on("hdf5", when="+hdf5")
    depends_on("pmix@:5", when="+pmix")
    depends_on("http-parser", when="+restd")
    depends_on("librdkafka", when="+kafka")
    depends_on("cuda", when="+nvml")
    depends_on("rocm-smi-lib", when="+rsmi")
    # Slurm >= 25.11 implements TLS between daemons with s2n-tls (tls/s2n).
    depends_on("s2n-tls", when="@25-11:")

    def url_for_version(self, version):
        # SchedMD tag 25-11-6-1 is release 25.11.6: drop the last tag component.
        parts = str(version).split("-")
        return "https://download.schedmd.com/slurm/slurm-{0}.tar.bz2".format(".".join(parts[:3]))

    def configure_args(self):
        spec = self.spec
        args = [
            "--disable-debug",
            "--enable-multiple-slurmd",
            "--with-libcurl={0}".format(spec["curl"].prefix),
            "--with-json={0}".format(spec["json-c"].prefix),
            "--with-lz4={0}".format(spec["lz4"].prefix),
            "--with-munge={0}".format(spec["munge"].prefix),
            "--with-ssl={0}".format(spec["openssl"].prefix),
            "--with-zlib={0}".format(spec["zlib-api"].prefix),
            "--with-hwloc={0}".format(spec["hwloc"].prefix),
            "--with-yaml={0}".format(spec["libyaml"].prefix),
            "--with-jwt={0}".format(spec["libjwt"].prefix),
            "--with-lua",
            "--disable-gtktest",
        ]

        if spec.satisfies("+hdf5"):
            args.append("--with-hdf5={0}".format(spec["hdf5"].prefix.bin.h5cc))
        else:
            args.append("--without-hdf5")

        if spec.satisfies("+pmix"):
            args.append("--with-pmix={0}".format(spec["pmix"].prefix))
        else:
            args.append("--without-pmix")

        if spec.satisfies("+restd"):
            args.append("--enable-slurmrestd")
            # Slurm 26.05 renamed the option.
            flag = "--with-libhttp-parser" if spec.satisfies("@26-05:") else "--with-http-parser"
            args.append("{0}={1}".format(flag, spec["http-parser"].prefix))
        else:
            args.append("--disable-slurmrestd")

        if spec.satisfies("+kafka"):
            args.append("--with-rdkafka={0}".format(spec["librdkafka"].prefix))

        if spec.satisfies("@25-11:"):
            args.append("--with-s2n={0}".format(spec["s2n-tls"].prefix))

        if spec.satisfies("+nvml"):
            args.append("--with-nvml={0}".format(spec["cuda"].prefix))
        if spec.satisfies("+rsmi"):
            args.append("--with-rsmi={0}".format(spec["rocm-smi-lib"].prefix))

        sysconfdir = spec.variants["sysconfdir"].value
        if sysconfdir != "PREFIX/etc":
            args.append("--sysconfdir={0}".format(sysconfdir))

        return args

    def install(self, spec, prefix):
        make("install")
        # Sites expect libpmi2 (srun --mpi=pmi2) and the NSS module (libnss_slurm).
        make("-C", "contribs/pmi2", "install")
        make("-C", "contribs/nss_slurm", "install")

    @run_after("install")
    def add_origin_rpaths(self):
        """Append $ORIGIN-relative RPATHs so a merged view runs from any prefix."""
        patchelf = which("patchelf", required=True)
        relative = {
            "bin": "$ORIGIN/../lib:$ORIGIN/../lib/slurm",
            "sbin": "$ORIGIN/../lib:$ORIGIN/../lib/slurm",
            "lib": "$ORIGIN:$ORIGIN/slurm",
            os.path.join("lib", "slurm"): "$ORIGIN:$ORIGIN/..",
        }
        for sub, rpath in relative.items():
            directory = os.path.join(self.prefix, sub)
            if not os.path.isdir(directory):
                continue
            for name in sorted(os.listdir(directory)):
                path = os.path.join(directory, name)
                if os.path.islink(path) or not os.path.isfile(path) or not _is_elf(path):
                    continue
                patchelf("--add-rpath", rpath, path)


def _is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"
