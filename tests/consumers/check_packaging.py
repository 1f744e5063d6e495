# SPDX-License-Identifier: MIT
"""Offline checks of sekuire's vcpkg ports and Conan recipe against the conventions of the
vcpkg registry and of ConanCenter (neither tool can run without network). Run by
tests/consumers/run_consumer.cmake:

    check_packaging.py vcpkg-overlay  <source dir> <version>
    check_packaging.py vcpkg-registry <source dir> <out dir> <version> <archive>
    check_packaging.py conan-recipe   <recipe dir>
    check_packaging.py conan-release  <out dir> <version> <archive> <url>

Each prints what it checked and exits 1 with every problem it found.
"""
import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

problems = []


def problem(text):
    problems.append(text)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_json(path):
    try:
        return json.loads(read(path))
    except (OSError, json.JSONDecodeError) as e:
        problem(f"{path}: {e}")
        return {}


def load_yaml(path):
    try:
        import yaml
    except ImportError:
        problem("python3-yaml is missing (scripts/setup-deps installs it)")
        return {}
    try:
        return yaml.safe_load(read(path)) or {}
    except (OSError, yaml.YAMLError) as e:
        problem(f"{path}: {e}")
        return {}


def file_hash(path, algorithm):
    with open(path, "rb") as f:
        return hashlib.new(algorithm, f.read()).hexdigest()


# ---- vcpkg ----------------------------------------------------------------------------------

EXPECTED_DEPENDENCIES = ["boost-asio", "boost-assert", "boost-beast", "boost-json", "boost-system",
                         "cpp-httplib", "openssl", "vcpkg-cmake", "vcpkg-cmake-config"]


def check_manifest(path, version):
    m = load_json(path)
    if not m:
        return m
    expect = {"name": "sekuire", "version-semver": version, "license": "MIT",
              "homepage": "https://github.com/sekuire/sekuire-cpp", "supports": "!windows"}
    for key, value in expect.items():
        if m.get(key) != value:
            problem(f"{path}: '{key}' is {m.get(key)!r}, expected {value!r}")
    if not m.get("description"):
        problem(f"{path}: no description")
    for key in ("version", "version-string", "version-date"):
        if key in m:
            problem(f"{path}: '{key}' besides 'version-semver' (a manifest has one version field)")
    if m.get("port-version", 1) == 0:
        problem(f"{path}: 'port-version': 0 is left out in vcpkg's format")
    names = []
    for dep in m.get("dependencies", []):
        if isinstance(dep, str):
            names.append(dep)
            continue
        names.append(dep.get("name"))
        if dep.get("name") == "cpp-httplib":
            if dep.get("default-features") is not False or dep.get("features") != ["openssl"]:
                problem(f"{path}: cpp-httplib needs \"default-features\": false and the feature openssl")
        elif dep.get("name") in ("vcpkg-cmake", "vcpkg-cmake-config"):
            if dep.get("host") is not True:
                problem(f"{path}: {dep.get('name')} must be a host dependency")
    if names != EXPECTED_DEPENDENCIES:
        problem(f"{path}: dependencies are {names}, expected {EXPECTED_DEPENDENCIES} (sorted: "
                "what the headers include, and the host helpers)")
    return m


def cmake_calls(text):
    """The names of the commands a CMake script calls (comments removed)."""
    code = re.sub(r"#[^\n]*", "", text)
    return set(name.lower() for name in re.findall(r"(?m)^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(", code)), code


def check_portfile_common(path, text):
    calls, code = cmake_calls(text)
    for call in ("vcpkg_cmake_configure", "vcpkg_cmake_install", "vcpkg_cmake_config_fixup",
                 "vcpkg_install_copyright"):
        if call not in calls:
            problem(f"{path}: does not call {call}()")
    if not re.search(r"set\(VCPKG_BUILD_TYPE release\)", code):
        problem(f"{path}: a header-only port sets VCPKG_BUILD_TYPE release")
    for option in ("-DSEKUIRE_BUILD_TESTS=OFF", "-DSEKUIRE_BUILD_EXAMPLES=OFF", "-DSEKUIRE_BUILD_TOOLS=OFF",
                   "-DSEKUIRE_INSTALL=ON"):
        if option not in code:
            problem(f"{path}: no {option}")
    if not re.search(r"vcpkg_cmake_config_fixup\(\s*PACKAGE_NAME\s+sekuire\s+CONFIG_PATH\s+\"?share/cmake/sekuire\"?", code):
        problem(f"{path}: vcpkg_cmake_config_fixup must name share/cmake/sekuire, where the install rules put it")
    if "/usage\"" not in code:
        problem(f"{path}: does not install the usage file")
    return calls, code


