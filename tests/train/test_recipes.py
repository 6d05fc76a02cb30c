"""Training recipes: TF RMSprop semantics checked by hand, weight-decay groups on the real model,
per-iteration schedules (values and resume), presets, validation and JSON round trip."""

import dataclasses
import io
import json
import math
import pickle
import re

import pytest
import torch
from torch import nn

import mobilenets
from mobilenets.train.optim import build_ema, build_optimizer, build_scheduler, param_groups, scaled_lr
from mobilenets.train.recipes import PRESETS, Recipe, get_recipe

GRADS = [[0.5, -1.5, 2.0], [0.1, 0.3, -0.7], [-2.0, 0.05, 1.0]]
P0 = [1.0, -2.0, 0.25]


def tf_rmsprop(p, grads, lrs, decay=0.9, momentum=0.9, eps=1.0, wd=0.0):
    """TensorFlow 1 tf.train.RMSPropOptimizer, in plain floats (ms starts at 1.0, eps inside the
    sqrt, lr inside the momentum buffer); ``wd`` adds coupled L2 (g + wd * p)."""
    p = list(p)
    ms = [1.0] * len(p)
    mom = [0.0] * len(p)
    for g, lr in zip(grads, lrs):
        for i in range(len(p)):
            gi = g[i] + wd * p[i]
            ms[i] = decay * ms[i] + (1 - decay) * gi * gi
            mom[i] = momentum * mom[i] + lr * gi / math.sqrt(ms[i] + eps)
            p[i] = p[i] - mom[i]
    return p


def run_optimizer(opt_factory, grads, lrs):
    w = nn.Parameter(torch.tensor(P0, dtype=torch.float64))
    opt = opt_factory([w])
    for g, lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return w.detach().tolist()


class Wrap(nn.Module):
    """Holds one bare parameter, so build_optimizer can be used on it (no decay: not a weight)."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(P0, dtype=torch.float64))


def test_paper_optimizer_is_tf_rmsprop_by_hand():
    recipe = get_recipe("paper", weight_decay=0.0)
    lr = scaled_lr(recipe)
    assert lr == pytest.approx(0.045)
    want = tf_rmsprop(P0, GRADS, [lr] * 3)

    m = Wrap()
    opt = build_optimizer(m, recipe)
    for g in GRADS:
        m.p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    got = m.p.detach().tolist()
    assert got == pytest.approx(want, abs=1e-7, rel=0)
    # the parameters really moved, by more than the tolerance
    assert max(abs(a - b) for a, b in zip(got, P0)) > 1e-2

    # PyTorch's RMSprop with the same hyper-parameters is a different rule (ms from 0, eps outside
    # the sqrt): the comparison above can tell them apart.
    torch_rms = run_optimizer(
        lambda ps: torch.optim.RMSprop(ps, lr=lr, alpha=0.9, eps=1.0, momentum=0.9), GRADS, [lr] * 3
    )
    assert max(abs(a - b) for a, b in zip(torch_rms, want)) > 1e-3


def test_rmsprop_tf_lr_lives_in_the_momentum_buffer():
    """TF multiplies each gradient by the lr of its own step before adding it to the momentum;
    with a changing lr (a schedule) that differs from scaling the whole buffer by today's lr."""
    recipe = get_recipe("paper", weight_decay=0.0)
    lrs = [0.1, 0.02, 0.3]
    want = tf_rmsprop(P0, GRADS, lrs)
    m = Wrap()
    opt = build_optimizer(m, recipe)
    for g, lr in zip(GRADS, lrs):
        opt.param_groups[0]["lr"] = lr
        m.p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    assert m.p.detach().tolist() == pytest.approx(want, abs=1e-7, rel=0)

    # lr outside the momentum (PyTorch style) gives another answer
    from timm.optim import RMSpropTF

    outside = run_optimizer(
        lambda ps: RMSpropTF(ps, alpha=0.9, eps=1.0, momentum=0.9, lr_in_momentum=False), GRADS, lrs
    )
    assert max(abs(a - b) for a, b in zip(outside, want)) > 1e-3


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),  # full conv: decay
        nn.BatchNorm2d(4),  # no decay
        nn.Conv2d(4, 4, 3, groups=4, bias=False),  # depthwise: no decay
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),  # weight: decay, bias: no decay
    ).double()


