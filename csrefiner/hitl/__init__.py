"""Human in the loop: fuse several models' predictions into pseudo-labels (consensus), rank patches by the
models' disagreement for annotation (disagreement, suggest), move masks to and from QuPath (geojson,
annotations), and weight corrected vs pseudo-labelled patches during fine-tuning (sampling).

Modules are imported where used, so `from csrefiner.hitl.sampling import sample_weights` stays light.
"""

from csrefiner.hitl.sampling import DEFAULT_GAMMA, class_weights, sample_weights, sampling_record, weighted_order

__all__ = ["DEFAULT_GAMMA", "class_weights", "sample_weights", "sampling_record", "weighted_order"]
