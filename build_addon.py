"""Build the mlvfx Blender extension (``addon/``) into installable zip files.

Steps:
1. build the ``mlvfx`` wheel from ``core/`` (pyproject.toml at the repo root);
2. resolve every runtime dependency once, pinned (``pip install --dry-run --report``), then
   download one wheel per pin for each platform (linux-x64, windows-x64, macos-arm64) with
   ``pip download --no-deps --only-binary=:all: --platform ...``; torch comes from PyTorch's
   CPU-only wheel index by default, and numpy is left out because Blender ships its own;
3. stage ``addon/`` with the wheels in ``./wheels/`` and write the manifest's ``wheels`` and
   ``platforms`` lists;
4. build with Blender's own extension builder (``blender_ext.py build``, ``--split-platforms`` when
   there are platform-specific wheels) and validate every zip with ``blender_ext.py validate``.

No model weights are bundled: the add-on fetches them from the zoo on first use.

    python build_addon.py                                  # all platforms, downloads wheels
    python build_addon.py --platforms linux-x64 --wheelhouse ~/wheels --offline
    python build_addon.py --core-only                      # only the mlvfx wheel inside (see below)
    python build_addon.py --wheel-only                     # just the mlvfx wheel (a Houdini venv)

Every build carries the commit it was built from in its version (``0.1.0+812.g1a2b3c4d5e``, see
``build_version``): the wheel's, ``mlvfx.__version__`` and the extension manifest's, so installing
a newer build replaces the core, and ``material.json`` / ``shot.json`` say which code made them.

Measured here: ``--platforms macos-arm64`` took 48 s and gave a 199 MB zip (26 dependency wheels).

``--core-only`` bundles just the ``mlvfx`` wheel and relies on its dependencies being importable
already. That is the case for the ``bpy`` module inside this repo's ``.venv``, which the tests use;
a zip built this way is not for artists' Blenders.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "addon"
PLATFORM_TAGS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_14_0_arm64", "macosx_13_0_arm64", "macosx_12_0_arm64", "macosx_11_0_arm64"],
}
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Blender bundles numpy (1.26 up to Blender 5.0); a second copy in the extension would conflict.
SKIP_WHEELS = ("numpy",)
# Dependencies that only some platforms need (markers such as sys_platform == "win32").
PLATFORM_EXTRAS: dict[str, list[tuple[str, str]]] = {"windows-x64": [("colorama", "0.4.6")]}


SEMVER_CORE = r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"  # no leading zeros (Blender's check)
# What the wheel's copy of core/ leaves out, and so what cannot make a build "dirty".
NOT_SHIPPED = ("__pycache__", "*.pyc", "*.egg-info")
# Untracked files that make a build "dirty": modules and pyproject's package-data kinds.
SHIPPED_SUFFIXES = (b".py", b".typed", b".png", b".jpg", b".json")


def _shipped(name: str) -> bool:
    import fnmatch

    return not any(fnmatch.fnmatch(part, pattern) for part in name.split("/") for pattern in NOT_SHIPPED)


class BuildError(Exception):
    pass


def blender_ext_script() -> Path:
    """Blender's extension CLI, from the installed ``bpy`` module (nothing is imported)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise BuildError("the bpy module is not installed; run: pip install 'bpy==5.0.1' (or bash .ci/setup)")
    bpy_dir = Path(spec.origin).parent
    for candidate in sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py")):
        return candidate
    raise BuildError(f"blender_ext.py not found under {bpy_dir}")


def run(cmd: list[str], what: str) -> str:
    # An argument list (no shell) made of this script's own constants and paths.
    proc = subprocess.run(cmd, capture_output=True, text=True)  # noqa: S603
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise BuildError(f"{what} failed: " + " | ".join(tail))
    return proc.stdout


def runtime_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [str(r) for r in project["dependencies"]]


def version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def _git(*args: str) -> bytes | None:
    """``git args``'s output in this checkout (fixed arguments, no shell), or None without git or a
    checkout. Bytes: a diff may hold any encoding."""
    try:
        proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True)  # noqa: S603, S607
    except OSError:
        return None
    return proc.stdout if proc.returncode == 0 else None


