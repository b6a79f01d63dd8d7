"""Shared fixtures: a real RTSP server and a real mosquitto broker (see their modules)."""

pytest_plugins = ["rtsp_fixture", "mosquitto_fixture"]
