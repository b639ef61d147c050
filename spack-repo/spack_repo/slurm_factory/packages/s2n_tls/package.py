# Copyright slurm-factory contributors.
# SPDX-License-Identifier: Apache-2.0
"""AWS s2n-tls, the TLS library of Slurm's tls/s2n plugin (Slurm >= 25.11)."""

from spack_repo.builtin.build_systems.cmake import CMakePackage

from spack.package import *


class S2nTls(CMakePackage):
    """s2n-tls: a C99 implementation of the TLS/SSL protocols (libs2n), over OpenSSL's libcrypto."""

    homepage = "https://github.com/aws/s2n-tls"
    url = "https://github.com/aws/s2n-tls/archive/refs/tags/v1.6.1.tar.gz"

    license("Apache-2.0")

    # Checksums of GitHub's tag archives, as published in Homebrew's s2n formula.
    version("1.6.1", sha256="d913741fd8329b2ff4f9f153cb1b4a0a88e788f0217f28ded1f207db6fabd5eb")
    version("1.5.23", sha256="81961ea5ae9313c987edfa579306ad4500bedfbf10caf84d8a5dcfc42aaf591f")

    depends_on("c", type="build")
    depends_on("cmake@3.9:", type="build")
    depends_on("openssl@3:")

    def cmake_args(self):
        return [
            self.define("BUILD_SHARED_LIBS", True),
            self.define("BUILD_TESTING", False),
            self.define("UNSAFE_TREAT_WARNINGS_AS_ERRORS", False),
        ]
