"""deploy/README.md's capacity tables are tests/benchmarks/capacity.py's output, and the model adds up."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from tests.benchmarks import capacity

README = Path(__file__).resolve().parent.parent / "deploy" / "README.md"


def test_the_document_shows_what_the_script_computes() -> None:
    text = README.read_text()
    m = re.search(r"<!-- capacity:begin[^>]*-->\n(.*?)\n<!-- capacity:end -->", text, re.S)
    assert m, "the capacity tables' markers are missing from deploy/README.md"
    inputs = capacity.Inputs()
    expected = capacity.markdown(inputs, capacity.compute(inputs))
    assert m.group(1) == expected, "regenerate with: python tests/benchmarks/capacity.py --markdown"


def test_the_script_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    capacity.main(["--cars", "2000000"])
    [line] = capsys.readouterr().out.splitlines()
    out = json.loads(line)
    assert out["inputs"]["cars"] == 2_000_000
    assert out["telemetry_rows_per_day"] == 2 * capacity.compute(capacity.Inputs())["telemetry_rows_per_day"]


def test_the_model_adds_up() -> None:
    base = capacity.Inputs()
    r = capacity.compute(base)
    # rows: every car drives its minutes at one row per period
    assert r["telemetry_rows_per_day"] == round(base.cars * base.driving_min_per_day * 60)
    # at the peak the driving cars each send a row per second
    assert r["peak_rows_per_s"] == r["cars_driving_at_peak"]
    # a longer batch means fewer messages, the same rows
    longer = capacity.compute(dataclasses.replace(base, telemetry_batch_s=300))
    assert longer["messages_per_day"] < r["messages_per_day"]
    assert longer["telemetry_rows_per_day"] == r["telemetry_rows_per_day"]
    # compression only changes what is kept, and by the ratio
    assert r["telemetry_compressed_gb_per_day"] == pytest.approx(r["telemetry_gb_per_day"] / 10, rel=0.01)
    # faster workers, fewer of them; more cars, more of everything
    fast = capacity.compute(dataclasses.replace(base, ingest_rows_per_s=4 * base.ingest_rows_per_s))
    assert fast["ingest_workers"] < r["ingest_workers"]
    big = capacity.compute(dataclasses.replace(base, cars=10 * base.cars))
    assert big["broker_nodes"] > r["broker_nodes"] >= 2
    assert big["ingest_workers"] >= 9 * r["ingest_workers"]
