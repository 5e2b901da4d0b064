"""molexp: experiments of shell and Python tasks, run in parallel on Dask."""
