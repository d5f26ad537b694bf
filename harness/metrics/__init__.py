"""From a driver's records to figures: latency, throughput, reliability,
uptime, recovery, monitoring, statistics and the model's error.
"""
