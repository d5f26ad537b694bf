"""Where a sweep's independent model runs go: this machine's processes, or a Dask cluster."""