def check_usage(path):
    usage = read(path)
    if "find_package(sekuire CONFIG REQUIRED)" not in usage or not re.search(
            r"target_link_libraries\([^)]*PRIVATE sekuire::sekuire\)", usage):
        problem(f"{path}: must show find_package(sekuire CONFIG REQUIRED) and sekuire::sekuire")
    return usage


def vcpkg_overlay(source, version):
    port = os.path.join(source, "packaging", "vcpkg", "overlay-ports", "sekuire")
    check_manifest(os.path.join(port, "vcpkg.json"), version)
    path = os.path.join(port, "portfile.cmake")
    calls, code = check_portfile_common(path, read(path))
    if "vcpkg_from_github" in calls or "SHA512" in code:
        problem(f"{path}: the overlay port builds the checkout; it downloads nothing")
    match = re.search(r'get_filename_component\(SEKUIRE_CHECKOUT "\$\{CMAKE_CURRENT_LIST_DIR\}([^"]*)" ABSOLUTE\)', code)
    if not match:
        problem(f"{path}: no checkout lookup (get_filename_component(SEKUIRE_CHECKOUT ...))")
    else:
        found = os.path.realpath(port + match.group(1))
        if found != os.path.realpath(source):
            problem(f"{path}: the checkout lookup finds {found}, not {os.path.realpath(source)}")
    if not re.search(r'set\(SOURCE_PATH "\$\{SEKUIRE_CHECKOUT\}"\)', code):
        problem(f"{path}: the overlay port must build the checkout (SOURCE_PATH)")
    if "message(FATAL_ERROR" not in code:
        problem(f"{path}: outside a checkout the overlay port must stop with a message")
    check_usage(os.path.join(port, "usage"))

    template_path = os.path.join(source, "packaging", "vcpkg", "registry-port", "portfile.cmake.in")
    template = read(template_path)
    if template.count("@SEKUIRE_ARCHIVE_SHA512@") != 1:
        problem(f"{template_path}: must hold @SEKUIRE_ARCHIVE_SHA512@ once (scripts/release-port fills it)")
    if os.path.exists(os.path.join(source, "packaging", "vcpkg", "registry-port", "portfile.cmake")):
        problem("packaging/vcpkg/registry-port/ must hold the template only: the port is written at release")
    return (f"vcpkg overlay port: manifest {version}, supports !windows, portfile builds {source}; registry template present")


