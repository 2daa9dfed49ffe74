"""`make demo`: the whole backbone on the local broker, fed by the simulator, with a live terminal view.

`processes` says what runs, `supervise` starts and stops it, `scrape` reads each
process's /readyz and /metrics, `figures` and `view` are the pure core of the view.
"""
