"""Generated data with exact ground truth (tests, benchmarks, demo, pipeline test profile)."""

from csrefiner.synth.nuclei import EASY, HARD, NucleiStyle, mix, nuclei_image, nuclei_labels, render

__all__ = ["EASY", "HARD", "NucleiStyle", "mix", "nuclei_image", "nuclei_labels", "render"]
