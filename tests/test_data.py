"""Tests of ``eznas data fetch`` / ``eznas data check`` against a local HTTP mirror on 127.0.0.1.

The mirror is built in a temp dir from the shared data files plus a zip of the NDS json files
(and, for the converter, small tarballs in the official CIFAR python format). Nothing here
touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import re
import subprocess
import sys
import tarfile
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from conftest import DATA_DIR, REPO, needs_data

from eznas import benchmarks
from eznas.cli import main as eznas_main
from eznas.data import convert, download, sources
from eznas.data import fetch as fetch_module
from eznas.errors import EznasError

NASLIB = ["naslib/zc_nasbench101.json", "naslib/zc_nasbench301.json"]
DIRECT = ["nb201/nats_bench.csv", "images/cifar10/cifar10.npz", "images/cifar100/cifar100.npz", *NASLIB]
BY_PATH = {f.path: f for f in sources.FILES}
NDS_NAMES = [f.name for f in sources.FILES if f.group == "nds" and f.git_blob]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str]) -> int:
    """The ``eznas`` entry point on a ``data`` command: EznasError -> one line, exit 2."""
    return eznas_main(argv)


class Mirror:
    """An HTTP server on 127.0.0.1 serving ``root``, with Range support and fault injection.

    Attributes
    ----------
    log : ``(path, Range header or None)`` of every request.
    corrupt : paths served with 64 flipped bytes in the middle (same length).
    drop_once : paths whose next response stops after half of the body.
    """

    def __init__(self, root: Path) -> None:
        self.root, self.log = root, []
        self.corrupt: set[str] = set()
        self.drop_once: set[str] = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def requests(self, path: str) -> list[str | None]:
        """The Range headers of the requests for ``path``."""
        return [r for p, r in self.log if p == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                rel = unquote(urlsplit(self.path).path).lstrip("/")
                mirror.log.append((rel, self.headers.get("Range")))
                path = mirror.root / rel
                if not path.is_file():
                    self.send_error(404)
                    return
                body = bytearray(path.read_bytes())
                if rel in mirror.corrupt:
                    mid = len(body) // 2
                    body[mid:mid + 64] = bytes(b ^ 0xFF for b in body[mid:mid + 64])
                start, size = 0, len(body)
                m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if m and int(m[1]) >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.end_headers()
                    return
                if m:
                    start = int(m[1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(size - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if rel in mirror.drop_once:
                    mirror.drop_once.discard(rel)
                    self.wfile.write(body[start:start + (size - start) // 2])
                    return
                self.wfile.write(body[start:])

        return Handler


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy for 127.0.0.1, no mirror from the environment, no retry waits."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    monkeypatch.delenv("EZNAS_DATA_MIRROR", raising=False)
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)


@pytest.fixture
def serve() -> Iterator:
    """Start `Mirror` servers on demand; stop them after the test."""
    started: list[Mirror] = []

    def start(root: Path) -> Mirror:
        started.append(Mirror(root))
        return started[-1]

    yield start
    for m in started:
        m.server.shutdown()
        m.server.server_close()


def data_mirror(root: Path, nds_zip: bool = True) -> Path:
    """A mirror of the shared data: the directly served files, and the NDS files as archives/nds_data.zip."""
    for rel in DIRECT:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(DATA_DIR / rel, root / rel)
    if nds_zip:
        (root / "archives").mkdir()
        with zipfile.ZipFile(root / "archives" / "nds_data.zip", "w", zipfile.ZIP_DEFLATED) as z:
            for name in NDS_NAMES:
                z.write(DATA_DIR / "nds" / name, f"nds_data/{name}")
    return root


@needs_data
def test_fetch_from_mirror_reproduces_verified_files(tmp_path: Path, serve, capsys: pytest.CaptureFixture) -> None:
    mirror = serve(data_mirror(tmp_path / "mirror"))
    dst = tmp_path / "dst"
    assert main(["data", "fetch", "--data-dir", str(dst), "--mirror", mirror.url]) == 0
    out = capsys.readouterr().out
    for rel in [*DIRECT, *(f"nds/{n}" for n in NDS_NAMES)]:
        assert sha256(dst / rel) == sha256(DATA_DIR / rel), rel
    assert not list(dst.rglob("*.part"))
    # NDS files are not on the mirror as files: 404, then the archive, fetched once.
    assert mirror.requests("nds/DARTS_in.json") == [None]
    assert mirror.requests("archives/nds_data.zip") == [None]
    assert "optional, not in archives/nds_data.zip: Amoeba.json" in out
    assert main(["data", "check", "--data-dir", str(dst)]) == 0
    # A second run finds everything verified: it only asks the mirror again for the absent optional files.
    before = len(mirror.log)
    assert main(["data", "fetch", "--data-dir", str(dst), "--mirror", mirror.url]) == 0
    optional = {f.path for f in sources.FILES if f.family == sources.F_NDS_CIFAR}
    assert {p for p, _ in mirror.log[before:]} == optional
    assert "0 placed, 18 already there, 22 optional not available" in capsys.readouterr().out


@needs_data
def test_fetch_without_mirror_uses_the_source_urls(tmp_path: Path, serve, monkeypatch: pytest.MonkeyPatch) -> None:
    # The public sources, moved to 127.0.0.1: the NB201 CSV by its own URL, NDS files from the zip.
    root = data_mirror(tmp_path / "public")
    server = serve(root)
    files = tuple(dataclasses.replace(f, url=f"{server.url}/{f.path}") if f.url else f for f in sources.FILES)
    monkeypatch.setattr(fetch_module, "FILES", files)
    nds = sources.ARCHIVES["nds_data.zip"]
    monkeypatch.setitem(sources.ARCHIVES, "nds_data.zip",
                        dataclasses.replace(nds, url=f"{server.url}/archives/nds_data.zip"))
    dst = tmp_path / "dst"
    for group in ("nb201", "nds", "naslib"):
        assert main(["data", "fetch", "--data-dir", str(dst), "--only", group]) == 0
    assert [p for p, _ in server.log] == ["nb201/nats_bench.csv", "archives/nds_data.zip", *NASLIB]
    for rel in ["nb201/nats_bench.csv", *(f"nds/{n}" for n in NDS_NAMES), *NASLIB]:
        assert sha256(dst / rel) == sha256(DATA_DIR / rel), rel


def test_optional_file_missing_at_its_public_url_is_skipped(tmp_path: Path, serve, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    server = serve(tmp_path / "empty")  # every request: 404
    files = tuple(dataclasses.replace(f, url=f"{server.url}/{f.path}") if f.url else f for f in sources.FILES)
    monkeypatch.setattr(fetch_module, "FILES", files)
    assert main(["data", "fetch", "--data-dir", str(tmp_path / "dst"), "--only", "naslib"]) == 0
    out = capsys.readouterr().out
    assert "optional, not found at the public URL (HTTP 404): zc_nasbench101.json, zc_nasbench301.json" in out
    assert "0 placed, 0 already there, 2 optional not available" in out
    # A required file missing at its public URL is still an error.
    assert main(["data", "fetch", "--data-dir", str(tmp_path / "dst"), "--only", "nb201"]) == 2


@needs_data
@pytest.mark.parametrize("rel", ["nb201/nats_bench.csv", "images/cifar10/cifar10.npz"])
def test_corrupt_download_is_rejected(rel: str, tmp_path: Path, serve, capsys: pytest.CaptureFixture) -> None:
    mirror = serve(data_mirror(tmp_path / "mirror", nds_zip=False))
    mirror.corrupt.add(rel)
    dst = tmp_path / "dst"
    group = rel.split("/")[0]
    assert main(["data", "fetch", "--data-dir", str(dst), "--mirror", mirror.url, "--only", group]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eznas: error:") and "\n" not in err and "nothing placed" in err
    assert not (dst / rel).exists()
    assert not list(dst.rglob("*.part"))


@needs_data
def test_interrupted_download_resumes_with_range(tmp_path: Path, serve, capsys: pytest.CaptureFixture) -> None:
    rel = "nb201/nats_bench.csv"
    mirror = serve(data_mirror(tmp_path / "mirror", nds_zip=False))
    dst = tmp_path / "dst"
    original = (DATA_DIR / rel).read_bytes()
    half = len(original) // 2
    (dst / "nb201").mkdir(parents=True)
    (dst / "nb201" / "nats_bench.csv.part").write_bytes(original[:half])
    assert main(["data", "fetch", "--data-dir", str(dst), "--mirror", mirror.url, "--only", "nb201"]) == 0
    assert mirror.requests(rel) == [f"bytes={half}-"]
    assert sha256(dst / rel) == sha256(DATA_DIR / rel)
    assert f"resumed a partial download at {half:,} bytes" in capsys.readouterr().out


@needs_data
def test_dropped_connection_is_retried_from_where_it_stopped(tmp_path: Path, serve) -> None:
    rel = "nb201/nats_bench.csv"
    mirror = serve(data_mirror(tmp_path / "mirror", nds_zip=False))
    mirror.drop_once.add(rel)
    dst = tmp_path / "dst"
    assert main(["data", "fetch", "--data-dir", str(dst), "--mirror", mirror.url, "--only", "nb201"]) == 0
    size = (DATA_DIR / rel).stat().st_size
    assert mirror.requests(rel) == [None, f"bytes={size // 2}-"]
    assert sha256(dst / rel) == sha256(DATA_DIR / rel)


@needs_data
def test_required_file_missing_from_mirror_is_an_error(tmp_path: Path, serve, capsys: pytest.CaptureFixture) -> None:
    mirror = serve(tmp_path)  # empty mirror
    assert main(["data", "fetch", "--data-dir", str(tmp_path / "dst"), "--mirror", mirror.url, "--only", "nds"]) == 2
    assert "nds/DARTS_in.json" in capsys.readouterr().err
    assert not (tmp_path / "dst" / "nds" / "DARTS_in.json").exists()


@needs_data
def test_file_url_mirror(tmp_path: Path) -> None:
    root = data_mirror(tmp_path / "mirror", nds_zip=False)
    dst = tmp_path / "dst"
    assert main(["data", "fetch", "--data-dir", str(dst), "--mirror", root.as_uri(), "--only", "nb201"]) == 0
    assert sha256(dst / "nb201/nats_bench.csv") == BY_PATH["nb201/nats_bench.csv"].sha256


def fake_cifar_tarball(path: Path, kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A tarball in the official CIFAR python layout with ``n`` random test images."""
    batch_member, meta_member, label_key, names_key = convert._MEMBERS[kind]
    classes = 10 if kind == "cifar10" else 100
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    batch = {"batch_label": "testing batch 1 of 1", label_key: labels.tolist(), "data": images,
             "filenames": [f"img_{i}.png" for i in range(n)]}
    meta = {names_key: [f"class_{c}" for c in range(classes)]}
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for member, obj in ((batch_member, batch), (meta_member, meta)):
            blob = pickle.dumps(obj, protocol=4)
            info = tarfile.TarInfo(member)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return images, labels


