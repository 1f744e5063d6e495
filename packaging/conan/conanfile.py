# SPDX-License-Identifier: MIT
"""Conan 2 recipe of sekuire-cpp, a header-only C++17 client for Sekuire agent fleets.

From a checkout:   conan create packaging/conan --build=missing
The sources are the checkout's include/ and LICENSE, exported with the recipe, and the
version is read from include/sekuire/version.hpp. A copy of this recipe in a recipe index
(with a conandata.yml listing the release archives) fetches the sources instead.
"""
import os
import re

from conan import ConanFile
from conan.errors import ConanException, ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy, get, load
from conan.tools.layout import basic_layout

required_conan_version = ">=2.1"


class SekuireConan(ConanFile):
    name = "sekuire"
    description = ("Header-only C++17 client for Sekuire agent fleets: beacon (bootstrap, "
                   "heartbeats, leases, token refresh, kill switch), task worker and mock backend.")
    license = "MIT"
    url = "https://github.com/sekuire/sekuire-cpp"
    homepage = "https://github.com/sekuire/sekuire-cpp"
    topics = ("sekuire", "agents", "heartbeat", "http", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    no_copy_source = True
    # cpp-httplib's recipe builds without OpenSSL by default; sekuire talks https.
    default_options = {"cpp-httplib/*:with_openssl": True}

    @property
    def _checkout(self):
        """The source tree this recipe lives in (packaging/conan/../..), when there is one."""
        root = os.path.normpath(os.path.join(self.recipe_folder, "..", ".."))
        version_hpp = os.path.join(root, "include", "sekuire", "version.hpp")
        return root if os.path.isfile(version_hpp) else None

    def set_version(self):
        if self.version or not self._checkout:
            return
        text = load(self, os.path.join(self._checkout, "include", "sekuire", "version.hpp"))
        match = re.search(r'#define\s+SEKUIRE_VERSION_STRING\s+"([^"]+)"', text)
        if not match:
            raise ConanException("include/sekuire/version.hpp has no SEKUIRE_VERSION_STRING")
        self.version = match.group(1)

    def export_sources(self):
        if self._checkout:
            # The layout of a release archive, under the layout's src/ folder.
            src = os.path.join(self.export_sources_folder, "src")
            copy(self, "LICENSE", src=self._checkout, dst=src)
            copy(self, "*", src=os.path.join(self._checkout, "include"), dst=os.path.join(src, "include"))

    def layout(self):
        basic_layout(self, src_folder="src")

    def requirements(self):
        # Headers of all three reach the consumer: sekuire's headers include them.
        self.requires("boost/[>=1.81 <2]", transitive_headers=True)
        self.requires("openssl/[>=1.1.1 <4]", transitive_headers=True)
        self.requires("cpp-httplib/[>=0.11 <1]", transitive_headers=True)

    def package_id(self):
        self.info.clear()

    def validate(self):
        check_min_cppstd(self, 17)
        if not self.dependencies["cpp-httplib"].options.with_openssl:
            raise ConanInvalidConfiguration(
                f"{self.ref} needs cpp-httplib with OpenSSL: set -o 'cpp-httplib/*:with_openssl=True'")
        boost = self.dependencies["boost"].options
        if boost.get_safe("header_only") or boost.get_safe("without_json"):
            raise ConanInvalidConfiguration(f"{self.ref} links the compiled Boost.JSON library")

    def source(self):
        sources = (self.conan_data or {}).get("sources", {}).get(str(self.version))
        if sources:
            get(self, **sources, strip_root=True)

    def build(self):
        pass  # header-only

    def package(self):
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        copy(self, "*", src=os.path.join(self.source_folder, "include"),
             dst=os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "sekuire")
        self.cpp_info.set_property("cmake_target_name", "sekuire::sekuire")
        # The CPPHTTPLIB_* definitions come from cpp-httplib's own package information.
        self.cpp_info.requires = ["boost::json", "openssl::ssl", "openssl::crypto", "cpp-httplib::cpp-httplib"]
        if self.settings.os in ("Linux", "FreeBSD"):
            self.cpp_info.system_libs = ["pthread"]
