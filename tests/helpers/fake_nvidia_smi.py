"""A stand-in `nvidia-smi` for tests: a real executable on PATH that answers from a JSON scene.

`install(folder, monkeypatch, scene)` writes the scene to `folder/scene.json` and an executable
`folder/nvidia-smi` (a shell script exec'ing this interpreter), puts `folder` first on PATH, points
NBTEST_FAKE_SMI_SCENE at the scene and sets NBTEST_GPU_BACKEND=smi so NVML is not asked even
where a driver exists. Every process the test starts inherits all three.

The scene:

    {"gpus": [{"index": 0, "name": "...", "uuid": "GPU-...", "memory.total": 81920,
               "memory.used": 77920, "memory.free": 4000}],
     "apps": [{"gpu_uuid": "GPU-...", "pid": 4242, "process_name": "python",
               "used_memory": 77000}],
     "exit": 0,          # non-zero: say so on stderr and exit with it
     "garbage": false,   # true, or "gpu" / "compute-apps": print junk instead of CSV
     "sleep": 0}         # seconds to hang before answering (a stuck driver)

It answers `--query-gpu=F1,F2,...` and `--query-compute-apps=...` with
`--format=csv,noheader,nounits` rows in the requested field order, as nvidia-smi does, and
rejects unknown fields with nvidia-smi's exit code 2. Only the standard library is imported
here: the script runs once per query.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

SCENE_VAR = "NBTEST_FAKE_SMI_SCENE"
TESTS = Path(__file__).resolve().parent.parent


def gpu(index: int, free: int, total: int = 81920, name: str = "NVIDIA H100 80GB HBM3",
        uuid: str | None = None) -> dict[str, Any]:
    """A scene GPU with `free` MiB free of `total`."""
    return {"index": index, "name": name, "uuid": uuid or f"GPU-{index:08d}-aaaa-bbbb-cccc",
            "memory.total": total, "memory.used": total - free, "memory.free": free}


def app(pid: int, used: int, gpu_uuid: str, name: str = "python") -> dict[str, Any]:
    """A scene compute process holding `used` MiB on the GPU `gpu_uuid`."""
    return {"gpu_uuid": gpu_uuid, "pid": pid, "process_name": name, "used_memory": used}


def install(folder: Path, monkeypatch: Any, scene: dict[str, Any]) -> Path:
    """Put a fake nvidia-smi answering `scene` first on PATH; return the scene file.

    The stand-in's cards are all visible whatever CUDA_VISIBLE_DEVICES the suite was started
    with (a CI machine may set it to "" or "0"): a test that hides some sets it afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    scene_file = folder / "scene.json"
    scene_file.write_text(json.dumps(scene))
    script = folder / "nvidia-smi"
    # A shell script that execs the interpreter: a `#!` line cannot hold a path with spaces
    # (a checkout under "/tmp/with space/"), and the kernel would find no nvidia-smi at all.
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); "
            "from helpers.fake_nvidia_smi import main; sys.exit(main(sys.argv[1:]))")
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(code)} "
                      '"$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv(SCENE_VAR, str(scene_file))
    monkeypatch.setenv("NBTEST_GPU_BACKEND", "smi")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return scene_file


def main(argv: list[str]) -> int:
    """Answer one nvidia-smi command line from the scene."""
    scene = json.loads(Path(os.environ[SCENE_VAR]).read_text())
    if scene.get("sleep"):
        import time

        time.sleep(float(scene["sleep"]))
    if scene.get("exit"):
        print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
              file=sys.stderr)
        return int(scene["exit"])
    query = next((a for a in argv if a.startswith("--query-")), None)
    if query is None or "--format=csv,noheader,nounits" not in argv:
        print(f"fake nvidia-smi: unsupported arguments {argv}", file=sys.stderr)
        return 2
    kind, _, fields = query[len("--query-"):].partition("=")
    garbage = scene.get("garbage")
    if garbage is True or garbage == kind:
        print("Segmentation fault?! <html>not csv</html>")
        return 0
    records = {"gpu": scene.get("gpus", []), "compute-apps": scene.get("apps", [])}.get(kind)
    if records is None:
        print(f"fake nvidia-smi: unknown query {kind}", file=sys.stderr)
        return 2
    names = fields.split(",")
    for record in records:
        unknown = [n for n in names if n not in record]
        if unknown:
            print(f'Field "{unknown[0]}" is not a valid field to query.', file=sys.stderr)
            return 2
        print(", ".join(str(record[n]) for n in names))
    return 0
