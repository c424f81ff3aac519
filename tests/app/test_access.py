"""Shared mode: roles, owners, limits and the memory estimate (fmnist_core.store.access, .memory),
through the run manager and through the Train page."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from fmnist_core.base.errors import UserError
from fmnist_core.formats.memory import DATA_BYTES, RUNTIME_OVERHEAD, estimate_memory, machine_memory
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.access import LimitError, Limits, NotAllowed, Policy, studio_mode
from fmnist_core.store.run_store import RunStore
from tests.helpers.paths import APP, ROOT
from tests.helpers.runs import tiny
from tests.hostile import shown_text, unsafe_tags

SHARED = Policy.from_settings("shared", {"admins": ["Admin@Example.org"]})

# ---- mode, settings file, roles -------------------------------------------------------------


def test_mode_comes_from_the_environment():
    assert studio_mode({}) == "local"
    assert studio_mode({"FMNIST_STUDIO_MODE": " Shared "}) == "shared"
    with pytest.raises(UserError, match="FMNIST_STUDIO_MODE='public' is not a mode; use 'local' or 'shared'"):
        studio_mode({"FMNIST_STUDIO_MODE": "public"})


def test_limits_have_defaults_and_the_file_overrides_them():
    assert Limits() == Limits(runs_per_visitor=2, queue_length=8, memory_per_run_gb=2.0, max_width=128, max_batch_size=1024)
    policy = Policy.from_settings("shared", {"limits": {"queue_length": 3, "memory_per_run_gb": 0.5}})
    assert policy.limits.queue_length == 3 and policy.limits.memory_per_run_gb == 0.5 and policy.limits.runs_per_visitor == 2


@pytest.mark.parametrize("studio, words", [
    ({"limits": {"queue_lenght": 3}}, "has no setting 'queue_lenght'; the limits are: bytes_per_photoset, files_per_photoset, max_batch_size"),
    ({"limits": {"runs_per_visitor": 0}}, "runs_per_visitor = 0: use a whole number of at least 1"),
    ({"limits": {"memory_per_run_gb": "2GB"}}, "memory_per_run_gb = '2GB': use a number of gigabytes above 0"),
    ({"limits": {"max_batch_size": 10_000}}, "max_batch_size = 10000: use a whole number from 1 to 8192"),
    ({"limits": {"max_width": 2}}, "max_width = 2: use a whole number from 4 to 256"),
    ({"admins": "ann@example.org"}, "admins must be a list of e-mail addresses"),
    ({"admins": 5}, "admins must be a list of e-mail addresses"),
    ({"admin": ["ann@example.org"]}, "[studio] has no setting 'admin'"),
])
def test_a_wrong_settings_file_is_one_clear_error(studio, words):
    with pytest.raises(UserError) as error:
        Policy.from_settings("shared", studio)
    assert words in str(error.value)


def test_roles_owners_and_admins():
    ann, bob = SHARED.visitor("anon:ann", "ann"), SHARED.visitor("anon:bob", "bob")
    admin = SHARED.visitor("admin@example.org", "Admin")
    assert admin.is_admin and not ann.is_admin
    assert SHARED.can_modify(ann, "anon:ann") and not SHARED.can_modify(bob, "anon:ann")
    assert SHARED.can_modify(admin, "anon:ann")
    assert not SHARED.can_modify(ann, "") and SHARED.can_modify(admin, "")  # runs from before owners: admins only
    assert "only they or an admin" in SHARED.why_not(bob, "anon:ann") and SHARED.why_not(ann, "anon:ann") is None
    local = Policy()  # `make run`: one person, every right
    assert local.local_visitor().is_admin and local.can_modify(local.visitor("anyone", "x"), "someone else")


# ---- the memory estimate ----------------------------------------------------------------------


def test_estimate_counts_parameters_per_optimizer_and_activations_per_batch():
    sgd = estimate_memory(TrainConfig(model="cnn_c", optimizer="sgd", momentum=0.9))
    adam = estimate_memory(TrainConfig(model="cnn_c", optimizer="adam"))
    plain = estimate_memory(TrainConfig(model="cnn_c", optimizer="sgd", momentum=0.0))
    params = 35_044 * 4  # fp32 bytes
    assert (plain.parameters, sgd.parameters, adam.parameters) == (2 * params, 3 * params, 4 * params)
    assert sgd.fixed == DATA_BYTES + RUNTIME_OVERHEAD
    # Above evaluation's peak, activations grow with the batch (x4 batch: x4 activations)
    big = estimate_memory(TrainConfig(model="cnn_c", batch_size=2048)).activations
    huge = estimate_memory(TrainConfig(model="cnn_c", batch_size=8192)).activations
    assert huge == 4 * big
    # 14 px tiles: 4 examples per image, and an MLP's hidden layers keep their size, so
    # patching needs ~3x the activations (the 196-wide input is the only thing smaller)
    tiles = estimate_memory(TrainConfig(model="mlp4", patch=14, batch_size=8192)).activations
    whole = estimate_memory(TrainConfig(model="mlp4", batch_size=8192)).activations
    assert 3 * whole < tiles < 4 * whole


def test_estimate_leaves_the_random_state_alone():
    """Forms are estimated while another run may be initialising its weights from the
    global generator: the estimate must not draw from it (same seed, same numbers)."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for model in ("resnet_fm", "vgg11", "cnn_c"):
        estimate_memory(TrainConfig(model=model))
    assert torch.equal(torch.rand(3), expected)


