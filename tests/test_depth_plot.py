"""The needle-in-a-haystack picture: score by needle depth and context length per strategy, drawn
only for a task whose examples say where the needle was."""

from __future__ import annotations

from lcbench.analysis.plots import depth_frame, plot_depth
from test_answer import cell


def with_depths(strategy: str, length: int, scores: list[float], depths: list[float | None]):
    records = cell(strategy, length, scores)
    for r, depth in zip(records, depths):
        r.metadata = {"depth": depth}
    return records


def test_the_depth_grid_is_the_mean_score_per_depth_and_length(tmp_path):
    records = (
        with_depths("full", 1024, [1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, None])  # None: no needle in that one
        + with_depths("full", 4096, [0.0, 1.0], [0.0, 1.0])
        + with_depths("trunc", 1024, [1.0, 1.0], [0.0, 1.0])
    )
    frame = depth_frame(records, "qa", "score")
    assert len(frame) == 7  # the example without a needle has no depth
    full = frame[frame["strategy"] == "full"].pivot_table(index="depth", columns="context_length", values="score")
    assert full.loc[0.0, 1024] == 0.5 and full.loc[1.0, 1024] == 1.0 and full.loc[0.0, 4096] == 0.0
    path = plot_depth(frame, "qa", "score", ["full", "trunc"], tmp_path / "qa-depth.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_no_depth_no_picture():
    assert depth_frame(cell("full", 1024, [1.0, 0.0]), "qa", "score").empty
