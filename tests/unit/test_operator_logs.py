"""Issue 33: what an operator's console and log files show. zk0node.log had every Flower line of a ClientApp twice
and Flower's ANSI colour codes in it; a demo's first run printed 30 lines of FFmpeg's mp4 muxer ("Starting second
pass: moving the moov atom to the beginning of the file"), while FFmpeg's real errors must still show."""

from __future__ import annotations

import subprocess
import sys

from node.logs import strip_ansi

GREEN, RESET = "\x1b[92m", "\x1b[0m"


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_the_log_file_has_no_colour_codes_and_the_console_keeps_them(tmp_path):
    log = tmp_path / "zk0node.log"
    code = ("import sys; from node.logs import teed_output\n"
            f"with teed_output({str(log)!r}):\n"
            f"    print({GREEN + 'INFO ' + RESET!r} + ':      Starting Flower SuperNode', flush=True)\n"
            "    sys.stdout.write('\\x1b[9'); sys.stdout.flush(); sys.stdout.write('3mWARNING\\x1b[0m: cut\\n')\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert GREEN in result.stdout  # the console: as the program wrote it
    assert log.read_text() == "INFO :      Starting Flower SuperNode\nWARNING: cut\n"  # a cut sequence too


def test_strip_ansi_keeps_an_unfinished_sequence_for_the_next_chunk():
    assert strip_ansi(b"a\x1b[9") == (b"a", b"\x1b[9")
    assert strip_ansi(b"2mX\x1b[0m\n", b"\x1b[9") == (b"X\n", b"")
    assert strip_ansi(b"plain \x1b text\n") == (b"plain \x1b text\n", b"")  # a lone ESC mid-line is not a sequence


def test_a_clientapp_prints_each_flower_line_once_though_a_library_gave_the_root_logger_a_handler():
    """LeRobot's import-time ``logging.debug`` calls ``basicConfig``: Flower's logger, which has its own handler,
    then printed every line a second time through the root logger ("INFO:flwr:zk0 train message, ...")."""
    code = ("import logging\n"
            "from flwr.common.logger import FLOWER_LOGGER\n"
            "logging.debug('Detected transformers version')  # what lerobot.utils.import_utils does\n"
            "from node.logs import single_flower_output\n"
            "single_flower_output()\n"
            "logging.getLogger('flwr').info('zk0 train message, round 1: start 2.11s')\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).count("zk0 train message, round 1") == 1, result.stderr


FFMPEG = """
import sys, numpy as np, av, av.logging
from node.logs import setup_logging
setup_logging()
av.logging.restore_default_callback()  # what LeRobot's video encoder does after each video it writes
with av.open(sys.argv[1], "w", options={"movflags": "faststart"}) as out:  # LeRobot's mp4 settings move the moov
    stream = out.add_stream("mpeg4", rate=30)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
    for packet in [*stream.encode(frame), *stream.encode()]:
        out.mux(packet)
open(sys.argv[1] + ".broken.mp4", "wb").write(bytes(4) + b"ftypmp42" + bytes(64))
try:
    av.open(sys.argv[1] + ".broken.mp4")
except av.error.InvalidDataError:
    print("refused")
"""


def test_ffmpeg_says_only_its_errors_after_lerobot_puts_its_default_logging_back(tmp_path):
    result = run_python(FFMPEG, str(tmp_path / "video.mp4"))
    assert result.returncode == 0 and result.stdout.strip() == "refused", result.stderr
    assert "Starting second pass" not in result.stderr  # the muxer's information, 30 lines in a first demo
    assert "moov atom not found" in result.stderr  # an error still shows
