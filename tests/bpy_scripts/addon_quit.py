"""Blender quits while a bake runs: the worker is stopped at exit and removes its staging folder.
Run by tests/test_addon_smoke.py in a fresh bpy process:
    python addon_quit.py EXTENSION_ZIP WORKDIR
Prints ``RESULT {json}`` with what the bake had written when Python began to exit; the test then
checks that nothing of it is left in WORKDIR.
"""

from __future__ import annotations

import json
import sys
import time

from _extension import MODULE, install, reference_plan

zip_path, work = install()
smoke = sys.modules[MODULE + ".smoke"]
jobs = sys.modules[MODULE + ".jobs"]
plan = reference_plan("Domain", work / "cache", list(range(1, 100001)))  # far more than it can bake
bake = smoke.MLVFX_OT_bake_smoke
job = jobs.Job(
    "bake", lambda p, c: bake._compute(plan, p, c), lambda r: bake._discard_result(plan, r)
).start()
deadline = time.monotonic() + 60
staging: list[str] = []
while time.monotonic() < deadline:
    staging = [str(p) for p in work.glob(".cache.baking-*") if any(p.glob("density_*.vdb"))]
    if staging:
        break
    time.sleep(0.05)
assert staging and not job.finished, (staging, job.finished)
print("RESULT " + json.dumps({"staging": staging}))
sys.stdout.flush()
# The script ends here with the bake still running, as when an artist quits Blender mid-bake.
