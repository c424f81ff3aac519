"""Sweep: vary hyperparameters over many runs at once on Ray Tune, watch the trials, keep the best."""

from __future__ import annotations

import os

import streamlit as st

from fmnist_core.base.errors import UserError
from fmnist_core.base.statuses import SWEEP_ACTIVE, SweepStatus
from fmnist_core.modeling.config import DEFAULTS, MAX_NAME_LENGTH, SETTINGS
from fmnist_core.modeling.models import list_models
from fmnist_core.modeling.recipes import CUSTOM, DESCRIPTIONS, RECIPES
from fmnist_core.sweeps.sweep import EARLY_STOPS
from fmnist_core.sweeps.sweep_space import sweepable_settings
from fmnist_core.sweeps.sweep_store import new_sweep_id
from ui.badges import badge
from ui.state import run_manager
from ui.sweep_state import SweepState
from ui.sweeps import (
    HOW,
    SweepForm,
    compare_link,
    default_values,
    hyperparameter_chart,
    picker_key_of,
    picker_label,
    sweep_launcher,
    train_link,
    trial_columns,
    trial_rows,
    ways_to_vary,
)
from ui.tables import show_table
from ui.text import literal, plain
from ui.visitor import act, current_visitor, studio_policy

REFRESH_SECONDS = 2.0

launcher = sweep_launcher()
policy = studio_policy()
state = SweepState()  # this session's picks: the sweep shown, a delete waiting for an answer
st.title("Sweep")
st.caption("Many runs at once on Ray Tune: every trial is an ordinary run (on Train and Compare too), tagged with its sweep.")
form_col, sweep_col = st.columns([1, 2], gap="large")

