"""`actors status` trusts no control file another user could have written,
and unpickles nothing it reads."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import tempfile
import threading
from multiprocessing.connection import Listener
from pathlib import Path

import pytest

from runtime.cli._status import CONTROL, ControlFile, StatusError, fetch_status, read_control
from runtime.wire._frames import REPLY, decode_header, encode


def _plant(directory: Path, info: dict, *, file_mode: int = 0o600, folder_mode: int = 0o700) -> Path:
    """A control file as a planter would write it, with the modes given."""
    path = directory / CONTROL
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(info))
    os.chmod(path, file_mode)
    os.chmod(path.parent, folder_mode)
    return path


class _Marker:
    """Unpickling this creates the marker file: code run by whoever unpickles."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


class _PlantedListener:
    """A listener with the key from the planted file, answering one INFO with `body`."""

    def __init__(self, key: bytes, body: bytes) -> None:
        self._dir = tempfile.mkdtemp(prefix="planted-")  # short: socket paths are limited
        self.address = os.path.join(self._dir, "s.sock")
        self._listener = Listener(self.address, family="AF_UNIX", authkey=key)
        self._body = body
        self.asked = threading.Event()
        self._thread = threading.Thread(target=self._answer, daemon=True)
        self._thread.start()

    def _answer(self) -> None:
        try:
            with self._listener.accept() as conn:  # the handshake, with the planted key
                _kind, request_id, _name, _body = decode_header(memoryview(conn.recv_bytes()))
                self.asked.set()
                conn.send_bytes(encode(REPLY, request_id, b"", self._body)[4:])  # send_bytes adds the length
                conn.recv_bytes()  # until status hangs up
        except (OSError, EOFError):
            pass

    def close(self) -> None:
        self._listener.close()
        self._thread.join(10)
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.mark.parametrize(
    ("file_mode", "folder_mode", "refused"),
    [
        (0o666, 0o700, r"refusing control file .*control-\d+\.json: it is writable by group and others \(mode 666\)"),
        (0o620, 0o700, r"refusing control file .*: it is writable by group \(mode 620\)"),
        (0o600, 0o777, r"refusing folder .*\.actors: it is writable by group and others \(mode 777\)"),
    ],
)
def test_a_control_file_or_folder_others_may_write_is_refused(tmp_path, file_mode, folder_mode, refused):
    _plant(tmp_path, {"address": "/nowhere.sock", "key": "00" * 32, "pid": 1},
           file_mode=file_mode, folder_mode=folder_mode)
    with pytest.raises(StatusError, match=refused):
        fetch_status(str(tmp_path))


def test_a_control_file_of_another_user_is_refused(tmp_path, monkeypatch):
    path = _plant(tmp_path, {"address": "/nowhere.sock", "key": "00" * 32, "pid": 1})
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)  # as seen by another user
    with pytest.raises(StatusError, match=rf"refusing folder .*: it belongs to uid {me}, not to you"):
        fetch_status(str(path))


def test_a_control_file_reached_through_a_symlink_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real = _plant(elsewhere, {"address": "/nowhere.sock", "key": "00" * 32, "pid": 1})
    (tmp_path / ".actors").mkdir(mode=0o700)
    (tmp_path / CONTROL).symlink_to(real)
    with pytest.raises(StatusError, match=r"refusing control file .*: it is a symbolic link"):
        fetch_status(str(tmp_path))
    (tmp_path / CONTROL).unlink()
    (tmp_path / ".actors").rmdir()
    (tmp_path / ".actors").symlink_to(real.parent)
    with pytest.raises(StatusError, match=r"refusing folder .*\.actors: it is a symbolic link"):
        fetch_status(str(tmp_path / CONTROL))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("pickle", "not JSON"),
        (json.dumps([1, 2]).encode(), "not a list of rows"),
        (json.dumps({"rows": []}).encode(), "not a list of rows"),
        (json.dumps([{"name": "x"}]).encode(), "a row without kind"),
    ],
)
def test_a_planted_listener_never_gets_its_reply_unpickled(tmp_path, body, error):
    marker = tmp_path / "marker"
    if body == "pickle":
        body = pickle.dumps((True, _Marker(str(marker))))
    key = os.urandom(32)
    planted = _PlantedListener(key, body)
    try:
        _plant(tmp_path, {"address": planted.address, "key": key.hex(), "pid": 1})
        with pytest.raises(StatusError, match=error):
            fetch_status(str(tmp_path))
        assert planted.asked.is_set()  # the reply was read, and refused
    finally:
        planted.close()
    assert not marker.exists()


def test_the_control_file_is_never_written_through_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / ".actors").mkdir(mode=0o700)
    (tmp_path / CONTROL).symlink_to(victim)
    control = ControlFile({"address": "/nowhere.sock", "key": "00" * 32, "pid": 1}, tmp_path)
    try:
        assert victim.read_text() == "precious"
        assert not control.path.is_symlink() and stat.S_IMODE(control.path.stat().st_mode) == 0o600
        assert read_control(control.path)["address"] == "/nowhere.sock"
    finally:
        control.remove()


def test_the_control_file_is_never_written_into_a_folder_of_another_user(tmp_path, monkeypatch):
    (tmp_path / ".actors").mkdir(mode=0o755)
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)  # as seen by another user
    with pytest.raises(StatusError, match=rf"refusing folder .*\.actors: it belongs to uid {me}"):
        ControlFile({"address": "/nowhere.sock", "key": "00" * 32, "pid": 1}, tmp_path)
    assert not (tmp_path / CONTROL).exists()
