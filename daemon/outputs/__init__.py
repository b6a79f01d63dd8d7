"""Outputs of the pipeline: MQTT alerts (durable outbox, Home Assistant discovery) and the
local display of the overlay stage (MJPEG over HTTP, an OpenCV window, a recording)."""
