"""Build the local control plane's binaries from the Go module proxy, once.

Kubernetes components are built through a wrapper module that requires
``k8s.io/kubernetes`` and replaces every staging module with its published
release; etcd through a wrapper module that requires its server module; KWOK
with ``go install``. Everything lands in a versioned cache directory outside the
repository, guarded by a file lock so parallel callers build only once.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelcluster.devcluster.versions import (
    ETCD_VERSION,
    KUBERNETES_VERSION,
    KWOK_VERSION,
    Binaries,
    cache_root,
)

K8S_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def log(message: str) -> None:
    """One progress line, flushed at once so a person sees the build move."""
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] devcluster: {message}", file=sys.stderr, flush=True)


def staging_replaces(kubernetes_go_mod: str, version: str) -> list[str]:
    """``replace`` lines mapping each staging module to its published release.

    ``k8s.io/kubernetes`` points its staging modules at ``./staging/...``; a
    dependent module must pin each of them to ``v0.<minor>.<patch>`` itself.
    """
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", kubernetes_go_mod, re.M)))
    if not staging:
        raise ValueError("no staging modules found in the k8s.io/kubernetes go.mod")
    release = "v0." + version.removeprefix("v").split(".", 1)[1]
    return [f"\t{module} => {module} {release}" for module in staging]


def version_ldflags(version: str, build_date: str) -> str:
    """Linker flags that stamp a semver version, as upstream's version.sh does."""
    major, minor, _ = version.removeprefix("v").split(".")
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "gitCommit": "0000000000000000000000000000000000000000",
        "buildDate": build_date,
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


def _go_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    env["GOWORK"] = "off"
    env.setdefault("GOTOOLCHAIN", "local")
    env["TMPDIR"] = str(workdir / "tmp")
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    started = time.monotonic()
    log(f"{what} ...")
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-8000:])
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {' '.join(args)}")
    log(f"{what} done in {time.monotonic() - started:.0f}s")
    return result.stdout


def _write_module(
    directory: Path, module: str, requires: dict[str, str], replaces: list[str], imports: list[str]
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"module {module}", "", "go 1.24", "", "require ("]
    lines += [f"\t{path} {version}" for path, version in requires.items()]
    lines.append(")")
    if replaces:
        lines += ["", "replace (", *replaces, ")"]
    (directory / "go.mod").write_text("\n".join(lines) + "\n")
    tools = ["//go:build tools", "", "package tools", "", "import ("]
    tools += [f'\t_ "{path}"' for path in imports]
    tools.append(")")
    (directory / "tools.go").write_text("\n".join(tools) + "\n")


def _build_kubernetes(work: Path, out: Path, env: dict[str, str]) -> None:
    info = json.loads(
        _run(
            ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"],
            work,
            env,
            f"downloading k8s.io/kubernetes {KUBERNETES_VERSION}",
        )
    )
    replaces = staging_replaces(Path(info["GoMod"]).read_text(), KUBERNETES_VERSION)
    module_dir = work / "kubernetes"
    _write_module(
        module_dir,
        "modelcluster.dev/build/kubernetes",
        {"k8s.io/kubernetes": KUBERNETES_VERSION},
        replaces,
        [f"k8s.io/kubernetes/cmd/{name}" for name in K8S_COMPONENTS],
    )
    _run(["go", "mod", "tidy"], module_dir, env, "resolving Kubernetes modules (go mod tidy)")
    ldflags = version_ldflags(KUBERNETES_VERSION, dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    for index, name in enumerate(K8S_COMPONENTS, start=1):
        _run(
            ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(out / name), f"k8s.io/kubernetes/cmd/{name}"],
            module_dir,
            env,
            f"[{index}/{len(K8S_COMPONENTS)}] building {name} {KUBERNETES_VERSION} (minutes on a cold cache)",
        )


def _build_etcd(work: Path, out: Path, env: dict[str, str]) -> None:
    module_dir = work / "etcd"
    _write_module(
        module_dir,
        "modelcluster.dev/build/etcd",
        {"go.etcd.io/etcd/server/v3": ETCD_VERSION},
        [],
        ["go.etcd.io/etcd/server/v3"],
    )
    _run(["go", "mod", "tidy"], module_dir, env, "resolving etcd modules (go mod tidy)")
    _run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "etcd"), "go.etcd.io/etcd/server/v3"],
        module_dir,
        env,
        f"building etcd {ETCD_VERSION}",
    )


def _build_kwok(work: Path, out: Path, env: dict[str, str]) -> None:
    kwok_env = dict(env, GOBIN=str(out), GOFLAGS="-buildvcs=false")
    _run(
        [
            "go",
            "install",
            "-trimpath",
            "-ldflags",
            f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION}",
            f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}",
        ],
        work,
        kwok_env,
        f"building kwok {KWOK_VERSION}",
    )
    info = json.loads(
        _run(
            ["go", "mod", "download", "-json", f"sigs.k8s.io/kwok@{KWOK_VERSION}"],
            work,
            kwok_env,
            "locating KWOK stage definitions",
        )
    )
    stages = out / "kwok-stages"
    shutil.rmtree(stages, ignore_errors=True)
    shutil.copytree(Path(info["Dir"]) / "kustomize" / "stage", stages)
    for path in stages.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_binaries() -> Binaries:
    """Return the cached binaries, building whatever is missing first."""
    binaries = Binaries.at(cache_root())
    if binaries.complete():
        return binaries
    if shutil.which("go") is None:
        raise RuntimeError("the Go toolchain is needed to build the local control plane (install Go >= 1.24)")
    with _locked(binaries.directory.with_suffix(".lock")):
        if binaries.complete():
            return binaries
        started = time.monotonic()
        log(f"building control plane binaries into {binaries.directory} (once; later starts reuse them)")
        staging = binaries.directory.with_name(binaries.directory.name + ".partial")
        staging.mkdir(parents=True, exist_ok=True)
        work = cache_root() / "gowork"
        env = _go_env(work)
        steps = (
            ("etcd", _build_etcd),
            ("kwok-stages", _build_kwok),
            ("kube-scheduler", _build_kubernetes),
        )
        for marker, step in steps:
            if (staging / marker).exists():
                log(f"{marker}: already built")
                continue
            step(work, staging, env)
        if binaries.directory.exists():
            shutil.rmtree(binaries.directory)
        staging.rename(binaries.directory)
        log(f"binaries ready in {time.monotonic() - started:.0f}s")
    if not binaries.complete():
        raise RuntimeError(f"build finished but binaries are missing in {binaries.directory}")
    return binaries