def test_coupled_l2_one_step():
    wd = 0.5  # large, so its effect is far above the tolerance
    recipe = get_recipe("paper", weight_decay=wd)
    lr = scaled_lr(recipe)
    model = _tiny()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(1)
    grads = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    opt = build_optimizer(model, recipe)
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()
    opt.step()

    def tf_step(p, g):  # one TF step from ms = 1, mom = 0
        ms = 0.9 * 1.0 + 0.1 * g * g
        return p - lr * g / torch.sqrt(ms + 1.0)

    decayed = {"0.weight", "5.weight"}
    for n, p in model.named_parameters():
        p0, g = before[n], grads[n]
        g_eff = g + wd * p0 if n in decayed else g
        torch.testing.assert_close(p.detach(), tf_step(p0, g_eff), atol=1e-7, rtol=0)
        if n in decayed:  # and differs from no decay, and from decoupled decay
            assert (p.detach() - tf_step(p0, g)).abs().max() > 1e-4
            decoupled = tf_step(p0 * (1 - lr * wd), g)
            assert (p.detach() - decoupled).abs().max() > 1e-5

    # SGD (modern) is coupled L2 too: v = g + wd p (first step of Nesterov: p -= lr (1 + m) v)
    recipe = get_recipe("modern", weight_decay=wd)
    model = _tiny()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, recipe)
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()
    opt.step()
    lr, mu = scaled_lr(recipe), recipe.momentum
    for n, p in model.named_parameters():
        g_eff = grads[n] + (wd * before[n] if n in decayed else 0)
        torch.testing.assert_close(p.detach(), before[n] - lr * (1 + mu) * g_eff, atol=1e-7, rtol=0)


def test_param_groups_on_the_real_model():
    model = mobilenets.create_model("mobilenet_v1_0.25_128", num_classes=10)
    named = dict(model.named_parameters())
    modules = dict(model.named_modules())
    # what the names say, checked against the modules (so the test's own premise is right)
    dw = {n for n in named if n.endswith(".dw.conv.weight")}
    full = {n for n in named if n.endswith((".pw.conv.weight", "stem.conv.weight"))}
    bn = {n for n in named if ".bn." in n}
    assert len(dw) == 13 and len(full) == 14 and len(bn) == 2 * 27
    for n in dw:
        conv = modules[n.rsplit(".", 1)[0]]
        assert conv.groups == conv.in_channels > 1
    for n in full:
        assert modules[n.rsplit(".", 1)[0]].groups == 1
    assert set(named) == dw | full | bn | {"classifier.weight", "classifier.bias"}

    groups = param_groups(model, 4e-5)
    assert [g["weight_decay"] for g in groups] == [4e-5, 0.0]
    name_of = {id(p): n for n, p in named.items()}
    decay = [name_of[id(p)] for p in groups[0]["params"]]
    no_decay = [name_of[id(p)] for p in groups[1]["params"]]
    assert set(decay) == full | {"classifier.weight"}
    assert set(no_decay) == dw | bn | {"classifier.bias"}
    # every parameter exactly once
    assert len(decay) + len(no_decay) == len(named) == 83
    assert len(set(decay) | set(no_decay)) == len(named)

    # the optimizer carries the same groups at the scaled lr
    recipe = get_recipe("paper", batch_size=192)
    opt = build_optimizer(model, recipe)
    assert [len(g["params"]) for g in opt.param_groups] == [15, 68]
    assert [g["weight_decay"] for g in opt.param_groups] == [4e-5, 0.0]
    assert all(g["lr"] == pytest.approx(0.09) for g in opt.param_groups)


def test_param_groups_skip_frozen_and_shared():
    model = _tiny()
    model[0].weight.requires_grad_(False)
    groups = param_groups(model, 1e-4)
    ids = [id(p) for g in groups for p in g["params"]]
    assert id(model[0].weight) not in ids
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)


