"""study.files: a stage's headline and details files."""
import json

from study.files import pick, write_metrics


def test_write_metrics_puts_all_numbers_in_details_and_the_headline_in_metrics(tmp_path):
    details = {"nmi": 0.5, "ari": 0.25, "purity": 0.75, "per_class": {"cat": 0.1}}
    write_metrics(tmp_path / "stage", details, pick(details, ("nmi", "purity")))
    assert json.loads((tmp_path / "stage" / "details.json").read_text()) == details
    assert json.loads((tmp_path / "stage" / "metrics.json").read_text()) == {"nmi": 0.5, "purity": 0.75}
    assert list(pick(details, ("purity", "nmi"))) == ["purity", "nmi"]      # in the order asked
