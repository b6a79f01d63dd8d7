"""What the overlay worker shows: the MJPEG view, a window, a recording.

It runs inside the overlay *worker*, so it is not under daemon/outputs/, which the
supervisor runs (event sinks, outbox, metrics endpoint) and no worker may load.
"""
