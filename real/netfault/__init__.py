"""Link faults on tcp: a loopback proxy per worker that drops, delays or loses
whole frames.
"""
