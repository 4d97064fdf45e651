"""The runtime follows the machine it is given: the container's CPU quota, not the host's cores."""

import os

import pytest
import torch

import twostage_lib as ts


def test_the_cpu_quota_caps_the_cores(tmp_path):
    cores = len(os.sched_getaffinity(0))
    assert ts.runtime.cpu_quota(tmp_path) == cores  # no cgroup files: the affinity mask
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # cgroup v2: one CPU (Binder)
    assert ts.runtime.cpu_quota(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")  # no limit
    assert ts.runtime.cpu_quota(tmp_path) == cores
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")  # cgroup v1: 1.5 CPUs round up to 2
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert ts.runtime.cpu_quota(tmp_path) == min(2, cores)


def test_threads_follow_the_quota_and_the_override(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(ts.runtime, "cpu_quota", lambda: 2)
        monkeypatch.setattr(torch, "get_num_threads", lambda real=torch.get_num_threads: max(real(), 2))
        assert ts.runtime.use_cpu_quota() == 2
        monkeypatch.setenv("TWOSTAGE_THREADS", "1")  # fewer than the quota: taken as it is
        assert ts.runtime.use_cpu_quota() == 1
        monkeypatch.setattr(ts.runtime, "cpu_quota", lambda: 1)
        monkeypatch.setenv("TWOSTAGE_THREADS", "10000")  # more than the quota: capped, with a warning
        with pytest.warns(UserWarning, match=r"TWOSTAGE_THREADS=10000 is more than the 1 CPUs.*using 1"):
            assert ts.runtime.use_cpu_quota() == 1
    finally:
        torch.set_num_threads(before)
