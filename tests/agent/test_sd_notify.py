import socket

from agent.systemd import notify


def test_sends_the_state_to_notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        assert notify("READY=1", environ={"NOTIFY_SOCKET": path})
        assert listener.recv(100) == b"READY=1"


def test_abstract_socket(tmp_path):
    name = f"infermeter-test-{id(tmp_path)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        assert notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert listener.recv(100) == b"STOPPING=1"


def test_outside_systemd_it_does_nothing():
    assert notify("READY=1", environ={}) is False


def test_a_dead_socket_is_logged_not_raised(tmp_path):
    assert notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False