def _lrs(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_exponential_staircase():
    recipe = get_recipe("paper")
    spe = 4  # decay every 2.5 * 4 = 10 iterations
    opt = build_optimizer(_tiny(), recipe)
    sched = build_scheduler(opt, recipe, spe)
    lrs = _lrs(sched, opt, 101)
    peak = 0.045
    for step, k in [(0, 0), (9, 0), (10, 1), (19, 1), (20, 2), (25, 2), (30, 3), (100, 10)]:
        assert lrs[step] == pytest.approx(peak * 0.94**k, rel=1e-12), step
    for group in opt.param_groups:  # every group follows the schedule
        assert group["lr"] == pytest.approx(peak * 0.94**10, rel=1e-12)
    # fractional interval: 2.5 epochs of 3 iterations = 7.5 iterations
    opt = build_optimizer(_tiny(), recipe)
    lrs = _lrs(build_scheduler(opt, recipe, 3), opt, 16)
    got = [x / peak for x in lrs[6:9] + lrs[14:16]]
    assert got == pytest.approx([1, 1, 0.94, 0.94, 0.94**2], rel=1e-12)


def test_cosine_with_warmup():
    recipe = get_recipe("modern", epochs=20, warmup_epochs=2, batch_size=128, min_lr_ratio=0.01)
    spe, warm, total = 10, 20, 200
    peak = 0.1 * 128 / 256
    opt = build_optimizer(_tiny(), recipe)
    sched = build_scheduler(opt, recipe, spe)
    lrs = _lrs(sched, opt, total + 5)
    assert lrs[0] == pytest.approx(peak / (warm + 1)) and lrs[0] < 0.05 * peak
    assert all(a < b for a, b in zip(lrs[:warm], lrs[1 : warm + 1]))  # rising warm-up
    assert lrs[warm] == pytest.approx(peak, rel=1e-12) and max(lrs) == lrs[warm]
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1 :]))  # then non-increasing
    mid = warm + (total - 1 - warm) / 2  # 109.5: halfway between steps 109 and 110
    def cos_mid(s):
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - 1 - warm)))

    assert lrs[109] == pytest.approx(peak * cos_mid(109), rel=1e-12)
    assert peak * cos_mid(mid) == pytest.approx(peak * (0.01 + 0.99 / 2))
    assert lrs[total - 1] == pytest.approx(0.01 * peak, rel=1e-12)  # last iteration at the floor
    assert lrs[total + 4] == pytest.approx(0.01 * peak, rel=1e-12)  # and stays there


@pytest.mark.parametrize("preset", ["paper", "modern"])
def test_scheduler_state_dict_resume(preset):
    recipe = get_recipe(preset, epochs=6, **({"warmup_epochs": 1.5} if preset == "modern" else {}))
    spe, cut, n = 7, 23, 42

    def fresh():
        torch.manual_seed(0)
        model = _tiny()
        opt = build_optimizer(model, recipe)
        return model, opt, build_scheduler(opt, recipe, spe)

    def train(model, opt, sched, steps, start):
        lrs = []
        for s in range(start, start + steps):
            lrs.append(opt.param_groups[0]["lr"])
            torch.manual_seed(s)
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            opt.step()
            sched.step()
        return lrs

    model, opt, sched = fresh()
    full = train(model, opt, sched, n, 0)
    final = [p.detach().clone() for p in model.parameters()]

    model, opt, sched = fresh()
    first = train(model, opt, sched, cut, 0)
    buf = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf
    )
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)  # plain data: loads without unpickling code

    model, opt, sched = fresh()
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    sched.load_state_dict(ckpt["sched"])
    rest = train(model, opt, sched, n - cut, cut)
    assert first + rest == full  # identical lr sequence, exactly
    for a, b in zip(model.parameters(), final):
        torch.testing.assert_close(a.detach(), b, atol=0, rtol=0)
    pickle.loads(pickle.dumps(sched.lr_lambdas[0]))  # the schedule callable is picklable