# ---- the form: base config, what varies, how many trials --------------------------------------
with form_col:
    preset = st.selectbox("Base", [CUSTOM, *RECIPES], key="sw_preset",
                          format_func=lambda p: "a model with default settings" if p == CUSTOM else f"{p} – {DESCRIPTIONS.get(p, 'the report recipe')}",
                          help="Every trial starts from this config; the settings you vary below replace its values.")
    model = st.selectbox("Model", list_models(), key="sw_model", disabled=preset != CUSTOM,
                         index=list_models().index(DEFAULTS["model"]))
    base_epochs = RECIPES[preset].get("epochs", DEFAULTS["epochs"]) if preset != CUSTOM else DEFAULTS["epochs"]
    epochs = st.number_input("Epochs per trial", value=int(base_epochs), step=1, key=f"sw_epochs_{preset}",
                             help=SETTINGS["epochs"].help + f" Allowed: {SETTINGS['epochs'].describe_range()}.")
    varied = st.multiselect("Vary", sweepable_settings(), default=["lr"], key="sw_vary", format_func=lambda n: SETTINGS[n].label,
                            help="Tick the hyperparameters that differ between trials.")
    rows: list[tuple[str, str, str]] = []
    for name in varied:
        how_col, values_col = st.columns([1, 1.3])
        how = how_col.selectbox(SETTINGS[name].label, ways_to_vary(name), key=f"sw_how_{name}", format_func=HOW.__getitem__) or "grid"
        label = "LOW:HIGH" if how in ("loguniform", "uniform", "randint") else "values, comma-separated"
        text = values_col.text_input(label, value=default_values(name, how), key=f"sw_values_{name}_{how}",
                                     help=f"{SETTINGS[name].help} Allowed: {SETTINGS[name].describe_range()}.")
        rows.append((name, how, text))
    sampled = any(how != "grid" for _, how, _ in rows)
    left, right = st.columns(2)
    trials = left.number_input("Trials", value=4, step=1, key="sw_trials", disabled=not sampled,
                               help="Random draws of the sampled settings (with a grid too, each draw runs every combination).")
    search = right.selectbox("Search", ["random", "optuna"], key="sw_search", disabled=not sampled,
                             format_func=lambda s: "random" if s == "random" else "Optuna (model-based)",
                             help="Optuna's TPE picks each next trial from the results so far; it needs sampled settings only.")
    # shared mode: at most the server's limit, so the form starts valid
    at_once = min(os.cpu_count() or 1, policy.limits.trials_at_once) if policy.shared else os.cpu_count() or 1
    concurrency = left.number_input("Trials at once", value=at_once, step=1, key="sw_concurrency",
                                    help="Each trial trains with one thread on one CPU.")
    early = right.selectbox("Early stopping", EARLY_STOPS, key="sw_early", format_func=lambda e: "off" if e == "none" else "ASHA",
                            help="ASHA stops trials whose test accuracy trails the others' after the same number of epochs.")
    with st.expander("Quick try"):
        subset = st.number_input("Train and test on the first N images (0 = all)", value=0, step=1000, key="sw_subset",
                                 help="For a first look in seconds; accuracies on a subset are not comparable with full runs.")
    name = st.text_input("Sweep name", key="sw_name", placeholder="optional", max_chars=MAX_NAME_LENGTH)

    form = SweepForm(preset, model, int(epochs), rows, int(trials), search, int(concurrency), early, int(subset), name)
    try:  # the CLI's own checks, so the page refuses exactly what `sweep` refuses
        spec = form.spec()
        problem = None
    except UserError as e:
        problem = str(e)
    if problem:
        st.error(problem, icon=":material/error:")
    else:
        st.caption(f"{spec.planned_trials()} trial(s), {int(concurrency)} at a time.")
    if st.button("Launch sweep", type="primary", width="stretch", key="launch", disabled=problem is not None,
                 help="Fix the message above first." if problem else None):
        sweep_id = new_sweep_id()
        try:  # the server's limits, checked before anything starts (access.LimitError says which)
            launcher.launch_as(current_visitor(), run_manager(), sweep_id, spec)
        except UserError as e:
            st.error(f"{plain(str(e)[:1].upper() + str(e)[1:])}. Nothing was started.", icon=":material/block:")
        else:
            state.sweep_picker = sweep_id
            st.toast(f"Sweep {sweep_id} launched")
    if policy.shared:
        me = current_visitor()
        st.caption(policy.describe_sweep_limits(run_manager().active_owners().count(me.id), launcher.sweeps_of(me.id)))

# ---- the sweeps, live ------------------------------------------------------------------------------

def sweep_status(sweep_id: str, records: dict) -> SweepStatus:
    return launcher.status(sweep_id, records.get(sweep_id))


