"""Dataset layouts on small generated fixtures, the real NUAA lists, and load_crops."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tla_edge.data import datasets
from tla_edge.data import crops as crops_lib
from tla_edge.errors import UserError

cv2 = pytest.importorskip("cv2")


def write_image(path: Path, colour=(40, 90, 200), size=(24, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((*size, 3), np.uint8)
    img[:] = colour
    assert cv2.imwrite(str(path), img)
    return path


def make_nuaa(root: Path, real="ClientRaw", attack="ImposterRaw", suffix="raw", lists=True) -> Path:
    """A NUAA-shaped copy: 3 real + 3 attack listed for train, 1 + 1 for test,
    one unlisted image and one listed but missing file. Lists use CRLF and backslashes."""
    names = {
        real: ["0001/0001_00_00_01_1.jpg", "0001/0001_00_00_02_2.jpg", "0002/0002_01_00_01_3.jpg", "0003/0003_00_00_03_9.jpg"],
        attack: ["0001/0001_00_00_01_5.jpg", "0002/0002_00_00_02_6.jpg", "0002/0002_00_00_01_7.jpg", "0003/0003_01_00_03_8.jpg"],
    }
    for folder, files in names.items():
        for f in files:
            write_image(root / folder / f)
    write_image(root / real / "0002" / "0002_01_00_01_99.jpg")  # on disk, in no list
    if lists:
        prefix = {real: "client", attack: "imposter"}
        for folder, files in names.items():
            train = [f.replace("/", "\\") for f in files[:3]]
            if folder == attack:
                train.append("0009\\0009_00_00_01_1.jpg")  # listed, missing on disk
            (root / f"{prefix[folder]}_train_{suffix}.txt").write_bytes(("\r\n".join(train) + "\r\n").encode())
            (root / f"{prefix[folder]}_test_{suffix}.txt").write_bytes((files[3] + "\n\n").encode())
    return root


def test_nuaa_raw_layout_with_crlf_backslashes_and_test_lists(tmp_path):
    root = make_nuaa(tmp_path / "nuaa")
    assert datasets.detect_layout(root) == "nuaa"
    data = datasets.load_dataset(root)
    assert len(data) == 8
    assert data.layout == "nuaa" and data.unlisted == 1 and data.missing == 1
    by_name = {r.path.name: r for r in data}
    r = by_name["0002_01_00_01_3.jpg"]
    assert r == datasets.Record(root / "ClientRaw/0002/0002_01_00_01_3.jpg", "real", "", "0002", "01", "train")
    a = by_name["0003_01_00_03_8.jpg"]
    assert (a.label, a.species, a.subject, a.session, a.split) == ("attack", "print", "0003", "03", "test")
    assert "0002_01_00_01_99.jpg" not in by_name
    s = data.summary()
    assert s["labels"] == {"real": 4, "attack": 4}
    assert s["splits"] == {"test": 2, "train": 6}
    assert any("1 images on disk are in no list" in n for n in s["notes"])
    assert any("1 list entries are missing" in n for n in s["notes"])


def test_nuaa_variants_and_root_with_subfolders(tmp_path):
    face = make_nuaa(tmp_path / "face", "ClientFace", "ImposterFace", "face")
    data = datasets.load_dataset(face, "nuaa")
    assert len(data) == 8 and {r.path.parts[-3] for r in data} == {"ClientFace", "ImposterFace"}
    norm = make_nuaa(tmp_path / "norm", "ClientNormalized", "ImposterNormalized", "normalized")
    assert len(datasets.load_dataset(norm)) == 8
    # a full NUAA download: raw/, Detectedface/ ... under one root; raw/ is read
    make_nuaa(tmp_path / "full" / "raw")
    make_nuaa(tmp_path / "full" / "Detectedface", "ClientFace", "ImposterFace", "face")
    data = datasets.load_dataset(tmp_path / "full")
    assert data.root == tmp_path / "full" / "raw"
    assert {r.path.parts[-3] for r in data} == {"ClientRaw", "ImposterRaw"}


def test_nuaa_without_lists_reads_every_image(tmp_path):
    root = make_nuaa(tmp_path / "nuaa", lists=False)
    data = datasets.load_dataset(root)
    assert len(data) == 9 and {r.split for r in data} == {""}
    assert data.unlisted == 0 and data.missing == 0


def test_folder_layout(tmp_path):
    root = tmp_path / "folder"
    write_image(root / "real" / "alice" / "a.png")
    write_image(root / "real" / "b.jpg")
    write_image(root / "attack" / "print" / "bob" / "c.jpg")
    write_image(root / "attack" / "replay" / "d.jpg")
    write_image(root / "attack" / "e.jpg")
    (root / "real" / "notes.txt").write_text("not an image")
    assert datasets.detect_layout(root) == "folder"
    got = {r.path.name: (r.label, r.species, r.subject, r.session, r.split) for r in datasets.load_dataset(root)}
    assert got == {
        "a.png": ("real", "", "alice", "", ""),
        "b.jpg": ("real", "", "", "", ""),
        "c.jpg": ("attack", "print", "bob", "", ""),
        "d.jpg": ("attack", "replay", "", "", ""),
        "e.jpg": ("attack", "attack", "", "", ""),
    }


def test_csv_layout(tmp_path):
    root = tmp_path / "csvdata"
    for name in ("a", "b", "c", "d"):
        write_image(root / "img" / f"{name}.jpg")
    with (root / "list.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "species", "subject", "session", "split"])
        w.writerow(["img/a.jpg", "live", "", "s1", "01", "train"])
        w.writerow(["img\\b.jpg", "bona_fide", "", "s2", "02", "test"])
        w.writerow(["img/c.jpg", "spoof", "replay", "s1", "01", "train"])
        w.writerow(["img/d.jpg", "print_attack", "", "s2", "02", "test"])
        w.writerow(["img/missing.jpg", "attack", "", "s3", "01", "train"])
    assert datasets.detect_layout(root) == "csv"
    assert datasets.detect_layout(root / "list.csv") == "csv"
    data = datasets.load_dataset(root / "list.csv")
    got = {r.path.name: (r.label, r.species, r.subject, r.session, r.split) for r in data}
    assert got == {
        "a.jpg": ("real", "", "s1", "01", "train"),
        "b.jpg": ("real", "", "s2", "02", "test"),
        "c.jpg": ("attack", "replay", "s1", "01", "train"),
        "d.jpg": ("attack", "print", "s2", "02", "test"),
    }
    assert data.missing == 1


def test_csv_bad_label_and_columns_are_named(tmp_path):
    write_image(tmp_path / "a.jpg")
    (tmp_path / "bad.csv").write_text("path,label\na.jpg,maybe\n")
    with pytest.raises(UserError, match=r"line 2: label 'maybe' is not real or attack"):
        datasets.load_dataset(tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("file,class\na.jpg,real\n")
    with pytest.raises(UserError, match=r"has columns \['file', 'class'\]; expected at least path,label"):
        datasets.load_dataset(tmp_path / "cols.csv", "csv")


def test_layout_errors_say_what_was_expected(tmp_path):
    with pytest.raises(UserError, match="unknown layout 'coco'; expected one of auto, nuaa, folder, csv"):
        datasets.load_dataset(tmp_path, "coco")
    write_image(tmp_path / "stuff" / "x.jpg")
    with pytest.raises(UserError, match=r"matches no layout; expected a NUAA copy \(ClientRaw/ and ImposterRaw/"):
        datasets.load_dataset(tmp_path / "stuff")
    with pytest.raises(FileNotFoundError, match="dataset '.*nowhere' not found"):
        datasets.load_dataset(tmp_path / "nowhere")
    with pytest.raises(UserError, match="is not a NUAA copy; expected ClientRaw/ and ImposterRaw/"):
        datasets.load_dataset(tmp_path / "stuff", "nuaa")


def test_check_two_classes(tmp_path):
    with pytest.raises(UserError, match="dataset 'x' has no images; expected real and attack images"):
        datasets.check_two_classes([], "dataset 'x'")
    real = [datasets.Record(tmp_path / "a.jpg", "real", "", "", "", "")] * 2
    with pytest.raises(UserError, match=r"has only real images \(2\) and no attack images"):
        datasets.check_two_classes(real)
    attack = [datasets.Record(tmp_path / "b.jpg", "attack", "print", "", "", "")]
    with pytest.raises(UserError, match=r"has only attack images \(1\) and no real images"):
        datasets.check_two_classes(attack)
    datasets.check_two_classes(real + attack)


def test_read_image_rgb(tmp_path):
    p = write_image(tmp_path / "x.png", colour=(10, 20, 30))  # BGR on disk
    rgb = datasets.read_image_rgb(p)
    assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (30, 20, 10)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert datasets.read_image_rgb(tmp_path / "bad.jpg") is None
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert datasets.read_image_rgb(tmp_path / "empty.jpg") is None


def test_real_nuaa_lists(nuaa_dir):
    data = datasets.load_dataset(nuaa_dir)
    assert data.layout == "nuaa"
    assert len(data) == 3491
    labels = [r.label for r in data]
    assert labels.count("real") == 1743 and labels.count("attack") == 1748
    assert {r.session for r in data} == {"01", "02"}
    assert {r.species for r in data if r.label == "attack"} == {"print"}
    assert {r.split for r in data} == {"train"}
    assert {r.subject for r in data} == {f"{i:04d}" for i in range(1, 10)}
    assert all(r.path.is_file() for r in data[:: 200])


# --- load_crops ---------------------------------------------------------------


def make_crops(root: Path) -> Path:
    """A hand-written crops folder: two scales, two sessions, both classes."""
    rows = []
    for scale in ("2.7", "4.0"):
        for i, (label, species, session) in enumerate(
            [("real", "", "01"), ("attack", "print", "01"), ("real", "", "02"), ("attack", "replay", "02")]
        ):
            crop = f"s{scale}/{label}/{i}.png"
            write_image(root / crop, colour=(i * 10, 0, 255 if label == "real" else 0), size=(16, 16))
            rows.append(
                {"crop": crop, "source": f"{label}/{i}.jpg", "label": label, "species": species,
                 "subject": f"{i % 2 + 1:04d}", "session": session, "split": "train", "scale": scale,
                 "box_x": "1", "box_y": "2", "box_w": "3", "box_h": "4", "det_score": "0.9"}
            )
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=crops_lib.MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return root


def test_load_crops_filters_and_arrays(tmp_path):
    root = make_crops(tmp_path / "crops")
    assert crops_lib.is_crops_dir(root)
    cs = crops_lib.load_crops(root, scale=2.7)
    assert cs.images.shape == (4, 16, 16, 3) and cs.images.dtype == np.uint8
    assert cs.labels.dtype == np.int8 and cs.labels.tolist() == [1, 0, 1, 0]
    # written as BGR (i * 10, 0, 255) -> read as RGB (255, 0, i * 10): real crops are red
    assert tuple(cs.images[0, 0, 0]) == (255, 0, 0)
    assert tuple(cs.images[2, 0, 0]) == (255, 0, 20)
    assert cs.species == ["", "print", "", "replay"] and cs.sessions == ["01", "01", "02", "02"]
    assert cs.scale == 2.7 and all(p.is_file() for p in cs.crops)
    two = crops_lib.load_crops(root, scale=4, sessions="2")
    assert len(two) == 2 and two.sessions == ["02", "02"]
    assert len(crops_lib.load_crops(root, scale=4.0, subjects=["1"])) == 2
    sub = cs.subset(cs.labels == 0)
    assert sub.species == ["print", "replay"] and sub.images.shape[0] == 2
    assert cs.summary()["species"] == {"print": 1, "replay": 1}


def test_load_crops_errors(tmp_path):
    root = make_crops(tmp_path / "crops")
    with pytest.raises(UserError, match="holds scales 2.7, 4; choose one"):
        crops_lib.load_crops(root)
    with pytest.raises(UserError, match="has no crops at scale 3; it holds 2.7, 4"):
        crops_lib.load_crops(root, scale=3.0)
    with pytest.raises(UserError, match=r"match split='test'.*it has splits \['train'\]"):
        crops_lib.load_crops(root, scale=2.7, split="test")
    with pytest.raises(FileNotFoundError, match="crops manifest '.*manifest.csv' not found"):
        crops_lib.load_crops(tmp_path)
    (root / "s2.7/real/0.png").unlink()
    with pytest.raises(FileNotFoundError, match="named in the manifest is missing"):
        crops_lib.load_crops(root, scale=2.7)


def _csv_dataset(tmp_path, body: bytes):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"x")
    path = tmp_path / "m.csv"
    path.write_bytes(body)
    return path


def test_same_image_with_two_labels_names_the_rows(tmp_path):
    path = _csv_dataset(tmp_path, b"path,label,species\na.jpg,real,\nb.jpg,attack,print\na.jpg,attack,print\n")
    with pytest.raises(UserError) as info:
        datasets.load_dataset(path, "csv")
    assert str(info.value) == (f"CSV '{path}' lines 2 and 4 list 'a.jpg' as real and as attack; "
                               "expected one label per image")


def test_the_same_image_in_two_class_folders_of_any_layout(tmp_path):
    from tla_edge.data.datasets import Record

    recs = [Record(tmp_path / "a.jpg", "real", "", "", "", ""), Record(tmp_path / "a.jpg", "attack", "print", "", "", "")]
    with pytest.raises(UserError, match=r"lists 1 image\(s\) as both real and attack, e.g. '.*a.jpg'"):
        datasets.check_conflicting_labels(recs, "d")


def test_unknown_label_names_the_row(tmp_path):
    path = _csv_dataset(tmp_path, b"path,label\na.jpg,alive\nb.jpg,attack\n")
    with pytest.raises(UserError, match=r"CSV '.*m.csv' line 2: label 'alive' is not real or attack"):
        datasets.load_dataset(path, "csv")


def test_manifest_that_is_not_utf8_names_the_file(tmp_path):
    path = _csv_dataset(tmp_path, "path,label\ncafé.jpg,real\nb.jpg,attack\n".encode("latin-1"))
    with pytest.raises(UserError) as info:
        datasets.load_dataset(path, "csv")
    assert str(info.value) == f"CSV '{path}' is not UTF-8 text (byte 0xe9 at offset 14); expected a UTF-8 CSV manifest"
    crops = tmp_path / "crops"
    crops.mkdir()
    (crops / "manifest.csv").write_bytes("crop,label,scale\ns2.0/café.png,real,2.0\n".encode("latin-1"))
    for call in (crops_lib.read_manifest, crops_lib.is_crops_dir):
        with pytest.raises(UserError, match=r"crops manifest '.*manifest.csv' is not UTF-8 text"):
            call(crops)


def test_a_huge_image_reads_as_unreadable_so_datasets_count_it(tmp_path):
    # prepare, evaluate and calibrate count None as "unreadable"; a header claiming
    # 100000x100000 px was a cv2.error traceback that ended the whole run.
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\x00" * 50)) + chunk(b"IEND", b""))
    (tmp_path / "huge.png").write_bytes(png)
    assert datasets.read_image_rgb(tmp_path / "huge.png") is None


def test_filter_records_refuses_subjects_and_sessions_it_does_not_have():
    # `evaluate --subjects 0001,nobody` ignored the typo and evaluated 0001 alone
    recs = [datasets.Record(Path(f"{s}_{n}.jpg"), "real", "", s, "01", "") for s in ("0001", "0002") for n in range(2)]
    assert len(datasets.filter_records(recs, subjects="1")) == 2  # "1" is "0001"
    with pytest.raises(UserError, match=r"^--subjects names 'nobody', in none of the 4 images; expected some of: 0001, 0002$"):
        datasets.filter_records(recs, subjects="0001,nobody")
    with pytest.raises(UserError, match=r"^--sessions names '03', in none of the 4 images; expected some of: 01$"):
        datasets.filter_records(recs, sessions="03")


@pytest.mark.parametrize("label", ["banana", "live", "Real", "1"])
def test_crops_manifest_label_outside_the_vocabulary_names_the_line(tmp_path, label):
    # a crops label other than real/attack counted as attack
    root = make_crops(tmp_path / "crops")
    text = (root / "manifest.csv").read_text().splitlines()
    text[3] = text[3].replace(",attack,", f",{label},", 1) if ",attack," in text[3] else text[3].replace(",real,", f",{label},", 1)
    (root / "manifest.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(UserError, match=rf"^crops manifest '.*manifest.csv' line 4: label '{label}' is not real or attack"):
        crops_lib.load_crops(root, scale=2.7)


def test_load_crops_refuses_subjects_and_sessions_it_does_not_have(tmp_path):
    # `evaluate --subjects 0001,nobody` on a crops folder evaluated 0001 alone
    root = make_crops(tmp_path / "crops")
    with pytest.raises(UserError, match=r"^--subjects names 'nobody', in none of the 4 crops; expected some of: 0001, 0002$"):
        crops_lib.load_crops(root, scale=2.7, subjects="0001,nobody")
    with pytest.raises(UserError, match=r"^--sessions names '07', in none of the 4 crops; expected some of: 01, 02$"):
        crops_lib.load_crops(root, scale=2.7, sessions="07")

