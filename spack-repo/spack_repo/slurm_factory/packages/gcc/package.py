# Copyright slurm-factory contributors.
# SPDX-License-Identifier: Apache-2.0
"""GCC: the builtin recipe of the pinned spack-packages, plus the releases it lacks."""

from spack_repo.builtin.packages.gcc.package import Gcc as BuiltinGcc

from spack.package import *


class Gcc(BuiltinGcc):
    """The builtin `gcc` package, unchanged, with the GCC releases that the pinned
    spack-packages commit (v2025.07.0) does not know yet. Everything else (variants,
    patches, conflicts, the build itself) is inherited."""

    # GCC 15.2.0 (2025-08-08). Checksum of https://ftpmirror.gnu.org/gcc/gcc-15.2.0/gcc-15.2.0.tar.xz
    # as published in spack/spack-packages v2025.11.0 (repos/spack_repo/builtin/packages/gcc).
    version("15.2.0", sha256="438fd996826b0c82485a29da03a72d71d6e3541a83ec702df4271f6fe025d24e")