def vcpkg_registry(source, out, version, archive):
    reg = os.path.join(out, "vcpkg")
    port = os.path.join(reg, "ports", "sekuire")
    names = sorted(os.listdir(port)) if os.path.isdir(port) else []
    if names != ["portfile.cmake", "usage", "vcpkg.json"]:
        problem(f"{port}: holds {names}, expected portfile.cmake, usage, vcpkg.json")
        return None
    check_manifest(os.path.join(port, "vcpkg.json"), version)
    path = os.path.join(port, "portfile.cmake")
    text = read(path)
    calls, code = check_portfile_common(path, text)
    if "vcpkg_from_github" not in calls:
        problem(f"{path}: the registry port downloads the release with vcpkg_from_github()")
    for field, regex in (("REPO", r"\bREPO\s+sekuire/sekuire-cpp\b"), ("REF", r'\bREF\s+"v\$\{VERSION\}"'),
                         ("HEAD_REF", r"\bHEAD_REF\s+main\b")):
        if not re.search(regex, code):
            problem(f"{path}: vcpkg_from_github needs {field} ({regex})")
    sha = re.search(r"\bSHA512\s+(\S+)", code)
    expected = file_hash(archive, "sha512")
    if not sha:
        problem(f"{path}: no SHA512")
    elif not re.fullmatch(r"[0-9a-f]{128}", sha.group(1)) or set(sha.group(1)) == {"0"}:
        problem(f"{path}: SHA512 '{sha.group(1)}' is a placeholder, not a SHA-512")
    elif sha.group(1) != expected:
        problem(f"{path}: SHA512 {sha.group(1)} is not that of {archive} ({expected})")
    if re.search(r"@[A-Z_]+@", text) or "SEKUIRE_CHECKOUT" in code:
        problem(f"{path}: holds a template placeholder or the overlay's checkout lookup")
    overlay_usage = read(os.path.join(source, "packaging", "vcpkg", "overlay-ports", "sekuire", "usage"))
    if check_usage(os.path.join(port, "usage")) != overlay_usage:
        problem(f"{port}/usage differs from the overlay port's")

    baseline = load_json(os.path.join(reg, "versions", "baseline.json"))
    if baseline.get("default", {}).get("sekuire") != {"baseline": version, "port-version": 0}:
        problem(f"versions/baseline.json: default.sekuire is {baseline.get('default', {}).get('sekuire')}")
    versions = load_json(os.path.join(reg, "versions", "s-", "sekuire.json")).get("versions", [])
    entry = versions[0] if versions else {}
    if entry.get("version-semver") != version or entry.get("port-version") != 0:
        problem(f"versions/s-/sekuire.json: first entry is {entry}, expected {version} port-version 0")
    tree = entry.get("git-tree", "")
    if not re.fullmatch(r"[0-9a-f]{40}", tree):
        problem(f"versions/s-/sekuire.json: git-tree '{tree}' is not a git object id")
    # The git-tree must be what git computes for the port directory (vcpkg checks it).
    git = shutil.which("git")
    if git:
        scratch = os.path.join(out, "git-tree-check")
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(port, os.path.join(scratch, "ports", "sekuire"))
        env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=scratch)

        def git_out(*args):
            return subprocess.run([git, "-C", scratch, *args], check=True, env=env,
                                  capture_output=True, text=True).stdout.strip()
        git_out("init", "-q")
        git_out("add", "-A")
        actual = git_out("rev-parse", git_out("write-tree") + ":ports/sekuire")
        if actual != tree:
            problem(f"versions/s-/sekuire.json: git-tree {tree}, but git computes {actual} for ports/sekuire")
        shutil.rmtree(scratch, ignore_errors=True)
        how = "checked with git"
    else:
        how = "git not found: not cross-checked"
    return (f"vcpkg registry port: sekuire {version}, SHA512 of the archive {expected[:16]}..., "
            f"versions entry with git-tree {tree} ({how})")


# ---- Conan ----------------------------------------------------------------------------------

def literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None


