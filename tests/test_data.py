"""study.data: data/classes.json is checked like the archive's class names before any stage uses it."""
import json

import pytest

from study.compare import confusion_matrix
from study.data import check_class_names
from study.errors import StageError
from tests.conftest import assert_one_line_error, stage_process, tiny_params, tree
from tests.synthetic import write_splits

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
HOSTILE = {
    "script": "</script><img/src=x/onerror=alert(1)>",
    "mathtext": "$\\frac{a}{$",
    "tab": "cat\tdog",
    "newline": "cat\ndog",
    "empty": "",
    "long": "x" * 41,
    "leading space": " cat",
    "pipe": "cat|dog",
    "path": "../cat",
}


@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_class_name_is_refused(name):
    with pytest.raises(StageError, match=r"^data/classes.json: class name .* is not allowed; allowed: different "
                                         r"names of 1-40 letters") as e:
        check_class_names(CLASSES[:9] + [name], "data/classes.json")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value,what", [
    (CLASSES[:1], "expected a list of 2..100 class names"),
    ([f"c{i}" for i in range(101)], "expected a list of 2..100 class names"),
    ({"0": "airplane"}, "expected a list of 2..100 class names"),
    (CLASSES[:9] + [7], "expected a list of 2..100 class names"),
    (CLASSES[:9] + ["cat"], "class names repeat"),
])
def test_a_wrong_list_of_classes_is_refused(value, what):
    with pytest.raises(StageError, match=what):
        check_class_names(value, "data/classes.json")


def test_ordinary_names_pass():
    assert check_class_names(CLASSES, "x") == CLASSES                                      # the control
    other = ["Apple pie", "b-2", "c.3", "d_4", "E", "f", "g", "h", "i", "x" * 40]
    assert check_class_names(other, "x") == other
    assert check_class_names(["ant", "bee", "cat"], "x") == ["ant", "bee", "cat"]         # any number from 2


def test_a_stage_refuses_a_hand_edited_classes_json_in_one_line(tmp_path):
    params = tiny_params()
    import yaml
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_splits(tmp_path)
    (tmp_path / "data" / "classes.json").write_text(json.dumps(CLASSES[:9] + [HOSTILE["script"]]))
    before = tree(tmp_path)
    r = stage_process(tmp_path, "train_baseline", timeout=120)
    assert_one_line_error(r, r"error: data/classes.json: class name '</script><im.*' is not allowed; .* "
                             r"run `dvc repro fetch_data`")
    assert tree(tmp_path) == before                                   # nothing written


def test_a_confusion_matrix_of_other_classes_names_them():
    records = [{"actual": "cat", "predicted": "dog"}, {"actual": "kitten", "predicted": "dog"}]
    with pytest.raises(ValueError, match=r"has a record \{'actual': 'kitten', 'predicted': 'dog'\} whose classes "
                                         r"are not those of data/classes.json"):
        confusion_matrix(records, CLASSES)
    assert confusion_matrix(records[:1], CLASSES)[3, 5] == 1
