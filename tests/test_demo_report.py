"""The demo report's wording of a BNN's initiation interval, without running the demo: one
digit gives no interval between two results, so the II is "not measured" (``null`` in
report.json), never II_MIN's empty value 4294967295 (tests/test_demo.py runs the demo)."""

from __future__ import annotations

import json

import pytest

from eie.app.demo_common import DemoConfig
from eie.app.demo_report import II_NOT_MEASURED, ii_text, report_checks
from eie.hw.bnn.host_program import II_NONE, measured_ii


@pytest.mark.parametrize("counters, ii", [
    ({"ii_min": II_NONE, "samples_out": 1}, None),          # one digit: the register is empty
    ({"ii_min": II_NONE, "samples_out": 0}, None),
    ({}, None),                                             # no counters (no run)
    ({"ii_min": 100, "samples_out": 2}, 100),
    ({"ii_min": 64, "samples_out": 1000}, 64),
])
def test_measured_ii(counters, ii):
    assert measured_ii(counters) == ii


def test_ii_text():
    assert ii_text(100) == "100" and ii_text(100, " cycles") == "100 cycles"
    assert ii_text(None) == "not measured" and ii_text(None, " cycles") == "not measured"
    assert ii_text(None, " cycles", why=True) == II_NOT_MEASURED
    assert "two digits" in II_NOT_MEASURED


def _parts(ii: int | None, images: int):
    eie = {"rtl_matches_golden": True, "rtl_images": images, "weights_kept": 0.08,
           "compressed_accuracy": 0.97, "float_accuracy": 0.975, "efficiency": 0.95}
    precision = {"rtl_matches_golden": True, "rtl_images": images, "golden_equals_float": True,
                 "initiation_interval": ii, "analytic_ii": 100}
    bnn = {"rtl_matches_golden": True, "rtl_images": images, "golden_equals_float": True,
           "initiation_interval": ii, "precisions": {"W1A1": precision, "W2A1": dict(precision)}}
    return eie, bnn


def test_the_ii_check_of_one_digit_says_not_measured():
    cfg = DemoConfig.for_mode("quick", images=1)
    eie, bnn = _parts(measured_ii({"ii_min": II_NONE, "samples_out": 1}), 1)
    check = next(c for c in report_checks(cfg, eie, bnn) if "measured II" in c["check"])
    assert check["enforced"] is False and check["ok"] is False
    assert check["value"] == "W1A1 not measured / 100, W2A1 not measured / 100"
    # report.json carries null, not the register's empty value
    text = json.dumps(bnn)
    assert '"initiation_interval": null' in text and str(II_NONE) not in text
    cfg = DemoConfig.for_mode("quick", images=2)
    eie, bnn = _parts(100, 2)
    check = next(c for c in report_checks(cfg, eie, bnn) if "measured II" in c["check"])
    assert check["enforced"] is True and check["ok"] is True
    assert check["value"] == "W1A1 100 / 100, W2A1 100 / 100"
