"""Gradual unfreezing: nothing moves before its turn, everything moves after, scheduled like the rest."""

import pytest
import torch
from conftest import tiny_bert
from transformers import TrainerCallback

from finetune.errors import FinetuneError
from finetune.layers.freezing import apply_freeze
from finetune.layers.unfreezing import GradualUnfreezing, every_steps, unfreeze_schedule
from finetune.model.anatomy import model_anatomy
from finetune.optimizer.param_groups import build_optimizer, param_groups
from finetune.recipe import validate_recipe
from finetune.recipe.freeze import FreezeSection, GradualSection
from finetune.recipe.optimizer import OptimizerSection
from finetune.training.run import train


def test_schedule_releases_blocks_top_down_every_interval():
    blocks = ["layer.3", "layer.2", "layer.1", "layer.0", "embeddings"]
    gradual = GradualSection(every=2, unit="step")
    assert unfreeze_schedule(gradual, blocks, 10) == {
        "layer.3": 2,
        "layer.2": 4,
        "layer.1": 6,
        "layer.0": 8,
        "embeddings": 10,
    }
    two_at_a_time = GradualSection(every=1, unit="epoch", blocks=2)
    assert unfreeze_schedule(two_at_a_time, blocks, 5) == {
        "layer.3": 5,
        "layer.2": 5,
        "layer.1": 10,
        "layer.0": 10,
        "embeddings": 15,
    }
    assert every_steps(GradualSection(every=0.5), 5) == 3  # 2.5 steps rounds half up
    assert every_steps(GradualSection(every=0.01), 5) == 1  # at least one step


def test_plan_starts_with_head_pooler_and_start_layers_and_keeps_the_floor_frozen():
    model = tiny_bert()
    anatomy = model_anatomy(model)
    spec = FreezeSection(embeddings=True, gradual={"every": 1, "start_layers": 1})
    summary = apply_freeze(model, spec, anatomy)
    assert list(summary.pending) == ["layer.2", "layer.1", "layer.0"]  # top-down; embeddings are the floor
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for b in ("layer.3", "pooler", "head") for n in anatomy.blocks[b]}
    assert summary.frozen_blocks == ["embeddings"]
    waiting = sum(
        p.numel() for b in summary.pending for n, p in model.named_parameters() if n in anatomy.blocks[b]
    )
    assert summary.eventually_trainable == summary.trainable + waiting


def test_nothing_left_to_unfreeze_is_an_error():
    model = tiny_bert()
    spec = FreezeSection(embeddings=True, gradual={"start_layers": 4})
    with pytest.raises(FinetuneError, match="freeze.gradual: no block is left to unfreeze"):
        apply_freeze(model, spec, model_anatomy(model))


def test_gradual_by_epochs_must_fit_in_the_run():
    with pytest.raises(FinetuneError, match="freeze.gradual.every: 3 epochs, but training.epochs is 3"):
        validate_recipe({"freeze": {"gradual": {"every": 3}}, "training": {"epochs": 3}})
    with pytest.raises(FinetuneError, match="freeze.gradual.*whole number"):
        validate_recipe({"freeze": {"gradual": {"every": 2.5, "unit": "step"}}})


