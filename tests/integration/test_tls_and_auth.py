"""Redis over TLS (a CA made by the test) and Redis AUTH, with secrets kept out of every log."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from testbed.redis_proc import RedisProcess

PASSWORD = "s3cret-pa55-for-tests"  # a test fixture's own throwaway password


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test CA")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "1", "-subj", "/CN=drawstate-test-ca", cwd=tmp_path)  # fmt: skip
    (tmp_path / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=tmp_path)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", "-extfile", "san.cnf",
                 cwd=tmp_path)  # fmt: skip
    return tmp_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tls_redis(certs: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server with TLS only, requiring client certificates; skip where none is built with TLS."""
    for binary in dict.fromkeys(filter(None, ["/usr/bin/redis-server", shutil.which("redis-server")])):
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key"),
             "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc, port
            except OSError:
                time.sleep(0.02)
        proc.kill()
        proc.wait()
    pytest.skip("no redis-server built with TLS")


def test_tls_connection_to_redis_with_a_test_ca_and_client_certificate(certificates, make_config,
                                                                        start_daemon, new_state):  # fmt: skip
    proc, port = _tls_redis(certificates)
    try:
        daemon = start_daemon(
            make_config(
                redis_url=f"rediss://127.0.0.1:{port}/0",
                redis_tls_ca=certificates / "ca.crt",
                redis_tls_cert=certificates / "client.crt",
                redis_tls_key=certificates / "client.key",
            )
        )
        with daemon.client() as client:
            state = new_state()
            assert client.save(state).version == 1
            assert client.load(state.lock_key).operation_id == state.operation_id
            assert client.ping().redis == "up"
    finally:
        proc.terminate()
        proc.wait()


def test_tls_without_the_ca_is_refused_as_redis_unavailable(certificates, make_config, start_daemon):
    proc, port = _tls_redis(certificates)
    try:
        daemon = start_daemon(make_config(redis_url=f"rediss://127.0.0.1:{port}/0"))
        with daemon.client(timeout=0.5) as client:
            assert client.ping().redis == "down"  # the server's certificate is not trusted
    finally:
        proc.terminate()
        proc.wait()


@pytest.fixture
def auth_redis():
    proc = RedisProcess().start()
    with proc.client() as client:
        client.acl_setuser("game", enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"], commands=["+@all"])
        client.config_set("requirepass", PASSWORD)
    yield proc
    proc.cleanup()


@pytest.mark.parametrize("source", ["env", "file"])
def test_password_from_env_or_file_authenticates_and_never_leaks(auth_redis, sock_dir, source, new_state):
    from drawstate import Client
    from tests.support.daemon import DaemonProcess

    env = {"DRAWSTATE_REDIS_USERNAME": "game"}
    if source == "env":
        env["DRAWSTATE_REDIS_PASSWORD"] = PASSWORD
    else:
        secret = sock_dir / "redis-password"
        secret.write_text(PASSWORD + "\n")
        secret.chmod(0o600)
        env["DRAWSTATE_REDIS_PASSWORD_FILE"] = str(secret)
    proc = DaemonProcess(
        sock_dir / "d.sock",
        ["--redis-url", auth_redis.url, "--data-dir", str(sock_dir / "data"), "--log-level", "DEBUG"],
        env=env,
    ).start()
    try:
        with Client(proc.socket_path) as client:
            assert client.save(new_state()).version == 1
        cmdline = Path(f"/proc/{proc.proc.pid}/cmdline").read_bytes()
        assert PASSWORD.encode() not in cmdline
    finally:
        proc.terminate()
        proc.wait()
    assert PASSWORD not in proc.log()


def test_wrong_password_is_redis_unavailable_and_not_logged(auth_redis, make_config, start_daemon, caplog):
    daemon = start_daemon(make_config(redis_url=auth_redis.url, redis_password="wrong-" + PASSWORD))
    with daemon.client(timeout=0.5) as client:
        assert client.ping().redis == "down"
    assert "wrong-" + PASSWORD not in repr(daemon.config)
    assert PASSWORD not in caplog.text
    with redis.Redis(unix_socket_path=str(auth_redis.socket), password=PASSWORD) as direct:
        assert direct.ping()
