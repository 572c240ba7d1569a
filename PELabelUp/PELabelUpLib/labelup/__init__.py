"""Label up: from a CT to slice probabilities, a heatmap and pseudo-masks of emboli (imports torch)."""
