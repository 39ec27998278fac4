"""The run's clock (train.manifest.Elapsed) against hand-set clocks."""

from __future__ import annotations

import itertools

from lor2c_probe.train import manifest


def test_elapsed_adds_the_checkpoints_count_and_separates_wall_from_cpu(monkeypatch):
    wall, cpu = itertools.count(100.0, 10.0), itertools.count(5.0, 3.0)  # each read advances: wall by 10 s, CPU by 3 s
    monkeypatch.setattr(manifest.time, "perf_counter", lambda: next(wall))
    monkeypatch.setattr(manifest.time, "process_time", lambda: next(cpu))
    clock = manifest.Elapsed(wall=7.5, cpu=20.0)  # start: wall 100, CPU 5
    assert clock.session() == {"wall": 10.0, "cpu": 3.0}  # read at wall 110, CPU 8
    assert clock.total() == {"wall": 7.5 + 20.0, "cpu": 20.0 + 6.0}  # read at wall 120, CPU 11
    assert manifest.Elapsed().total()["wall"] == 10.0  # a fresh run counts from zero
    assert manifest.Elapsed.resumed({"wall": 1.0, "cpu": 2.0}).total() == {"wall": 11.0, "cpu": 5.0}
    # a checkpoint written before runs counted their time: the totals are unknown, not this session's alone
    old = manifest.Elapsed.resumed(None)
    assert old.total() == {"wall": None, "cpu": None} and old.session()["wall"] > 0  # the session is still measured
    assert manifest.Elapsed.resumed(old.total()).total() == {"wall": None, "cpu": None}  # and stay unknown after the next resume
