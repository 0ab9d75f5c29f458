"""Instance-segmentation metrics that agree with stardist.matching, computed sparsely."""

from csrefiner.metrics.matching import THRESHOLD_SWEEP, MatchCounts, aji_plus, match_counts, matching
from csrefiner.metrics.overlap import Overlap, label_overlap

__all__ = ["THRESHOLD_SWEEP", "MatchCounts", "Overlap", "aji_plus", "label_overlap", "match_counts", "matching"]