def build_version() -> str:
    """The version a build carries: pyproject's, plus the commit it was built from, e.g.
    ``0.1.0+812.g1a2b3c4d5e`` (``.d<hash>`` more for uncommitted changes to the core).

    Blender keeps an extension's wheels by name and version, and pip does not reinstall the same
    version: with one version for every build, upgrading the extension (or a Houdini venv) kept the
    old core under the new add-on, which then failed (an upgrade audit). The commit count orders
    builds (PEP 440 compares local segments numerically; semver takes it as build metadata).
    Outside a git checkout it is pyproject's version alone.
    """
    base = version()
    count, sha = _git("rev-list", "--count", "HEAD"), _git("rev-parse", "--short=10", "HEAD")
    if not count or not sha:
        print(f"build_addon: not a git checkout: the build is version {base}", file=sys.stderr)
        return base
    label = f"{base}+{count.decode().strip()}.g{sha.decode().strip()}"
    diff = _git("diff", "HEAD", "--binary", "--", "core", "pyproject.toml") or b""
    untracked = (_git("ls-files", "-z", "--others", "--", "core") or b"").split(b"\0")
    changes = hashlib.sha256(diff)
    untracked = [n for n in untracked if n and _shipped(os.fsdecode(n))]
    untracked = [n for n in untracked if n.endswith(SHIPPED_SUFFIXES)]  # what setuptools puts in the wheel
    for name in sorted(untracked):  # their contents, ignored files too (they ship)
        path = ROOT / os.fsdecode(name)
        if path.is_file():
            changes.update(name + b"\0" + path.read_bytes())
    if diff or untracked:
        label += ".d" + changes.hexdigest()[:8]
    return label


def build_core_wheel(dest: Path, build: str | None = None) -> Path:
    """The mlvfx wheel, built from a copy of the source whose version (pyproject's and
    ``mlvfx.__version__``) is ``build`` (default: :func:`build_version`)."""
    build = build or build_version()
    with tempfile.TemporaryDirectory(prefix="mlvfx-wheel-") as tmp_name:
        src = Path(tmp_name) / "src"
        # A fresh copy: setuptools' build/lib of the checkout would ship a deleted module again.
        shutil.copytree(
            ROOT / "core",
            src / "core",
            ignore=shutil.ignore_patterns(*NOT_SHIPPED),
        )
        for name in ("README.md", "LICENSE"):
            if (ROOT / name).is_file():
                shutil.copy2(ROOT / name, src / name)
        project = (ROOT / "pyproject.toml").read_text()
        project, n = re.subn(r'(?m)^version = ".*"$', f'version = "{build}"', project, count=1)
        init = src / "core" / "mlvfx" / "__init__.py"
        text, m = re.subn(r'(?m)^__version__ = ".*"$', f'__version__ = "{build}"', init.read_text(), count=1)
        if n != 1 or m != 1:
            raise BuildError("cannot set the build version: pyproject.toml or mlvfx/__init__.py changed form")
        (src / "pyproject.toml").write_text(project)
        init.write_text(text)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(dest),
                str(src),
            ],
            "building the mlvfx wheel",
        )
    wheels = sorted(dest.glob("mlvfx-*.whl"))
    if not wheels:
        raise BuildError("pip wheel produced no mlvfx wheel")
    return wheels[-1]


def resolve_pins(wheelhouse: Path | None, offline: bool) -> list[tuple[str, str]]:
    """Every runtime dependency, transitively, pinned: ``pip install --dry-run --report`` here.

    Resolving once on this machine and then downloading each pin for each platform with
    ``--no-deps`` avoids a pip limitation: ``pip download --platform`` evaluates environment
    markers for the running machine, so a Linux host would drag CUDA packages into a macOS build.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "-q",
            "--ignore-installed",
            "--report",
            str(report),
        ]
        if wheelhouse is not None:
            cmd += ["--find-links", str(wheelhouse)]
        if offline:
            cmd += ["--no-index"]
        run([*cmd, *runtime_requirements()], "resolving the runtime dependencies")
        installs = json.loads(report.read_text())["install"]
    pins = [(str(i["metadata"]["name"]), str(i["metadata"]["version"])) for i in installs]
    return [(name, version) for name, version in pins if _norm(name) not in SKIP_WHEELS]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def download_dependencies(
    platform: str,
    pins: list[tuple[str, str]],
    dest: Path,
    wheelhouse: Path | None,
    offline: bool,
    torch_index: str | None,
) -> list[Path]:
    """Download one wheel per pin (plus the platform's own extras) for ``platform``."""
    base = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "-d",
        str(dest),
    ]
    for tag in PLATFORM_TAGS[platform]:
        base += ["--platform", tag]
    if wheelhouse is not None:
        base += ["--find-links", str(wheelhouse)]
    before = set(dest.glob("*.whl"))
    wanted = [*pins, *PLATFORM_EXTRAS.get(platform, [])]
    for name, version in wanted:
        public = version.split("+")[0]  # local labels such as +cpu name a build, not a release
        cmd = list(base)
        if offline:
            cmd.append("--no-index")
        elif _norm(name) == "torch" and torch_index and platform != "macos-arm64":
            cmd += ["--index-url", torch_index]  # CPU-only builds; PyPI's Linux wheel bundles CUDA
        run([*cmd, f"{name}=={public}"], f"downloading {name} {public} for {platform}")
    return sorted(set(dest.glob("*.whl")) - before)


