"""Capture backends: one protocol (protocol.py), one table (table.py), one module per
backend (file, rtsp, v4l2, pattern, images). The source stage's FrameSource opens a
camera's source through the table and does the rest the same way for every backend."""
