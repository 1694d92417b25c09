import threading
import urllib.error
import urllib.request

import pytest

from mechscope.errors import MechscopeError
from mechscope.microscope.serve import make_server
from mechscope.store import open_store, put_png, put_rows, transaction

PNG = b"\x89PNG\r\n\x1a\n" + b"0" * 32


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "store"
    with open_store(root) as store:
        png = put_png(store, PNG)
        with transaction(store):
            put_rows(store, "layers", [{"model": "m", "layer": "conv", "channels": 2, "settings": {"kind": "vision"}}])
            put_rows(store, "figures", [{"model": "m", "layer": "conv", "channel": c, "kind": "featvis", "png": png,
                                         "settings": {"score": float(c)}} for c in range(2)])
    (tmp_path / "secret.txt").write_text("not for the web")
    server = make_server(root, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", png
    server.shutdown()
    server.server_close()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_serves_pages_and_store_pngs(served):
    base, png = served
    status, body = _get(base + "/")
    assert status == 200 and b"conv" in body
    assert _get(base + "/m/conv/index.html")[0] == 200 and _get(base + "/m/conv/1.html")[0] == 200
    assert _get(base + "/" + png) == (200, PNG)


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/png/../index.sqlite", "/index.sqlite",
                                  "//etc/passwd", "/m/conv/%2e%2e/%2e%2e/index.sqlite", "/m/conv/9.html"])
def test_refuses_paths_outside_the_site(served, path):
    base, _ = served
    assert _get(base + path)[0] == 404


def test_binds_to_localhost_by_default_and_refuses_a_missing_store(tmp_path):
    server = make_server(_store(tmp_path), port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
    with pytest.raises(MechscopeError):
        make_server(tmp_path / "nothing", port=0)


def _store(tmp_path):
    open_store(tmp_path / "s").close()
    return tmp_path / "s"


def test_export_verb_writes_a_site_from_a_scan_store(tmp_path):
    """`mechscope examples` writes a store; `microscope export` turns it into pages that link to each other."""
    from typer.testing import CliRunner

    from mechscope.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["examples", "shapes", "mixed3a", "--dataset", "shapes:8", "--top-k", "2",
                            "--out", str(tmp_path / "store")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["microscope", "export", str(tmp_path / "store"), str(tmp_path / "site")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "site" / "index.html").exists() and "mixed3a" in (tmp_path / "site" / "index.html").read_text()


def test_build_verb_then_export_links_units_along_the_circuit(tmp_path):
    from typer.testing import CliRunner

    from mechscope.cli import app

    runner = CliRunner()
    store = tmp_path / "store"
    args = ["microscope", "build", "shapes", "mixed3a", "mixed3b", "--units", "2", "--steps", "2",
            "--upstream", "mixed3b=mixed3a", "--k", "2", "--dataset", "shapes:16", "--examples-k", "2",
            "--out", str(store)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "built 0 units" in again.output
    r = runner.invoke(app, ["microscope", "export", str(store), str(tmp_path / "site")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "site" / "shapes" / "mixed3b" / "0.html").read_text()
    assert "mixed3a/" in page        # an upstream link into the earlier layer
    for caption in ("Attribution of the top dataset example", "Top examples", "Bottom examples", "Statistics",
                    "Quilt", "Distribution of activations"):
        assert caption in page
    bad = runner.invoke(app, ["microscope", "build", "shapes", "mixed3b", "--upstream", "mixed3b", "--out", str(store)])
    assert bad.exit_code != 0 and "LAYER=SOURCE" in str(bad.exception)


def test_build_verb_takes_language_models_and_toy_experiments(tmp_path):
    from typer.testing import CliRunner

    from mechscope.cli import app
    from mechscope.store import open_store, read_rows

    runner = CliRunner()
    store = tmp_path / "store"
    r = runner.invoke(app, ["microscope", "build", "attn-only-1l", "--out", str(store), "--text", "a <b>bold</b> a"])
    assert r.exit_code == 0 and "built 4 heads" in r.output, r.output
    r = runner.invoke(app, ["microscope", "build", "superposition", "intro", "--toy-steps", "20", "--out", str(store)])
    assert r.exit_code == 0 and "superposition:intro: built 10 instances" in r.output, r.output
    with open_store(store) as s:
        kinds = {(row["model"], row["settings"]["kind"]) for row in read_rows(s, "layers")}
    assert kinds == {("attn-only-1l", "heads"), ("superposition", "toy")}
    r = runner.invoke(app, ["microscope", "export", str(store), str(tmp_path / "site")])
    page = (tmp_path / "site" / "attn-only-1l" / "blocks.0.attn" / "0.html").read_text()
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold" not in page  # the sample text, escaped
    bad = runner.invoke(app, ["microscope", "build", "attn-only-1l", "blocks.0.attn", "--out", str(store)])
    assert bad.exit_code != 0 and "takes no layers" in str(bad.exception)
    bad = runner.invoke(app, ["microscope", "build", "shapes", "--out", str(store)])
    assert bad.exit_code != 0 and "name the layers" in str(bad.exception)


def test_serve_verb_prints_the_url_serves_and_stops_on_ctrl_c(served, tmp_path):
    import re
    import signal
    import subprocess
    import sys

    store = tmp_path / "store"  # the fixture's store
    # started the way a shell's background job or a CI script may start it: SIGINT ignored and blocked; the
    # server still stops on Ctrl-C
    def hostile() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    proc = subprocess.Popen([sys.executable, "-m", "mechscope", "microscope", "serve", str(store), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=hostile)
    try:
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+/) \(Ctrl-C to stop\)", line)
        assert m, line + proc.stderr.read() if proc.poll() is not None else line
        with urllib.request.urlopen(m.group(1) + "m/conv/1.html", timeout=10) as answer:
            assert answer.status == 200 and b"conv:1" in answer.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0      # Ctrl-C ends it cleanly (0.7 s here)
    finally:
        if proc.poll() is None:
            proc.kill()
