"""The benchmark's report: goals judged, a missed goal said plainly with its reason, both READMEs'
blocks rewritten between their markers and nothing else touched."""

from __future__ import annotations

from bench.report import Figure, Goal, markdown_table, notes, update_readmes

DOCUMENT = {
    "date": "2026-12-02 07:00 UTC",
    "machine": "2 CPU (Test CPU), 24 GiB RAM, Linux, Python 3.11.7",
    "wall_seconds": 630.0,
    "settings": {"load_average_at_start": 0.5, "load_average_at_end": 6.1},
}
FIGURES = [
    Figure("1", "initial load: records/s", 181.0, "records/s", note="100,000 records in 553 s"),
    Figure("1", "initial load: ratio to R", 0.87, "", Goal(">=", 0.9), note="the machine was busy"),
    Figure("2", "peak RSS growth", 13.2, "%", Goal("<=", 25)),
]


def readme(title: str, start: str, end: str) -> str:
    return f"# {title}\n\nbefore\n\n{start}\nan old table\n{end}\n\nafter\n"


def test_goals_are_judged_and_a_missed_one_comes_first_in_the_notes_with_its_reason():
    assert [f.met for f in FIGURES] == [None, False, True]
    assert "| 1 | initial load: ratio to R | 0.87 |  | ≥ 0.9 | MISSED |" in markdown_table(FIGURES)
    assert notes(FIGURES)[0] == "MISSED 1 initial load: ratio to R: the machine was busy"


def test_both_readmes_get_this_run_between_their_markers_and_keep_the_rest(tmp_path):
    bench_readme, project_readme = tmp_path / "bench.md", tmp_path / "project.md"
    bench_readme.write_text(readme("Benchmarks", "<!-- bench-table:start -->", "<!-- bench-table:end -->"))
    project_readme.write_text(readme("Project", "<!-- bench-summary:start -->", "<!-- bench-summary:end -->"))

    update_readmes(
        DOCUMENT, FIGURES, ["R = 200 requests/s"], bench_readme=bench_readme, project_readme=project_readme
    )

    full, summary = bench_readme.read_text(), project_readme.read_text()
    for text in (full, summary):
        assert "an old table" not in text
        assert text.startswith("# ") and "\nbefore\n" in text and text.endswith("\nafter\n")
        assert "Latest run: 2026-12-02 07:00 UTC on 2 CPU (Test CPU)" in text
        assert "took 10.5 min" in text
    assert "- R = 200 requests/s" in full and "initial load: records/s" in full
    assert "initial load: records/s" not in summary  # the summary has the figures with a goal
    assert "| 2 | peak RSS growth | 13.20 | % | ≤ 25 | met |" in summary
    assert "- MISSED 1 initial load: ratio to R: the machine was busy" in summary


def test_a_readme_without_the_markers_is_left_as_it_is(tmp_path):
    plain = tmp_path / "plain.md"
    plain.write_text("# No markers\n")

    update_readmes(DOCUMENT, FIGURES, [], bench_readme=plain, project_readme=plain)

    assert plain.read_text() == "# No markers\n"
