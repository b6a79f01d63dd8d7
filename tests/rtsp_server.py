"""A real RTSP server for tests: GStreamer's gst-rtsp-server serving one H.264 stream.

Runs under Debian's /usr/bin/python3, not the project venv: PyGObject and the
GstRtspServer typelib come from apt (python3-gi, gir1.2-gst-rtsp-server-1.0).

    /usr/bin/python3 tests/rtsp_server.py --port 0 [--file clip.mp4] [--fps 25]

Serves rtsp://127.0.0.1:<port>/test and prints one line `READY <port> <url>` on stdout
once the port is bound (port 0 binds a free one, so the caller learns it from that
line). SIGTERM or SIGINT stop it cleanly; tests also SIGKILL and SIGSTOP it.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

MOUNT_PATH = "/test"
HOST = "127.0.0.1"
# A short GOP lets a client that (re)connects mid-stream decode within a second.
KEYFRAME_INTERVAL_FRAMES = 10


def encoder_tail(fps: int) -> str:
    """The encode + payload part of the pipeline, shared by pattern and file sources."""
    return (
        f"videorate ! video/x-raw,framerate={fps}/1 ! videoconvert ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={KEYFRAME_INTERVAL_FRAMES} "
        "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1"
    )


def launch_line(args: argparse.Namespace) -> str:
    """The gst-launch style pipeline description the media factory builds per client."""
    if args.file:
        # Loops are not needed: tests that serve a file read fewer frames than it holds.
        source = f'filesrc location="{args.file}" ! decodebin'
    else:
        source = (
            f"videotestsrc is-live=true pattern={args.pattern} ! "
            f"video/x-raw,width={args.width},height={args.height}"
        )
    return f"( {source} ! {encoder_tail(args.fps)} )"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command line: port (0 = any free), pattern or file, size and rate."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    parser.add_argument("--file", default="", help="serve this video file instead of a pattern")
    parser.add_argument("--pattern", default="ball", help="videotestsrc pattern name")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    # At 25 fps FFmpeg's stream probe (it counts frames to estimate the rate) takes ~1 s.
    parser.add_argument("--fps", type=int, default=25)
    return parser.parse_args(argv)


def build_server(args: argparse.Namespace) -> GstRtspServer.RTSPServer:
    """An RTSP server with one shared media mounted at MOUNT_PATH (not yet attached)."""
    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(True)
    server.get_mount_points().add_factory(MOUNT_PATH, factory)
    return server


def main(argv: list[str]) -> int:
    """Serve until SIGTERM/SIGINT; exit 2 if the port cannot be bound."""
    args = parse_args(argv)
    Gst.init(None)
    server = build_server(args)
    loop = GLib.MainLoop()
    # attach() returns 0 (and GStreamer logs why) when the port cannot be bound.
    if server.attach(None) == 0 or server.get_bound_port() < 0:
        print(f"ERROR cannot listen on {HOST}:{args.port} (port in use?)", flush=True)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, lambda *_: loop.quit() or False)
    port = server.get_bound_port()
    print(f"READY {port} rtsp://{HOST}:{port}{MOUNT_PATH}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
