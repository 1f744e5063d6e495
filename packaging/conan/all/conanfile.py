# SPDX-License-Identifier: MIT
"""Conan 2 recipe of sekuire-cpp, in the shape of a ConanCenter recipe (recipes/sekuire/all/).

The sources are the release archive named in conandata.yml, which scripts/release-port
writes next to a copy of this recipe (docs/packaging.md, "Conan"); nothing is read from a
checkout.
"""
import os

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy, get
from conan.tools.layout import basic_layout

required_conan_version = ">=2.1"


class SekuireConan(ConanFile):
    name = "sekuire"
    description = ("Header-only C++17 client for Sekuire agent fleets: beacon (bootstrap, "
                   "heartbeats, leases, token refresh, kill switch), task worker and mock backend.")
    license = "MIT"
    url = "https://github.com/conan-io/conan-center-index"
    homepage = "https://github.com/sekuire/sekuire-cpp"
    topics = ("agents", "heartbeat", "server-sent-events", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    no_copy_source = True

    def configure(self):
        # A default the user may still override (ConanCenter's way, rather than
        # default_options); validate() explains why the override is refused.
        self.options["cpp-httplib"].with_openssl = True

    def layout(self):
        basic_layout(self, src_folder="src")

    def requirements(self):
        # sekuire's headers include all three (Boost: Asio, Beast, JSON, System), so their
        # headers reach the consumer.
        self.requires("boost/1.86.0", transitive_headers=True)
        self.requires("cpp-httplib/0.20.1", transitive_headers=True)
        self.requires("openssl/[>=1.1 <4]", transitive_headers=True)

    def package_id(self):
        self.info.clear()

    def validate(self):
        check_min_cppstd(self, 17)
        # The credential file store uses flock(), open() and rename() (<sys/file.h>,
        # <unistd.h>): POSIX only.
        if self.settings.os == "Windows":
            raise ConanInvalidConfiguration(f"{self.ref} supports POSIX systems only: its credential "
                                            "file store uses flock() and <unistd.h>")
        if not self.dependencies["cpp-httplib"].options.with_openssl:
            raise ConanInvalidConfiguration(
                f"{self.ref} talks https to its backend: it needs -o 'cpp-httplib/*:with_openssl=True'")
        boost = self.dependencies["boost"].options
        if boost.get_safe("header_only") or boost.get_safe("without_json"):
            raise ConanInvalidConfiguration(f"{self.ref} links the compiled Boost.JSON library")

    def source(self):
        get(self, **self.conan_data["sources"][self.version], strip_root=True)

    def build(self):
        pass

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"),
             os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "sekuire")
        self.cpp_info.set_property("cmake_target_name", "sekuire::sekuire")
        self.cpp_info.set_property("pkg_config_name", "sekuire")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        # Boost.Asio and Boost.Beast (beast_transport.hpp) are headers; Boost.JSON is compiled.
        # The CPPHTTPLIB_* definitions come from cpp-httplib's own package information.
        self.cpp_info.requires = ["boost::headers", "boost::json", "cpp-httplib::cpp-httplib",
                                  "openssl::ssl", "openssl::crypto"]
        if self.settings.os in ["Linux", "FreeBSD"]:
            self.cpp_info.system_libs = ["pthread"]
