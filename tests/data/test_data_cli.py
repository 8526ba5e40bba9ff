"""`cnnbench datasets` on fixture roots, and one-line errors through the real CLI."""

import json
import os

from cnnbench.cli import main


def test_datasets_json_on_fixture_root(idx_data, cifar_data, capsys):
    # Both fixtures write under the same tmp_path/data root.
    assert idx_data.root == cifar_data.root
    code = main(["datasets", "--data-dir", str(idx_data.root), "--cache-dir", str(idx_data.cache),
                 "--json", "--val-split", "0.25"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in report["datasets"]}
    assert set(rows) == {"mnist", "fashion_mnist", "cifar10", "cifar100", "cifar10_jpeg"}
    assert rows["mnist"]["status"] == "found" and rows["mnist"]["verified"]
    assert (rows["mnist"]["train"], rows["mnist"]["val"], rows["mnist"]["test"]) == (36, 12, 12)
    assert (rows["cifar10"]["train"], rows["cifar10"]["val"], rows["cifar10"]["test"]) == (15, 5, 6)
    assert rows["cifar100"]["status"] == "missing" and "cifar-100" in rows["cifar100"]["message"]
    assert rows["cifar10_jpeg"]["status"] == "missing" and rows["cifar10_jpeg"]["train"] is None
    assert report["val_split"] == 0.25


def test_datasets_table(idx_data, capsys):
    code = main(["datasets", "--data-dir", str(idx_data.root), "--cache-dir", str(idx_data.cache)])
    out = capsys.readouterr().out
    assert code == 0
    line = next(l for l in out.splitlines() if l.startswith("mnist "))
    assert "found" in line and "yes" in line and "43" in line and str(idx_data.mnist.raw) in line


def test_missing_named_dataset_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["datasets", "mnist", "--data-dir", str(tmp_path / "nothing"),
                 "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("cnnbench: error: mnist:") and "\n" not in err
    assert "train-images-idx3-ubyte.gz" in err and "Traceback" not in err


def test_corrupt_named_dataset_is_one_line_and_exit_2(idx_data, capsys):
    target = idx_data.mnist.raw / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(b"broken")
    code = main(["datasets", "mnist", "--data-dir", str(idx_data.root),
                 "--cache-dir", str(idx_data.cache)])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after a "verifying" progress line
    assert code == 2 and last.startswith("cnnbench: error: ") and str(target) in last


def test_bad_val_split_is_exit_2(tmp_path, capsys):
    assert main(["datasets", "--val-split", "1.5", "--cache-dir", str(tmp_path)]) == 2
    assert "val-split" in capsys.readouterr().err


def test_datasets_download_fetches_the_named_ones_for_an_offline_job_later(idx_data, tmp_path, monkeypatch, capsys):
    """`cnnbench datasets mnist --download` (a login node with a network): fetched into the data
    root and decoded into the cache; afterwards a run needs no network. Offline: one line."""
    import torchvision.datasets.utils as tv_utils

    from cnnbench.data import datasets as datasets_module

    root = tmp_path / "fresh"
    fetched = []

    def fake_download_url(url, folder, filename=None, md5=None):
        fetched.append(filename)
        os.makedirs(folder, exist_ok=True)
        (tv_utils.pathlib.Path(folder) / filename).write_bytes((idx_data.mnist.raw / filename).read_bytes())

    monkeypatch.setattr(tv_utils, "download_url", fake_download_url)
    monkeypatch.setattr(datasets_module, "network_available", lambda url: False)
    args = ["datasets", "mnist", "--download", "--data-dir", str(root), "--cache-dir", str(idx_data.cache)]
    assert main(args) == 2
    assert "mnist:" in capsys.readouterr().err and fetched == []
    monkeypatch.setattr(datasets_module, "network_available", lambda url: True)
    assert main(args + ["--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["datasets"]
    assert len(fetched) == 4 and row["status"] == "found" and row["location"] == str(root / "MNIST" / "raw")
    assert main(["datasets", "--download"]) == 2
    assert "--download needs the datasets" in capsys.readouterr().err
