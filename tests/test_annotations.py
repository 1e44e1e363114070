from __future__ import annotations

from pathlib import Path

import pytest

from textsieve.annotations import format_gt_line, parse_gt_line, read_gt, scan_root
from textsieve.errors import AnnotationError, TextsieveError


def test_parse_spaces_commas_bom_and_transcription(tmp_path: Path) -> None:
    gt = tmp_path / "a_gt.txt"
    gt.write_bytes(
        "\ufeff377,117,463,117,465,130,378,130,Genaxis Theatre\n"
        "1 2 3 4 5 6 7 8\n"
        "\n"
        '10, 20, 30, 20, 30, 40, 10, 40, "quoted, text"\n'
        "5 5 9 5 9 9 5 9 ###\n".encode()
    )
    polys = read_gt(gt)
    assert len(polys) == 4
    assert polys[0].points == ((377, 117), (463, 117), (465, 130), (378, 130))
    assert polys[0].text == "Genaxis Theatre" and not polys[0].illegible
    assert polys[1].points[3] == (7, 8)
    assert polys[2].text == "quoted, text"
    assert polys[3].illegible


@pytest.mark.parametrize(
    "line", ["1 2 3 4 5 6 7", "a b c d e f g h", "1 2 3 4 5 6 7 nan", "1,2,3,4,5,6,7,inf,x"]
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str) -> None:
    gt = tmp_path / "bad_gt.txt"
    gt.write_text(f"1 2 3 4 5 6 7 8\n{line}\n")
    with pytest.raises(AnnotationError, match=r"bad_gt\.txt:2"):
        read_gt(gt)


def test_format_round_trip() -> None:
    line = format_gt_line(((1.4, 2.6), (3, 4), (5, 6), (7, 8)))
    assert line == "1 3 3 4 5 6 7 8"
    assert parse_gt_line(line, "x").points == ((1, 3), (3, 4), (5, 6), (7, 8))


def test_scan_root(textdis_root: Path) -> None:
    samples = scan_root(textdis_root)
    assert [s.path.name for s in samples] == [
        "syn_0.jpg",
        "syn_1.jpg",
        "syn_2.jpg",
        "syn_3.jpg",
        "bg_0.png",
        "bg_1.png",
        "bg_2.png",
        "bg_3.png",
    ]
    assert [s.is_text for s in samples] == [True] * 4 + [False] * 4
    assert samples[3].gt_path is None and samples[0].gt_path is not None
    assert samples[0].source == "syn"


def test_scan_root_rejects_other_folders(tmp_path: Path) -> None:
    with pytest.raises(TextsieveError, match="not a TextDis-layout root"):
        scan_root(tmp_path)
