"""`make demo` (scripts/demo.py) on the small synthetic world of the test session."""

from __future__ import annotations

import re

from scripts.demo import main


def test_demo_prints_one_sample_of_each_loader(synthetic_root, capsys):
    main(["--out", str(synthetic_root), "--small", "--workers", "1", "--quiet"])
    out = capsys.readouterr().out
    assert "KITTI-360 loader:" in out and "KITTI-Raw loader:" in out
    assert "8 views" in out and "4 views" in out
    assert "(8, 3, 192, 640)" in out and "(4, 3, 192, 640)" in out
    # The right perspective camera of KITTI-360 (view 2) sits on the +x axis of view 0, one baseline away.
    match = re.search(r"view 2: camera centre in view 0's frame = \(([-+.\d]+), ([-+.\d]+), ([-+.\d]+)\)", out)
    x, y, z = (float(v) for v in match.groups())
    assert 0.5 < x < 0.7 and abs(y) < 0.02 and abs(z) < 0.02