_ESTIMATE_ONLY = """
import resource, sys
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.formats.memory import estimate_memory
TrainConfig(model="cnn_c").validate()  # imports done, models registered
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
estimate = estimate_memory(TrainConfig(model="vgg11", width=256, batch_size=8192))
print(estimate.total, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
"""


def test_estimate_allocates_nothing_real():
    """The issue's form (vgg11, width 256, batch 8192: 6.6 GB on its first allocation)
    is estimated with the process growing by less than 100 MB."""
    out = subprocess.run([sys.executable, "-c", _ESTIMATE_ONLY], cwd=ROOT, capture_output=True, text=True, check=True)
    total, growth = map(int, out.stdout.split())
    assert total > 6.6e9
    assert growth < 100e6, f"estimating grew the process by {growth / 1e6:.0f} MB"


_REAL_STEP = """
import json, sys
import torch
from torch import nn
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.training.engine import build_model, build_optimizer
from fmnist_core.use.scoring import EVAL_BATCH
torch.set_num_threads(1)
config = TrainConfig.from_dict(json.loads(sys.argv[1]))
x, y = torch.randn(config.batch_size, 1, 28, 28), torch.randint(0, 10, (config.batch_size,))
test_x = torch.randn(EVAL_BATCH, 1, 28, 28)
def status(field):  # bytes, from the kernel's view of this process
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS, so the peak is this step's
before = status("VmRSS")
model = build_model(config)
optimizer, criterion = build_optimizer(model, config), nn.CrossEntropyLoss()
for _ in range(2):  # the second step has the optimizer's state
    optimizer.zero_grad(set_to_none=True)
    criterion(model(x), y).backward()
    optimizer.step()
model.eval()
with torch.no_grad():
    model(test_x)
print(status("VmHWM") - before)
"""


