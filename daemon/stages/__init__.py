"""Compute stages called by the worker processes; they know nothing of rings or processes.

capture: FrameSource (files, RTSP/network streams, V4L2 devices, test patterns).
flow:    FlowEstimator (DIS or Farneback optical flow) and preprocess().
draw:    draw_overlay() (flow arrows, label, score and fps on a frame).
"""