def test_ema():
    assert build_ema(_tiny(), get_recipe("paper")) is None
    model = _tiny()
    ema = build_ema(model, get_recipe("modern", ema_decay=0.9))
    assert ema.decay == 0.9
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ref = [p.detach().clone() for p in ema.module.parameters()]
    ema.update(model)  # no step: plain decay
    for e, r, p in zip(ema.module.parameters(), ref, model.parameters()):
        torch.testing.assert_close(e, 0.9 * r + 0.1 * p.detach())


def test_presets_values():
    paper, modern = PRESETS["paper"], PRESETS["modern"]
    assert (paper.optimizer, paper.rmsprop_decay, paper.momentum, paper.eps) == (
        "rmsprop_tf", 0.9, 0.9, 1.0)
    assert (paper.lr, paper.base_batch_size, paper.weight_decay) == (0.045, 96, 4e-5)
    assert (paper.schedule, paper.decay_rate, paper.decay_epochs, paper.warmup_epochs) == (
        "exponential", 0.94, 2.5, 0.0)
    assert paper.label_smoothing == 0 and paper.ema_decay is None and paper.randaugment is None
    assert (paper.crop_min_area, paper.hflip, paper.color_jitter) == (0.35, True, 0.1)
    assert (modern.optimizer, modern.schedule, modern.label_smoothing) == ("sgd", "cosine", 0.1)
    assert modern.ema_decay == 0.9998 and modern.randaugment == "rand-m9-mstd0.5"
    assert modern.crop_min_area == 0.08 and modern.warmup_epochs > 0
    assert scaled_lr(modern) == pytest.approx(0.1 * modern.batch_size / 256)
    opt = build_optimizer(_tiny(), modern)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"]
    opt = build_optimizer(_tiny(), modern.replace(optimizer="adamw"))
    assert isinstance(opt, torch.optim.AdamW)


def test_get_recipe_overrides_and_errors():
    r = get_recipe("paper", epochs=7, batch_size=32, lr=0.01)
    assert (r.epochs, r.batch_size, r.lr, r.name) == (7, 32, 0.01, "paper")
    assert PRESETS["paper"].epochs == 100  # presets untouched
    assert get_recipe("modern") == PRESETS["modern"]
    assert r.replace(ema_decay=0.99).ema_decay == 0.99
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.lr = 1.0

    paper_dict = PRESETS["paper"].to_dict()
    bad = [
        (lambda: get_recipe("imagenet"), "'imagenet'"),
        (lambda: get_recipe("paper", learning_rate=0.1), "learning_rate"),
        (lambda: get_recipe("paper", lr=-0.25), "-0.25"),
        (lambda: get_recipe("paper", optimizer="adam"), "'adam'"),
        (lambda: get_recipe("paper", schedule="step"), "'step'"),
        (lambda: get_recipe("paper", epochs=0), "epochs"),
        (lambda: get_recipe("paper", epochs=2.5), "2.5"),
        (lambda: get_recipe("paper", hflip=1), "hflip"),
        (lambda: get_recipe("paper", ema_decay=1.0), "ema_decay"),
        (lambda: get_recipe("modern", epochs=3), "warmup_epochs"),
        (lambda: get_recipe("modern", randaugment="rand-q9"), "'rand-q9'"),
        (lambda: get_recipe("modern", randaugment="autoaug"), "'autoaug'"),
        (lambda: PRESETS["paper"].replace(colour_jitter=0.2), "colour_jitter"),
        (lambda: Recipe.from_dict({**paper_dict, "extra": 1}), "extra"),
        (lambda: Recipe.from_dict({k: v for k, v in paper_dict.items() if k != "lr"}), "(s): lr"),
    ]
    for call, echoed in bad:
        with pytest.raises(ValueError, match=re.escape(echoed)):
            call()
    opt = build_optimizer(_tiny(), get_recipe("paper"))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        build_scheduler(opt, get_recipe("paper"), 0)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_json_round_trip(preset):
    r = get_recipe(preset, batch_size=64)
    text = json.dumps(dataclasses.asdict(r))
    back = Recipe.from_dict(json.loads(text))
    assert back == r and hash(back) == hash(r)
    assert Recipe.from_json(r.to_json()) == r
