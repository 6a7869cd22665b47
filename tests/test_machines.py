"""Several machines, end to end: a shared git remote (a local bare repo) and a DVC remote (a
local folder). Two clones ("machines") run one experiment each and push it with `dvc exp push`;
a third clone pulls both with `dvc exp pull`, lists them with their metrics in `dvc exp show`,
and restores one experiment's model from the DVC remote with `dvc exp apply` + `dvc checkout`.
These are README's commands ("Several machines")."""
import hashlib
import json

import pytest
import yaml

from tests.conftest import copy_project, dvc, git, tiny_params

pytestmark = pytest.mark.slow


def _experiments(repo):
    """{experiment name: (rev, train_baseline's metrics)} from `dvc exp show --json`."""
    out = {}
    for row in json.loads(dvc(repo, "exp", "show", "--json").stdout):
        for exp in row.get("experiments") or []:
            for rev in exp["revs"]:
                metrics = rev["data"]["metrics"].get("plots/train_baseline/metrics.json", {})   # {"baseline": {"test": ...}}
                out[rev["name"]] = (rev["rev"], metrics.get("data"))
    return out


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_experiments_from_two_machines_meet_on_a_third(tmp_path, cifar_server):
    origin, storage = tmp_path / "origin.git", tmp_path / "dvc-storage"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    lead = copy_project(tmp_path / "lead")
    params = tiny_params()
    params["data"].update(url=cifar_server.archive_url, md5=cifar_server.md5)
    (lead / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(lead, "remote", "add", "-d", "storage", str(storage))        # written to .dvc/config, committed
    git(lead, "add", "-A")
    git(lead, "commit", "-qm", "the study, with a DVC remote")
    git(lead, "remote", "add", "origin", str(origin))
    git(lead, "push", "-q", "origin", "main")

    models = {}
    for machine, seed in (("machine1", 1), ("machine2", 2)):
        clone = tmp_path / machine
        git(tmp_path, "clone", "-q", str(origin), str(clone))
        dvc(clone, "exp", "run", "-n", f"{machine}-seed{seed}", "-S", f"seed={seed}")   # the whole study
        dvc(clone, "exp", "push", "origin")             # every experiment of HEAD: git refs + cached outputs
        models[f"{machine}-seed{seed}"] = (_md5(clone / "models/baseline.keras"),
                                           json.loads((clone / "plots/train_baseline/metrics.json").read_text()))
    assert len({md5 for md5, _ in models.values()}) == 2            # two seeds, two models

    analysis = tmp_path / "analysis"
    git(tmp_path, "clone", "-q", str(origin), str(analysis))
    assert _experiments(analysis) == {}
    dvc(analysis, "exp", "pull", "origin")              # every experiment of HEAD on the git remote
    shown = _experiments(analysis)
    assert set(shown) == set(models)
    for name, (_, metrics) in models.items():
        assert shown[name][1] == metrics                # each machine's own test numbers
    assert not (analysis / "models/baseline.keras").exists()
    dvc(analysis, "exp", "apply", "machine2-seed2")
    dvc(analysis, "checkout")
    assert _md5(analysis / "models/baseline.keras") == models["machine2-seed2"][0]   # from the DVC remote
    assert sorted(p.name for p in storage.rglob("*") if p.is_file())                # the remote holds data