def live_sweep(sweep_id: str, status_shown: str) -> None:
    """Status, trials table, chart and buttons; polled while the sweep runs. It reads the run
    store only: the page never waits on Ray."""
    records = {r.id: r for r in launcher.sweeps.list()}
    status = sweep_status(sweep_id, records)
    if status != status_shown:
        st.rerun()  # started or ended: redraw the page once (and stop polling when it ended)
    record = records.get(sweep_id)
    top = st.columns([3, 1])
    top[0].markdown(f"**Status:** {badge(status, sweep=True)}")
    locked = launcher.why_locked(sweep_id, current_visitor())  # shared mode: only its owner or an admin
    if status in SWEEP_ACTIVE and top[1].button("Stop", key=f"stop-{sweep_id}", width="stretch", disabled=bool(locked),
                                                help=locked or "Stop every trial; their finished epochs are kept."):
        if act(launcher.stop, sweep_id):  # refused server-side too: a forged click changes nothing
            st.toast("Stopping every trial…")
    if status not in SWEEP_ACTIVE and top[1].button("Delete", key=f"delete-{sweep_id}", width="stretch", disabled=bool(locked),
                                                    help=locked or "Move the sweep and its trial runs to the trash (restorable on Train)."):
        state.confirm_delete_sweep = sweep_id
    if state.confirm_delete_sweep == sweep_id:
        st.warning("Delete this sweep and its trial runs? The runs go to the trash; Train can restore them.")
        yes, no = st.columns(2)
        if yes.button("Yes, delete", key="confirm_delete_sweep_yes", type="primary"):
            state.confirm_delete_sweep = None
            if act(launcher.delete, sweep_id):
                st.rerun()
        if no.button("Keep it", key="confirm_delete_sweep_no"):
            state.confirm_delete_sweep = None
            st.rerun()
    if record is None:
        if status is SweepStatus.FAILED:
            st.error(f"The sweep did not start: {plain(launcher.last_log_line(sweep_id) or 'see its log in the run store')}")
        else:
            st.caption("Starting Ray (a few seconds)…")
        return
    for problem in record.problems:
        st.warning(plain(problem))
    if record.message and status not in (SweepStatus.FINISHED, SweepStatus.RUNNING):
        # a stored message is text, never Markdown
        (st.error if status is SweepStatus.FAILED else st.info)(plain(record.message))
    options = record.options
    # The name whole (the picker cuts a long one to its width), then the id when they differ.
    st.caption((f"{plain(record.name)} · " if record.name != record.id else "")
               + f"{literal(record.id)} · {options.get('trials')} trial(s) · search {options.get('search')} · early stopping "
               f"{'ASHA' if options.get('early_stop') == 'asha' else 'off'} · Ray: {options.get('address')}"
               + (f" (started in {record.ray_start_s:.1f} s)" if record.ray_start_s else ""))
    trials = launcher.sweeps.trials(record)
    # every planned trial from the start: those Ray has not created yet too
    frame = trial_rows(trials, record.varied, launcher.sweeps.not_created(record, trials), status in SWEEP_ACTIVE,
                       record.base.get("epochs"))
    show_table(frame, trial_columns(record.varied), key=f"trials-{sweep_id}")
    log_scaled = {d["name"] for d in record.space if d.get("kind") == "loguniform"}
    chart = hyperparameter_chart(frame, record.varied, log_scaled)
    if chart is not None:
        st.altair_chart(chart)
    scored = frame.dropna(subset=["best_test_accuracy"]).sort_values("best_test_accuracy", ascending=False)
    if scored.empty:
        return
    best = next(t for t in trials if t.id == scored["run"].iloc[0])
    values = ", ".join(f"{n} = {best.config.get(n)}" for n in record.varied)
    st.success(f"Best so far: **{scored['best_test_accuracy'].iloc[0]:.2f}%** test accuracy with {values}")
    a, b = st.columns(2)
    a.link_button("Train this config", train_link(best.config), icon=":material/model_training:", width="stretch",
                  help="Opens the Train page with the best trial's settings filled in.")
    chosen = b.multiselect("Trials to compare", list(scored["run"]), default=list(scored["run"][:3]), key=f"cmp-{sweep_id}")
    if chosen:
        b.link_button("Compare these", compare_link(chosen), icon=":material/compare_arrows:", width="stretch")


with sweep_col:
    records = {r.id: r for r in launcher.sweeps.list()}
    ids = sorted(set(records) | set(launcher.launched_ids()), reverse=True)
    shown = state.shown_among(ids)
    if shown is None:
        st.info("No sweeps yet. Choose what varies on the left and press **Launch sweep**; or run "
                "`python -m fmnist_core sweep --grid lr=0.01,0.05,0.1` and it shows up here.")
    else:
        labels = {i: picker_label(i, records.get(i), sweep_status(i, records)) for i in ids}
        picker_key = picker_key_of(labels)
        st.selectbox("Sweep", ids, index=ids.index(shown), key=picker_key, format_func=labels.__getitem__,
                     on_change=state.picked, args=(picker_key,))
        status = sweep_status(shown, records)
        st.fragment(live_sweep, run_every=REFRESH_SECONDS if status in SWEEP_ACTIVE else None)(shown, status)