@pytest.mark.parametrize("settings", [
    pytest.param({"model": "vgg11", "width": 64, "batch_size": 256}, marks=pytest.mark.slow),  # 30 s of real steps
    {"model": "cnn_c", "batch_size": 512, "optimizer": "adam"},
])
def test_estimate_is_within_a_factor_of_two_of_a_real_step(settings):
    """Peak RSS growth of two real training steps and one evaluation batch in a fresh
    process, against the estimate without the data set (the step gets random tensors)."""
    out = subprocess.run([sys.executable, "-c", _REAL_STEP, json.dumps(settings)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    measured = int(out.stdout)
    estimate = estimate_memory(TrainConfig(**settings))
    predicted = estimate.total - DATA_BYTES
    assert 0.5 < predicted / measured < 2, f"estimated {predicted / 1e6:.0f} MB, measured {measured / 1e6:.0f} MB"


def test_memory_over_the_budget_is_refused_with_the_estimate():
    with pytest.raises(LimitError) as error:
        Policy.from_settings("shared", {"limits": {"max_width": 256, "max_batch_size": 8192}}).check_config(
            TrainConfig(model="vgg11", width=256, batch_size=8192))
    assert str(error.value) == ("this run needs ~76.6 GB of memory and the limit is 2 GB per run: "
                                "lower the batch size or the width, or pick a smaller model")



def test_local_mode_refuses_only_a_run_bigger_than_the_machine():
    huge = TrainConfig(model="vgg11", width=256, batch_size=8192)
    with pytest.raises(LimitError) as error:
        Policy(machine_bytes=16 * 10**9).check_config(huge)
    assert str(error.value) == ("this run needs ~76.6 GB of memory and this machine has 16 GB in all: "
                                "lower the batch size or the width, or pick a smaller model")
    Policy(machine_bytes=128 * 10**9).check_config(huge)  # no other limit in local mode
    Policy(machine_bytes=16 * 10**9).check_config(TrainConfig(model="vgg11", width=256, batch_size=512))


# ---- the run manager enforces it --------------------------------------------------------------


def test_queue_limits_per_visitor_and_in_all(held_manager, tmp_path):
    manager = held_manager(Policy.from_settings("shared", {"limits": {"queue_length": 3}, "admins": ["admin@example.org"]}))
    ann, bob = manager.policy.visitor("anon:ann", "ann"), manager.policy.visitor("anon:bob", "bob")
    first = manager.submit(tiny(), visitor=ann)
    manager.submit(tiny(), visitor=ann)
    with pytest.raises(LimitError, match="you already have 2 runs queued or training, the most this server allows per visitor"):
        manager.submit(tiny(), visitor=ann)
    manager.submit(tiny(), visitor=bob)
    with pytest.raises(LimitError, match=r"the queue is full \(3 runs queued or training"):
        manager.submit(tiny(), visitor=bob)
    assert len(list((tmp_path / "runs").iterdir())) == 3  # a refusal creates nothing
    assert json.loads((tmp_path / "runs" / first / "run.json").read_text())["owner"] == "anon:ann"
    assert manager.store.read(first).owner == "anon:ann"


def test_settings_over_the_limits_are_refused_before_anything_is_created(held_manager, tmp_path):
    manager = held_manager(SHARED)
    ann = SHARED.visitor("anon:ann", "ann")
    with pytest.raises(LimitError) as error:
        manager.submit(tiny(batch_size=2048), visitor=ann)
    assert error.value.field == "batch_size" and "2048 is over this server's limit; use at most 1024" in str(error.value)
    with pytest.raises(LimitError) as error:
        manager.submit(TrainConfig(model="vgg11", width=192, epochs=1), visitor=ann)
    assert error.value.field == "width"
    with pytest.raises(LimitError, match=r"this run needs ~5.5 GB of memory and the limit is 2 GB per run"):
        manager.submit(TrainConfig(model="vgg11", width=128, batch_size=1024, epochs=1), visitor=ann)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_local_mode_has_no_limits(held_manager):
    manager = held_manager(Policy())
    for _ in range(3):
        manager.submit(tiny())
    assert len(manager.active_ids()) == 3


def test_only_the_owner_or_an_admin_stops_renames_or_deletes(held_manager):
    manager = held_manager(SHARED)
    ann, bob = SHARED.visitor("anon:ann", "ann"), SHARED.visitor("anon:bob", "bob")
    admin = SHARED.visitor("admin@example.org", "admin")
    running = manager.submit(tiny(name="ann's"), visitor=ann)
    with pytest.raises(NotAllowed, match="you cannot stop this run: only the visitor who started it or an admin can"):
        manager.stop(running, visitor=bob)
    with pytest.raises(NotAllowed, match="you cannot rename this run"):
        manager.rename(running, "bob's now", visitor=bob)
    assert running in manager.active_ids() and manager.store.read(running).name == "ann's"
    manager.rename(running, "renamed by ann", visitor=ann)
    manager.stop(running, visitor=admin)
    held_manager.release.set()
    assert manager.wait_idle(60)
    with pytest.raises(NotAllowed, match="you cannot delete this run"):
        manager.delete(running, visitor=bob)
    assert manager.store.read(running).name == "renamed by ann"
    manager.delete(running, visitor=ann)
    assert running not in manager.store.ids()


# ---- the Train page ---------------------------------------------------------------------------


def test_page_marks_a_batch_over_the_limit_and_blocks_start(shared_app):
    at = shared_app()
    at.number_input(key="f_batch_size").set_value(2048).run()
    assert at.button(key="start").disabled
    assert any("2048 is over this server's limit; use at most 1024" in e.value for e in at.error)
    assert any("Shared server: 0 of your 2 runs in use · batch size up to 1024" in c.value for c in at.caption)


def test_page_refuses_a_run_over_the_memory_budget_with_its_estimate(shared_app, tmp_path):
    at = shared_app(studio={"limits": {"memory_per_run_gb": 0.5}})
    at.selectbox(key="f_model").set_value("vgg11").run()
    assert any("this run needs ~912 MB" in c.value for c in at.caption)
    at.button(key="start").click().run()
    assert not at.exception
    # the page escapes Markdown in messages (they can quote user text); the browser shows them plain
    assert [re.sub(r"\\(.)", r"\1", e.value) for e in at.error] == ["This run needs ~912 MB of memory and the limit is 0.5 GB per run: "
                                           "lower the batch size or the width, or pick a smaller model. Nothing was started."]
    assert RunStore(tmp_path / "runs").ids() == []  # (the store keeps its identity secret there: no run)


def test_page_gates_another_visitors_run(shared_app, tmp_path):
    """Rename and Delete are off, with the reason, for a run another visitor started
    (AppTest cannot click a disabled widget; the browser test forges that click)."""
    store = RunStore(tmp_path / "runs")
    run_id = store.create(tiny(name="ann's run"), owner="anon:ann").name
    at = shared_app(visitor="anon:bob")
    assert at.button(key="rename").disabled and at.button(key="delete").disabled
    assert at.text_input(key=f"rename-{run_id}").disabled
    assert "only they or an admin can stop, rename or delete it" in at.button(key="delete").help
    # Its owner may; so may an admin who logged in.
    owner = shared_app(visitor="anon:ann")
    assert not owner.button(key="rename").disabled and not owner.button(key="delete").disabled
    admin = shared_app(studio={"admins": ["admin@example.org"]}, user={"is_logged_in": True, "email": "Admin@Example.org"})
    assert not admin.button(key="delete").disabled
    admin.button(key="delete").click().run()
    admin.button(key="confirm_delete_yes").click().run()  # Delete asks first, then moves the run to the trash
    assert run_id not in store.ids() and run_id in store.trashed_ids()


def test_a_wrong_mode_is_one_message_not_a_traceback(monkeypatch):
    monkeypatch.setenv("FMNIST_STUDIO_MODE", "public")
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The Studio is not set up correctly: FMNIST_STUDIO_MODE='public' is not a mode; "
                                           "use 'local' or 'shared'."]
    st.cache_resource.clear()


def test_sidebar_says_who_you_are(shared_app):
    """On Home (AppTest drops the sidebar after switch_page; the browser test sees it on Train)."""
    anonymous = shared_app(page=None)
    assert "You are an anonymous visitor" in anonymous.sidebar.caption[0].value
    assert not [b for b in anonymous.sidebar.button if b.key == "login"]  # no [auth]: nothing to log in to
    with_login = shared_app(user={}, page=None, auth={"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x"})
    assert [b.label for b in with_login.sidebar.button] == ["Log in"]
    admin = shared_app(studio={"admins": ["ann@example.org"]}, user={"is_logged_in": True, "email": "ann@example.org", "name": "Ann"}, page=None)
    assert admin.sidebar.caption[0].value == "Signed in as **Ann** · admin"
    assert [b.label for b in admin.sidebar.button] == ["Log out"]
    # A name from the identity provider is the user's own text: shown as text, never Markdown.
    hostile = shared_app(user={"is_logged_in": True, "email": "eve@example.org", "name": "![t](http://127.0.0.1:9/x.png) *eve*"}, page=None)
    caption = hostile.sidebar.caption[0].value
    assert unsafe_tags(caption) == [] and shown_text(caption) == "Signed in as ![t](http://127.0.0.1:9/x.png) *eve*"


@pytest.mark.skipif((machine_memory() or 0) < 1e9 or (machine_memory() or 0) > 70e9,
                    reason="the largest form (~76.6 GB) fits this machine's memory")
def test_local_page_refuses_a_run_bigger_than_the_machine(bounded_memory, shared_app, monkeypatch, tmp_path):
    """The issue's form (vgg11, width 256, batch 8192) on `make run`: one message, nothing started."""
    monkeypatch.setenv("FMNIST_STUDIO_MODE", "local")
    at = shared_app()
    at.selectbox(key="f_model").set_value("vgg11").run()
    at.number_input(key="f_width").set_value(256).run()
    at.number_input(key="f_batch_size").set_value(8192).run()
    assert not at.button(key="start").disabled and not at.caption[-1].value.startswith("Shared server")
    at.button(key="start").click().run()
    assert not at.exception
    assert [re.sub(r"\\(.)", r"\1", e.value) for e in at.error] == [
        f"This run needs ~76.6 GB of memory and this machine has {machine_memory() / 1e9:.0f} GB in all: "
        "lower the batch size or the width, or pick a smaller model. Nothing was started."]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