def stage(wheels: list[Path], platforms: list[str], staging: Path, build: str) -> None:
    shutil.copytree(ADDON, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "wheels", "*.zip"))
    wheel_dir = staging / "wheels"
    wheel_dir.mkdir()
    names = []
    for wheel in wheels:
        if wheel.name.split("-")[0].lower() in SKIP_WHEELS:
            continue
        shutil.copy2(wheel, wheel_dir / wheel.name)
        names.append(f"./wheels/{wheel.name}")
    manifest = staging / "blender_manifest.toml"
    text = manifest.read_text()
    text = re.sub(r"(?m)^version = \".*\"$", f'version = "{build}"', text, count=1)
    text = re.sub(
        r"(?ms)^wheels = \[.*?\]$", "wheels = " + json.dumps(sorted(names), indent=2), text, count=1
    )
    text = re.sub(r"(?m)^platforms = \[.*\]$", "platforms = " + json.dumps(platforms), text, count=1)
    manifest.write_text(text)
    # The core this add-on was built with, checked before each operator runs (bridge.check_core).
    stamp = f'"""Written by build_addon.py."""\n\nCORE_VERSION = "{build}"\n'
    (staging / "_core_version.py").write_text(stamp)


def build(args: argparse.Namespace) -> list[Path]:
    platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
    unknown = [p for p in platforms if p not in PLATFORM_TAGS]
    if unknown:
        raise BuildError(f"unknown platform(s) {unknown}; choose from {sorted(PLATFORM_TAGS)}")
    script = None if args.wheel_only else blender_ext_script()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlvfx-addon-") as tmp_name:
        tmp = Path(tmp_name)
        wheel_dir = tmp / "wheels"
        wheel_dir.mkdir()
        build_id = args.build_version or build_version()
        if not re.fullmatch(rf"{SEMVER_CORE}(\+[0-9a-z]+(\.[0-9a-z]+)*)?", build_id):
            raise BuildError(f"--build-version {build_id!r} is not MAJOR.MINOR.PATCH[+label.label...]")
        wheels = [build_core_wheel(wheel_dir, build_id)]
        if args.wheel_only:  # its path is printed: pip install --upgrade "$(build_addon.py --wheel-only)"
            target = out / wheels[0].name
            shutil.copy2(wheels[0], target)
            return [target]
        if not args.core_only:
            wheelhouse = Path(args.wheelhouse).resolve() if args.wheelhouse else None
            pins = resolve_pins(wheelhouse, args.offline)
            for platform in platforms:
                print(f"build_addon: {len(pins)} dependency wheels for {platform}", file=sys.stderr)
                download_dependencies(platform, pins, wheel_dir, wheelhouse, args.offline, args.torch_index)
            wheels = sorted(wheel_dir.glob("*.whl"))
        assert script is not None
        staging = tmp / "mlvfx"
        stage(wheels, platforms, staging, build_id)
        split = not args.core_only and len(platforms) > 1
        before = set(out.glob("*.zip"))
        cmd = [sys.executable, str(script), "build", "--source-dir", str(staging), "--output-dir", str(out)]
        if split:
            cmd.append("--split-platforms")
        run(cmd, "blender_ext.py build")
        built = sorted(set(out.glob("*.zip")) - before) or sorted(out.glob(f"mlvfx-{build_id}*.zip"))
        if not built:
            raise BuildError(f"blender_ext.py build wrote no zip into {out}")
        for zip_path in built:
            run([sys.executable, str(script), "validate", str(zip_path)], f"validating {zip_path.name}")
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(ROOT / "dist"), help="output folder (default: dist/)")
    parser.add_argument(
        "--platforms",
        default=",".join(PLATFORM_TAGS),
        help="comma-separated: linux-x64,windows-x64,macos-arm64 (default: all)",
    )
    parser.add_argument("--wheelhouse", help="a local folder of wheels to use before any index")
    parser.add_argument("--offline", action="store_true", help="use only --wheelhouse, never an index")
    parser.add_argument(
        "--torch-index",
        default=TORCH_CPU_INDEX,
        help="extra index for torch wheels (default: PyTorch's CPU-only wheels)",
    )
    parser.add_argument(
        "--core-only",
        action="store_true",
        help="bundle only the mlvfx wheel (for environments that have its dependencies)",
    )
    parser.add_argument(
        "--build-version",
        default=None,
        help="the version to build, e.g. 0.2.0 for a release (default: pyproject's plus the commit)",
    )
    parser.add_argument(
        "--wheel-only",
        action="store_true",
        help="write only the mlvfx wheel (for a Houdini venv: pip install --upgrade it)",
    )
    args = parser.parse_args(argv)
    try:
        built = build(args)
    except BuildError as exc:
        print(f"build_addon: error: {exc}", file=sys.stderr)
        return 1
    for path in built:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
