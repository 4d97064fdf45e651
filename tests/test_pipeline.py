"""End to end: the CLI's default recipe, on the bundled subset and (when present) full MNIST."""

from conftest import full_root, needs_full

from twostage_lib.mnist import load_mnist
from twostage_lib.pipeline import PipelineConfig, run_pipeline


def test_default_pipeline_on_the_bundled_subset(bundled):
    report = run_pipeline(PipelineConfig(device="cpu", progress=False), splits=bundled)
    stages = report["stages"]
    assert stages["stage2"]["test_accuracy"] > 0.80
    assert report["final_test_accuracy"] >= 0.96  # the floor for the bundled subset


@needs_full
def test_default_pipeline_on_full_mnist():
    splits = load_mnist(full_root(), source="full", verbose=False)
    report = run_pipeline(PipelineConfig(device="cpu", progress=False), splits=splits)
    assert report["n_train"] == 55000 and report["n_test"] == 10000
    assert report["final_test_accuracy"] >= 0.985  # the headline claim in README
