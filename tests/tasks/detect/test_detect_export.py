"""`mobilenet detect export` flags: the same calibration vocabulary as `mobilenet export`, refused
in one line before any model loads."""

from __future__ import annotations

import os

import pytest

from mobilenets.cli.main import main


@pytest.mark.parametrize(("flags", "message"), [
    (["--calibration", "images"], "--calibration needs --int8"),
    (["--calibration", "64", "--int8"], "--calibration is a folder of images; for the number of images use "
                                        "--calibration-images 64"),
    (["--calibration-images", "0", "--int8"], "argument --calibration-images: must be >= 1"),
])
def test_calibration_flags_mean_what_they_mean_for_export(flags, message, tmp_path, capsys):
    code = main(["detect", "export", "--checkpoint", str(tmp_path / "none"), "--output", str(tmp_path / "x"),
                 "--formats", "onnx", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert os.listdir(tmp_path) == []


def test_both_export_commands_spell_calibration_the_same():
    from mobilenets.cli.common import Parser
    from mobilenets.cli.deploy import register as register_export
    from mobilenets.cli.detect import register as register_detect

    parser = Parser(prog="mobilenet")
    sub = parser.add_subparsers(parser_class=Parser)
    register_export(sub)
    register_detect(sub)
    export = sub.choices["export"]
    detect_export = sub.choices["detect"]._subparsers._group_actions[0].choices["export"]
    for p in (export, detect_export):
        actions = {a.dest: a for a in p._actions}
        assert actions["calibration"].metavar == "DIR" and actions["calibration"].type is None
        assert actions["calibration"].option_strings == ["--calibration"]
        assert actions["calibration_images"].metavar == "N" and actions["calibration_images"].option_strings[0] == \
            "--calibration-images"
        assert f"(default {actions['calibration_images'].default})" in actions["calibration_images"].help


def test_output_that_is_a_file_is_refused_before_loading(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out, message in ((blocker, f"output {blocker} is a file; give a folder"),
                         (blocker / "sub", f"cannot write to {blocker / 'sub'}: {blocker} is a file, not a folder")):
        code = main(["detect", "export", "--checkpoint", str(tmp_path / "none"), "--output", str(out),
                     "--formats", "onnx"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err
    assert os.listdir(tmp_path) == ["a-file"]


def test_onnx_graph_lets_only_each_class_best_candidates_into_nms():
    """As eager (torchvision SSD's ``topk_candidates``): only each class's ``nms_candidates`` best
    boxes reach NMS in the exported graph; the others' scores are 0, under the score floor. Without
    this, a trained detector with more boxes of a class above the floor than that kept other
    detections than eager and failed its export check."""
    import torch

    from mobilenets.tasks.detect.build import build_detector
    from mobilenets.tasks.detect.config import make_config
    from mobilenets.tasks.detect.export import DenseSSD

    torch.manual_seed(0)
    model = build_detector(make_config("ssd", alpha=0.25, resolution=96, num_classes=3, nms_candidates=7)).eval()
    with torch.no_grad():  # a fresh head scores every box alike: random weights make the scores differ
        for p in model.head.parameters():
            p.normal_(0, 0.1)
    dense = DenseSSD(model, 96).eval()
    unlimited = DenseSSD(model, 96).eval()
    unlimited.candidates = 0
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        _, scores = dense(x)
        _, full = unlimited(x)
    assert full.shape[1] > 7 and (full > 0).sum(1).min() > 7  # without the limit, every box has a score
    kept = (scores > 0).sum(1)
    best = full.topk(7, dim=1).values
    assert (kept >= 7).all() and (kept < (full > 0).sum(1)).all()  # 7 per class and image, or ties at the 7th
    assert torch.equal(scores.topk(7, dim=1).values, best)
    assert ((scores == 0) | (scores >= best[:, -1:, :])).all()  # what is kept is at least the 7th best


def test_int8_bias_correction_cancels_the_mean_shift_of_rounded_weights():
    """The detector's int8 export starts from :func:`bias_corrected`: with every conv's
    BatchNorm-folded weights rounded to the ONNX form's grid, the head's outputs keep the float
    network's mean far better than without the correction (on other images than it measured)."""
    import torch

    from mobilenets.deploy.ort import weight_qmax
    from mobilenets.deploy.ptq import conv_bn_pairs
    from mobilenets.deploy.rounding import round_to_grid
    from mobilenets.tasks.detect.build import build_detector
    from mobilenets.tasks.detect.config import make_config
    from mobilenets.tasks.detect.export import bias_corrected

    torch.manual_seed(0)
    model = build_detector(make_config("ssd", alpha=0.25, resolution=96, num_classes=3)).eval()
    with torch.no_grad():  # weights and statistics that make rounding matter (a fresh model's barely do)
        for conv, bn in conv_bn_pairs(model):
            conv.weight.normal_(0, 0.3)
            if bn is not None:
                bn.running_var.uniform_(0.5, 2.0)
                bn.running_mean.normal_(0, 0.5)
                bn.weight.uniform_(0.5, 1.5)

    def rounded(m):  # the weights an int8 file runs: folded, rounded to the grid, unfolded again
        import copy

        m = copy.deepcopy(m)
        with torch.no_grad():
            for conv, bn in conv_bn_pairs(m):
                s = torch.ones(conv.out_channels) if bn is None else bn.weight / torch.sqrt(bn.running_var + bn.eps)
                folded = conv.weight * s.view(-1, 1, 1, 1)
                conv.weight.copy_(round_to_grid(folded, weight_qmax(folded.shape, conv.groups)) / s.view(-1, 1, 1, 1))
        return m

    def head(m, x):
        with torch.no_grad():
            out = m.head(list(m.backbone((x - 0.5) / 0.5).values()))
        return torch.cat([out["bbox_regression"].flatten(1), out["cls_logits"].flatten(1)], 1)

    gen = torch.Generator().manual_seed(1)
    measure = [x.numpy() for x in torch.rand(16, 3, 96, 96, generator=gen)]
    x = torch.rand(16, 3, 96, 96, generator=gen)
    ref = head(model, x)
    plain = (head(rounded(model), x) - ref).mean(0).abs().mean()
    corrected = (head(rounded(bias_corrected(model, measure, weight_qmax, 96)), x) - ref).mean(0).abs().mean()
    assert corrected < 0.5 * plain, (float(corrected), float(plain))