def test_cifar_tarballs_convert_to_balanced_samples(tmp_path: Path, serve, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "mirror"
    (root / "archives").mkdir(parents=True)
    made = {}
    for kind, name in (("cifar10", "cifar-10-python.tar.gz"), ("cifar100", "cifar-100-python.tar.gz")):
        path = root / "archives" / name
        made[kind] = fake_cifar_tarball(path, kind, 6000, seed=len(kind))
        recorded = sources.ARCHIVES[name]
        monkeypatch.setitem(sources.ARCHIVES, name, sources.Archive(
            name, recorded.url, recorded.kind, path.stat().st_size, hashlib.md5(path.read_bytes()).hexdigest()))
    mirror = serve(root)
    dst = tmp_path / "dst"
    assert main(["data", "fetch", "--data-dir", str(dst), "--mirror", mirror.url, "--only", "images"]) == 0
    assert mirror.requests("images/cifar10/cifar10.npz") == [None]  # tried as a file first: 404
    for kind, per_class in convert.PER_CLASS.items():
        src_images, src_labels = made[kind]
        with np.load(dst / f"images/{kind}/{kind}.npz", allow_pickle=False) as d:
            arrays = {k: d[k] for k in d.files}
        idx = arrays["orig_index"]
        assert arrays["images"].shape == (5000, 32, 32, 3) and arrays["images"].dtype == np.uint8
        assert arrays["labels"].dtype == np.int64
        assert np.bincount(arrays["labels"]).tolist() == [per_class] * (5000 // per_class)
        assert len(set(idx.tolist())) == 5000 and (arrays["orig_split"] == "test").all()
        np.testing.assert_array_equal(arrays["labels"], src_labels[idx])
        np.testing.assert_array_equal(arrays["images"], src_images[idx].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        assert arrays["class_names"][0] == "class_0"
        np.testing.assert_array_equal(idx, convert.balanced_sample(src_labels, per_class))
    # A tarball that differs from the recorded md5 is rejected and nothing is converted.
    name = "cifar-10-python.tar.gz"
    wrong_md5 = sources.Archive(name, "", "cifar10", (root / "archives" / name).stat().st_size, "0" * 32)
    monkeypatch.setitem(sources.ARCHIVES, name, wrong_md5)
    other = tmp_path / "other"
    assert main(["data", "fetch", "--data-dir", str(other), "--mirror", mirror.url, "--only", "images"]) == 2
    assert not (other / "images/cifar10/cifar10.npz").exists()
    assert not (other / "archives/cifar-10-python.tar.gz").exists()


def test_unpickler_refuses_other_globals() -> None:
    with pytest.raises(EznasError, match="os.system is not allowed|posix.system is not allowed"):
        convert.load_array_pickle(io.BytesIO(pickle.dumps({"data": os.system})))
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(convert.load_array_pickle(io.BytesIO(pickle.dumps({"data": arr})))["data"], arr)


@needs_data
def test_check_on_shared_data(capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "check", "--data-dir", str(DATA_DIR)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"nb201/nats_bench.csv +ok in .*sha256", out)
    assert re.search(r"nds/DARTS_in.json +ok in .*git blob 89212c5c", out)
    assert re.search(r"images/cifar100/cifar100.npz +ok in .*5,000 images, 100 classes", out)
    sweeps = out.split("NDS CIFAR-10 sweeps")[1].splitlines()[1]
    assert sweeps.startswith("  absent (optional): Amoeba.json, DARTS.json")
    assert "ImageNet16-120 images: absent" in out
    assert re.search(r"naslib/zc_nasbench301.json +ok in .*sha256 e47e258b95f6", out)
    available = out.split("tasks available")[1].splitlines()[0]
    assert "nds:ResNeXt-B_in" in available and "nb101:cifar10, nb301:cifar10" in available
    assert "default experiment: ready" in out


@needs_data
def test_check_fails_on_empty_or_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "check", "--data-dir", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "nb201/nats_bench.csv" in out and "MISSING (required)" in out and "NOT ready" in out
    (tmp_path / "nb201").mkdir()
    (tmp_path / "nb201" / "nats_bench.csv").write_bytes((DATA_DIR / "nb201/nats_bench.csv").read_bytes()[:1000])
    assert main(["data", "check", "--data-dir", str(tmp_path)]) == 2
    assert re.search(r"nb201/nats_bench.csv +FAILS in .*1,000 bytes, expected 3,024,008", capsys.readouterr().out)


_CLI = "import sys\nfrom eznas.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.mark.slow
@needs_data
def test_cli_subprocess_exit_status(tmp_path: Path) -> None:
    def cli(*argv: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("EZNAS_DATA_DIR", "EZNAS_DATA_MIRROR")}
        return subprocess.run([sys.executable, "-c", _CLI, *argv], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)

    assert cli("data", "check", "--data-dir", str(DATA_DIR)).returncode == 0
    if DATA_DIR == REPO.parent / "shared" / "data" and not (REPO / "data").exists():
        found = cli("data", "check")  # by the lookup order: ./data is absent, ../shared/data has it all
        assert found.returncode == 0 and "ok in ../shared/data: sha256" in found.stdout
    assert cli("data", "check", "--data-dir", str(tmp_path)).returncode == 2
    bad = cli("data", "fetch", "--data-dir", str(tmp_path), "--mirror", "ftp://example.org")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "not an http://" in bad.stderr
    assert cli("data", "fetch", "--only", "cifar").returncode == 2  # argparse: invalid choice


@needs_data
def test_catalogue_matches_loaders_config_and_provenance() -> None:
    from eznas import inputs

    paths = {f.path for f in sources.FILES}
    assert benchmarks.NB201_FILE in paths and set(inputs.IMAGE_FILES.values()) <= paths
    assert {f.path: f.classes for f in sources.FILES if f.kind == "npz"} == {
        inputs.IMAGE_FILES["cifar10"]: 10, inputs.IMAGE_FILES["cifar100"]: 100}
    cfg = tomllib.loads((REPO / "experiments" / "default.toml").read_text())
    needed = {benchmarks.task_file(t) for t in cfg["tasks"]["evolve"] + cfg["tasks"]["heldout"]}
    needed |= set(inputs.IMAGE_FILES.values())
    assert needed == {f.path for f in sources.FILES if f.required}
    # Sizes and blob-id prefixes are those of nds/PROVENANCE.md; the full ids match the shared copies.
    table = (DATA_DIR / "nds/PROVENANCE.md").read_text()
    rows = re.findall(r"^\| (\S+\.json) \| (\d+) \| ([0-9a-f]{8}) \|", table, re.M)
    assert len(rows) == 13
    for name, size, blob in rows:
        f = BY_PATH[f"nds/{name}"]
        assert (f.size, f.git_blob[:8]) == (int(size), blob)
    prov = (DATA_DIR / "nb201/PROVENANCE.md").read_text()
    assert BY_PATH["nb201/nats_bench.csv"].sha256 in prov
    assert sources.NB201_COMMIT in prov
    # The NAS-Bench-Suite-Zero samples: the loaders' paths, sha256 and commit of naslib/PROVENANCE.md.
    assert set(benchmarks.NASLIB_FILES.values()) == set(NASLIB) <= paths
    prov = (DATA_DIR / "naslib/PROVENANCE.md").read_text()
    assert sources.NASLIB_COMMIT in prov
    for rel in NASLIB:
        f = BY_PATH[rel]
        assert f"| `{f.name}` | {f.sha256} |" in prov and f.url.endswith(f"/{sources.NASLIB_COMMIT}/naslib/data/{f.name}")
        assert (f.size, f.sha256) == ((DATA_DIR / rel).stat().st_size, sha256(DATA_DIR / rel))
