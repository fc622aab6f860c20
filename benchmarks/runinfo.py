"""What a benchmark run writes besides its results: a folder of its own, a manifest, and a notice
of what it skips for want of the extra ``bench``.

Each run owns its output folder: before writing, it deletes what an earlier run wrote there (the
files its manifest lists, and the benchmark's own file names), so that a partial run
(``--problems X``) never leaves fresh results next to stale plots. ``manifest.json`` records the
command, the versions, the machine, the date, the wall time and what was skipped.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from .peers import missing_peers

MANIFEST = "manifest.json"
#: The files a run may write into its folder (plots: one ``<problem>.png`` per problem).
OWN_FILES = ("results.md", "summary.md", "results.json", "perturbed.json", "readme-table.md", "perf.json", "perf.md")
INSTALL = "pip install 'optimeta[bench]'"
#: The versions recorded in the manifest (where installed).
PACKAGES = ("optimeta", "numpy", "scipy", "autograd", "matplotlib", "tqdm", "torch", "jax", "optax", "numba", "dask")


def clear(out: Path) -> list[Path]:
    """Delete, in `out`, what an earlier benchmark run wrote there; return what was deleted.
    Files a run did not write are left alone."""
    if not out.is_dir():
        return []
    owned = {out / name for name in (*OWN_FILES, MANIFEST)} | set(out.glob("*.png"))
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            owned |= {out / name for name in json.loads(manifest.read_text()).get("files", [])}
        except (ValueError, AttributeError):
            pass
    deleted = []
    for path in sorted(owned):
        if path.is_file() and path.parent == out:
            path.unlink()
            deleted.append(path)
    return deleted


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> str:
    try:
        import numpy as np

        config: Any = np.show_config(mode="dicts")  # type: ignore[no-untyped-call]
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - the BLAS name is information, not a requirement
        return "unknown"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def machine() -> dict[str, Any]:
    return {
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "blas": _blas(),
        "threads": {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")},
    }


def skipped(perf: bool = False, progress: bool = True) -> dict[str, list[str]]:
    """What this run leaves out for want of an optional module, by module: the peers, the plots
    and the progress bar of the suite, or the measurements of ``--perf``."""
    out: dict[str, list[str]] = {}
    if perf:
        if importlib.util.find_spec("torch") is None:
            out["torch"] = ["large-update rows (against torch.optim)", "gradient backend torch"]
        if importlib.util.find_spec("jax") is None:
            out["jax"] = ["gradient backend jax"]
        if importlib.util.find_spec("numba") is None:
            out["numba"] = ["fused update kernels (large updates measure the NumPy path)"]
        return out
    out.update({modules: [f"peer {name}" for name in names] for modules, names in missing_peers().items()})
    if importlib.util.find_spec("matplotlib") is None:
        out["matplotlib"] = ["convergence plots (<problem>.png)"]
    if progress and importlib.util.find_spec("tqdm") is None:
        out["tqdm"] = ["progress bar"]
    return out


def notice(missing: dict[str, list[str]]) -> str:
    """The stderr notice of what a run skips and how to install it; empty when nothing is."""
    if not missing:
        return ""
    lines = ["note: the extra 'bench' is not fully installed; this run skips:"]
    lines += [f"  - {', '.join(what)} (needs {modules})" for modules, what in missing.items()]
    lines.append(f"  install them with: {INSTALL}")
    return "\n".join(lines)


def write_manifest(
    out: Path, argv: list[str], started: datetime.datetime, wall: float, files: list[str], **extra: Any
) -> Path:
    """Write ``manifest.json`` into `out`: the command, versions, machine, date, wall time, files."""
    manifest = {
        "command": " ".join(["python -m benchmarks", *argv]),
        "argv": argv,
        "date": started.isoformat(timespec="seconds"),
        "wall_time_s": round(wall, 1),
        "versions": versions(),
        "machine": machine(),
        "files": sorted(files),
        **extra,
    }
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def stderr(text: str) -> None:
    if text:
        sys.stderr.write(text + "\n")
