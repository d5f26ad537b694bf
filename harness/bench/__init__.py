"""Speed as ratios against raw baselines measured in the same run (make bench)."""