def dotted(node):
    """'self.info.clear' for the expression self.info.clear; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def calls_in(node):
    return [n for n in ast.walk(node) if isinstance(n, ast.Call)]


def conan_recipe(recipe_dir):
    path = os.path.join(recipe_dir, "conanfile.py")
    tree = ast.parse(read(path), path)
    module_vars = {t.id: literal(n.value) for n in tree.body if isinstance(n, ast.Assign)
                   for t in n.targets if isinstance(t, ast.Name)}
    if not str(module_vars.get("required_conan_version", "")).startswith(">=2"):
        problem(f"{path}: required_conan_version must ask for Conan 2")
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    if len(classes) != 1:
        problem(f"{path}: expected one recipe class")
        return None
    cls = classes[0]
    attrs = {t.id: n.value for n in cls.body if isinstance(n, ast.Assign) for t in n.targets
             if isinstance(t, ast.Name)}
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}

    expect = {"name": "sekuire", "license": "MIT", "package_type": "header-library",
              "url": "https://github.com/conan-io/conan-center-index",
              "homepage": "https://github.com/sekuire/sekuire-cpp", "no_copy_source": True,
              "settings": ("os", "arch", "compiler", "build_type")}
    for key, value in expect.items():
        if key not in attrs or literal(attrs[key]) != value:
            problem(f"{path}: {key} must be {value!r}")
    if "header-only" not in (literal(attrs.get("topics")) or ()):
        problem(f"{path}: topics must include 'header-only'")
    for forbidden in ("version", "exports_sources", "exports", "requires", "default_options", "options"):
        if forbidden in attrs:
            problem(f"{path}: the attribute '{forbidden}' is not used in a ConanCenter header-only recipe "
                    "(version from the command line and conandata.yml, requirements() for dependencies, "
                    "no forced dependency options)")
    for forbidden in ("set_version", "export_sources", "export", "build_requirements", "config_options"):
        if forbidden in methods:
            problem(f"{path}: {forbidden}() must not read the checkout: the sources come from conandata.yml")
    for name in ("recipe_folder", "load", "set_version"):
        if any(isinstance(n, (ast.Attribute, ast.Name)) and getattr(n, "attr", getattr(n, "id", None)) == name
               for n in ast.walk(cls)):
            problem(f"{path}: uses '{name}' (reads files beside the recipe)")

    # requirements(): pinned versions, except the ranges ConanCenter allows (OpenSSL).
    requires = {}
    for call in calls_in(methods.get("requirements", ast.Module(body=[], type_ignores=[]))):
        if dotted(call.func) != "self.requires":
            continue
        ref = literal(call.args[0]) if call.args else None
        if not isinstance(ref, str) or "/" not in ref:
            problem(f"{path}: self.requires() with a non-literal reference")
            continue
        name, version = ref.split("/", 1)
        requires[name] = version
        transitive = {k.arg: literal(k.value) for k in call.keywords}.get("transitive_headers")
        if transitive is not True:
            problem(f"{path}: {ref} needs transitive_headers=True (sekuire's headers include it)")
        if name == "openssl":
            if version != "[>=1.1 <4]":
                problem(f"{path}: openssl must be required as openssl/[>=1.1 <4], not {version}")
        elif not re.fullmatch(r"[0-9]+(\.[0-9]+)*", version):
            problem(f"{path}: {ref}: only OpenSSL may use a version range in ConanCenter; pin a version")
    if sorted(requires) != ["boost", "cpp-httplib", "openssl"]:
        problem(f"{path}: requirements are {sorted(requires)}, expected boost, cpp-httplib, openssl")

    # package_id(): header-only, one package for all settings.
    body = methods.get("package_id")
    if not body or len(body.body) != 1 or not isinstance(body.body[0], ast.Expr) or \
            dotted(getattr(body.body[0].value, "func", None)) != "self.info.clear":
        problem(f"{path}: package_id() must be exactly self.info.clear() (header-only)")

    # source(): the archive named in conandata.yml.
    src = methods.get("source")
    uses_conandata = False
    for call in calls_in(src) if src else []:
        if dotted(call.func) != "get":
            continue
        for kw in call.keywords:
            if kw.arg is None and isinstance(kw.value, ast.Subscript):
                sub = kw.value
                if dotted(sub.slice) == "self.version" and isinstance(sub.value, ast.Subscript) and \
                        dotted(sub.value.value) == "self.conan_data" and literal(sub.value.slice) == "sources":
                    uses_conandata = True
        if {k.arg: literal(k.value) for k in call.keywords if k.arg}.get("strip_root") is not True:
            problem(f"{path}: get() in source() needs strip_root=True")
    if not uses_conandata:
        problem(f"{path}: source() must call get(self, **self.conan_data[\"sources\"][self.version], strip_root=True)")

    # layout(), validate(), configure(), package_info().
    if "layout" not in methods or not any(dotted(c.func) == "basic_layout" for c in calls_in(methods["layout"])):
        problem(f"{path}: layout() must use basic_layout(self, src_folder=\"src\")")
    validate = methods.get("validate")
    validate_text = ast.unparse(validate) if validate else ""
    if "check_min_cppstd(self, 17)" not in validate_text:
        problem(f"{path}: validate() must check_min_cppstd(self, 17)")
    if not re.search(r"if self\.settings\.os == 'Windows':\s*raise ConanInvalidConfiguration", validate_text):
        problem(f"{path}: validate() must refuse Windows with ConanInvalidConfiguration (POSIX only)")
    if "self.dependencies['cpp-httplib'].options.with_openssl" not in validate_text:
        problem(f"{path}: validate() must refuse a cpp-httplib without OpenSSL")
    configure_text = ast.unparse(methods["configure"]) if "configure" in methods else ""
    if configure_text and "self.options['cpp-httplib'].with_openssl = True" not in configure_text:
        problem(f"{path}: configure() may only default cpp-httplib's with_openssl")
    info = ast.unparse(methods["package_info"]) if "package_info" in methods else ""
    for needle in ("set_property('cmake_file_name', 'sekuire')", "set_property('cmake_target_name', 'sekuire::sekuire')",
                   "set_property('pkg_config_name', 'sekuire')", "self.cpp_info.bindirs = []",
                   "self.cpp_info.libdirs = []", "'boost::headers'", "'boost::json'", "'cpp-httplib::cpp-httplib'", "'openssl::ssl'",
                   "'openssl::crypto'", "'pthread'"):
        if needle not in info:
            problem(f"{path}: package_info() lacks {needle}")

    # test_package/
    tp = os.path.join(recipe_dir, "test_package")
    for name in ("conanfile.py", "CMakeLists.txt", "test_package.cpp"):
        if not os.path.isfile(os.path.join(tp, name)):
            problem(f"{tp}: no {name}")
    if os.path.isfile(os.path.join(tp, "conanfile.py")):
        tp_text = read(os.path.join(tp, "conanfile.py"))
        ast.parse(tp_text)
        for needle in ('test_type = "explicit"', "self.requires(self.tested_reference_str)", "can_run(self)"):
            if needle not in tp_text:
                problem(f"{tp}/conanfile.py lacks {needle}")
    if os.path.isfile(os.path.join(tp, "CMakeLists.txt")):
        cm = read(os.path.join(tp, "CMakeLists.txt"))
        if "find_package(sekuire REQUIRED CONFIG)" not in cm or "sekuire::sekuire" not in cm:
            problem(f"{tp}/CMakeLists.txt must use find_package(sekuire REQUIRED CONFIG) and sekuire::sekuire")
    pins = ", ".join(f"{k}/{v}" for k, v in sorted(requires.items()))
    return (f"conan recipe: ConanCenter shape, header-only package_id, sources from conandata.yml, {pins}, test_package")


def conan_release(out, version, archive, url):
    recipes = os.path.join(out, "conan", "recipes", "sekuire")
    config = load_yaml(os.path.join(recipes, "config.yml"))
    if (config.get("versions") or {}).get(version) != {"folder": "all"}:
        problem(f"config.yml: versions.{version} is {(config.get('versions') or {}).get(version)}, expected folder all")
    data = load_yaml(os.path.join(recipes, "all", "conandata.yml"))
    entry = (data.get("sources") or {}).get(version) or {}
    sha256 = file_hash(archive, "sha256")
    if entry != {"url": url, "sha256": sha256}:
        problem(f"conandata.yml: sources.{version} is {entry}, expected url {url} and sha256 {sha256}")
    recipe = conan_recipe(os.path.join(recipes, "all"))
    return (f"conan release: conandata.yml has {version} with the archive's sha256 {sha256[:16]}..., "
            f"config.yml folder all; {recipe}")


def main(argv):
    commands = {"vcpkg-overlay": (vcpkg_overlay, 2), "vcpkg-registry": (vcpkg_registry, 4),
                "conan-recipe": (conan_recipe, 1), "conan-release": (conan_release, 4)}
    if not argv or argv[0] not in commands or len(argv) - 1 != commands[argv[0]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    summary = commands[argv[0]][0](*argv[1:])
    for text in problems:
        print(f"check_packaging: {text}", file=sys.stderr)
    if problems:
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