class BlockWatcher(TrainerCallback):
    """Records, after every optimizer step, which blocks' parameters changed in that step."""

    def __init__(self, model):
        self.model = model
        self.anatomy = model_anatomy(model)
        self.previous = self.snapshot()
        self.changed: dict[int, set[str]] = {}
        self.lr_ratios: dict[int, dict[str, float]] = {}

    def snapshot(self):
        return {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        current = self.snapshot()
        self.changed[state.global_step] = {
            block
            for block, names in self.anatomy.blocks.items()
            if any(not torch.equal(current[n], self.previous[n]) for n in names)
        }
        self.previous = current
        groups = optimizer.param_groups
        self.lr_ratios[state.global_step] = {g["block"]: g["lr"] / g["initial_lr"] for g in groups}
        self.peaks = {g["block"]: g["initial_lr"] for g in groups}


def test_no_block_changes_before_its_turn_and_every_block_changes_after(tiny_recipe):
    tiny_recipe["freeze"] = {"gradual": {"every": 2, "unit": "step", "start_layers": 1}}
    tiny_recipe["layer_lr"] = {"decay": 0.8}  # per-block LRs, each group scheduled alike
    tiny_recipe["schedule"] = {"warmup_steps": 0}  # every step moves what is trainable
    tiny_recipe["training"]["max_steps"] = 10
    tiny_recipe["evaluation"]["before_training"] = False
    tiny_recipe["output"].update(save_model=False, plots=False)
    recipe = validate_recipe(tiny_recipe)

    watchers = []

    class Attach(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            watchers.append(BlockWatcher(model))

        def on_step_end(self, *args, **kwargs):
            watchers[0].on_step_end(*args, **kwargs)

    result = train(recipe, callbacks=[Attach()])
    watcher = watchers[0]
    turn = {"layer.2": 2, "layer.1": 4, "layer.0": 6, "embeddings": 8}  # unfrozen before step turn + 1
    for step, changed in watcher.changed.items():
        assert {"head", "pooler", "layer.3"} <= changed, step
        for block, unfrozen_at in turn.items():
            assert (block in changed) == (step > unfrozen_at), (block, step)
    # a newly unfrozen group runs on the same schedule as the others: same LR / peak ratio at every step
    for step, ratios in watcher.lr_ratios.items():
        assert len(set(round(r, 12) for r in ratios.values())) == 1, step
    assert watcher.peaks["layer.0"] == pytest.approx(1e-3 * 0.8**4)  # LLRD: layer 0 of 4
    assert watcher.peaks["embeddings"] == pytest.approx(1e-3 * 0.8**5)
    history = result.results["unfrozen_during_training"]
    assert [(h["block"], h["step"]) for h in history] == list(turn.items())


def unfreezer(model, eval_mode=False, **gradual):
    anatomy = model_anatomy(model)
    spec = FreezeSection(gradual=gradual or {"every": 1, "unit": "step"}, eval_mode=eval_mode)
    summary = apply_freeze(model, spec, anatomy)
    return GradualUnfreezing(model, summary.pending, spec.gradual, summary.eval_guard, verbose=False), anatomy


def test_state_dict_round_trip_restores_requires_grad_and_eval_mode():
    model = tiny_bert()
    callback, anatomy = unfreezer(model, eval_mode=True)
    callback.unfreeze(["layer.3", "layer.2"], step=7)
    state = callback.state_dict()
    assert state["unfrozen"] == ["layer.3", "layer.2"]

    restored = tiny_bert()
    fresh, fresh_anatomy = unfreezer(restored, eval_mode=True)
    fresh.load_state_dict(state)
    flags = lambda m: {n: p.requires_grad for n, p in m.named_parameters()}  # noqa: E731
    assert flags(restored) == flags(model)
    assert set(fresh.eval_guard.blocks) == {"layer.1", "layer.0", "embeddings"}
    assert fresh.history == [{"block": "layer.3", "step": 7}, {"block": "layer.2", "step": 7}]
    with pytest.raises(FinetuneError, match="checkpoint has unfrozen pooler"):
        fresh.load_state_dict({"unfrozen": ["pooler"]})


def test_optimizer_state_of_an_unfrozen_block_survives_a_resume():
    """The optimizer's groups do not depend on what is unfrozen, so a checkpoint's state always fits."""
    spec = OptimizerSection(lr=1e-2)
    model = tiny_bert()
    callback, _ = unfreezer(model)
    optimizer = build_optimizer(param_groups(model, spec, None, callback.pending_parameter_names()), spec)
    callback.unfreeze(["layer.3"], step=1)
    model(input_ids=torch.tensor([[3, 7, 8, 4]]), labels=torch.tensor([1])).loss.backward()
    optimizer.step()
    name = "bert.encoder.layer.3.output.dense.weight"
    index = [
        n for g in param_groups(model, spec, None, callback.pending_parameter_names()) for n in g["names"]
    ]
    saved = optimizer.state_dict()

    resumed = tiny_bert()
    again, _ = unfreezer(resumed)
    again.load_state_dict(callback.state_dict())
    groups = param_groups(resumed, spec, None, again.pending_parameter_names())
    assert [n for g in groups for n in g["names"]] == index  # same structure, whatever is unfrozen
    restored = build_optimizer(groups, spec)
    restored.load_state_dict(saved)
    parameter = dict(resumed.named_parameters())[name]
    original = dict(model.named_parameters())[name]
    assert torch.equal(restored.state[parameter]["exp_avg"], optimizer.state[original]["exp_avg"])
    untouched = dict(resumed.named_parameters())["bert.encoder.layer.0.output.dense.weight"]
    assert untouched not in restored.state  # a still-frozen block has no optimizer state


def test_hooks_hear_every_unfreezing_and_the_train_begin_catch_up():
    model = tiny_bert()
    callback, anatomy = unfreezer(model, every=3, unit="step")
    heard = []
    callback.on_unfreeze.append(lambda blocks, params: heard.append((blocks, len(params))))
    args = type("Args", (), {"gradient_accumulation_steps": 1})()
    state = type("State", (), {"global_step": 7, "max_steps": 100})()
    callback.on_train_begin(args, state, None, train_dataloader=list(range(10)))  # resumed at step 7
    assert callback.unfrozen == ["layer.3", "layer.2"]  # due at steps 3 and 6
    assert heard == [(["layer.3", "layer.2"], len(anatomy.blocks["layer.3"]) * 2)]
    state.global_step = 9
    callback.on_step_begin(args, state, None)
    assert callback.unfrozen == ["layer.3", "layer.2", "layer.1"]
