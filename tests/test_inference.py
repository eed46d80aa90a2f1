import copy
import warnings

import pytest
import torch
from torch import nn

from advlab import inference
from advlab.inference import BackendUnavailableError, InferenceWarning, backend_name, logits, predict

# Fast path (ONNX Runtime) against eager torch, measured on this project's 2-core CPU machines:
# max |logit difference| 1.6e-5 for EfficientNet-Lite0 on the 975 colour sample images (logits
# up to 18) and 2.3e-5 for CIFAR ResNet-20 on the 10,000 test images (logits up to 46), with
# identical arg-max everywhere.  The tolerance is about 4 times the larger measurement.
LOGIT_TOLERANCE = 1e-4
# A label can only flip where the two top eager logits are closer than twice the tolerance.
NEAR_TIE = 2 * LOGIT_TOLERANCE


class Tiny(nn.Module):
    """A small conv net that exports to ONNX."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.conv(x)).mean((2, 3))))


class Unexportable(Tiny):
    """Uses an operator (Bessel i0) that the ONNX exporter does not know."""

    def forward(self, x):
        return super().forward(torch.special.i0(x))


class Branchy(Tiny):
    """Branches in Python on the data: tracing records one branch only."""

    def forward(self, x):
        out = super().forward(x)
        return out if float(x[0, 0, 0, 0]) > 0.5 else -out


def tiny(cls=Tiny, **kw) -> nn.Module:
    torch.manual_seed(0)
    return cls(**kw).eval()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty ADVLAB_CACHE and no backend from the environment; returns the export folder."""
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path))
    monkeypatch.delenv("ADVLAB_BACKEND", raising=False)
    return tmp_path / "onnx"


@pytest.fixture
def exports(monkeypatch):
    """Counts the ONNX exports (calls to inference._export)."""
    calls = []
    real = inference._export

    def counting(*args):
        calls.append(args[1:])
        return real(*args)
    monkeypatch.setattr(inference, "_export", counting)
    return calls


def eager(model, x):
    """Eager torch on channels_last input, as the torch backend runs it."""
    with torch.inference_mode():
        return model(x.contiguous(memory_format=torch.channels_last))


# --------------------------------------------------------------------------- unit tests
def test_fast_path_matches_torch_and_is_cached_on_disk_and_in_memory(cache, exports):
    model, x = tiny(), torch.rand(37, 3, 12, 12)
    out = logits(model, x, batch_size=16)
    assert out.dtype == torch.float32 and out.shape == (37, 5)
    assert (out - eager(model, x)).abs().max() < 1e-5
    assert backend_name(model=model).startswith("onnxruntime")
    assert torch.equal(predict(model, x, batch_size=10), out.argmax(1))   # same session
    assert len(exports) == 1 and exports[0] == ((3, 12, 12), torch.float32)
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and files[1] == files[0] + ".sha256"
    assert torch.equal(logits(copy.deepcopy(model), x), out)              # from the disk cache
    logits(model, torch.rand(4, 3, 16, 16))                               # another input shape
    assert len(exports) == 2 and len(list(cache.glob("*.onnx"))) == 2


def test_batch_parts_on_several_threads_give_the_outputs_of_one_thread(cache, exports):
    """On 2 threads a batch is cut into parts (PART_SIZE) that single-threaded sessions run side
    by side, a batch of one runs on a 2-thread session: the outputs are those of one thread."""
    model, x = tiny(), torch.rand(2 * inference.PART_SIZE + 5, 3, 12, 12)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = logits(model, x, batch_size=len(x))
        torch.set_num_threads(2)
        parts = logits(model, x, batch_size=len(x))
        single = logits(model, x[:1])
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(parts, one) and torch.equal(single, one[:1])
    assert len(exports) == 1                                   # both sessions from one export


def test_in_place_weight_change_makes_a_new_export(cache, exports):
    model, x = tiny(), torch.rand(8, 3, 12, 12)
    before, bias = logits(model, x), model.fc.bias.detach().clone()
    digest = inference.weights_digest(model)
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    after = logits(model, x)
    assert inference.weights_digest(model) != digest and len(exports) == 2
    assert torch.allclose(after, before + 1.0, atol=1e-5)
    assert (after - eager(model, x)).abs().max() < 1e-5
    with torch.no_grad():
        model.fc.bias.copy_(bias)                        # the first weights: their cached export
    assert torch.equal(logits(model, x), before) and len(exports) == 2


def test_weights_are_hashed_only_when_they_change(cache, monkeypatch):
    model, x = tiny(), torch.rand(4, 3, 12, 12)
    calls = []
    real = inference._hash_state_dict
    monkeypatch.setattr(inference, "_hash_state_dict", lambda t: calls.append(1) or real(t))
    for _ in range(3):
        predict(model, x)
    assert len(calls) == 1
    model.fc.weight = nn.Parameter(model.fc.weight.detach().clone())      # replaced, same values
    predict(model, x)
    assert len(calls) == 2


@pytest.mark.parametrize("damage", ["truncate", "sidecar", "garbage", "no-sidecar"])
def test_corrupt_cached_export_is_rebuilt_with_a_warning(cache, exports, damage):
    model, x = tiny(), torch.rand(6, 3, 12, 12)
    good = logits(model, x)
    path = next(cache.glob("*.onnx"))
    sidecar = path.with_name(path.name + ".sha256")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "sidecar":
        sidecar.write_text("0" * 64)
    elif damage == "garbage":  # consistent checksum, but not a model ONNX Runtime can load
        import hashlib
        path.write_bytes(b"not an onnx graph")
        sidecar.write_text(hashlib.sha256(b"not an onnx graph").hexdigest())
    else:
        sidecar.unlink()
    with pytest.warns(InferenceWarning, match=path.name):
        out = logits(copy.deepcopy(model), x)                             # a new process, in effect
    assert torch.equal(out, good) and len(exports) == 2
    import hashlib
    assert sidecar.read_text() == hashlib.sha256(path.read_bytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits(copy.deepcopy(model), x)                                   # the rebuilt file is used


def test_backend_torch_from_the_environment_turns_the_fast_path_off(cache, monkeypatch):
    monkeypatch.setenv("ADVLAB_BACKEND", "torch")

    def refuse(*args, **kwargs):
        raise AssertionError("ONNX Runtime used although ADVLAB_BACKEND=torch")
    monkeypatch.setattr(inference, "_onnx_forward", refuse)
    model, x = tiny(), torch.rand(5, 3, 12, 12)
    assert torch.equal(logits(model, x), eager(model, x))
    assert backend_name("cpu") == "torch" and backend_name(model=model) == "torch"
    assert not cache.exists()
    monkeypatch.setenv("ADVLAB_BACKEND", "auto")
    assert backend_name("cpu").startswith("onnxruntime")
    assert backend_name("cpu", backend="torch") == "torch"


def test_unknown_backend_is_a_clear_error(cache, monkeypatch):
    with pytest.raises(ValueError, match="unknown inference backend 'tensorrt'.*auto"):
        predict(tiny(), torch.rand(2, 3, 8, 8), backend="tensorrt")
    monkeypatch.setenv("ADVLAB_BACKEND", "openvino")
    with pytest.raises(ValueError, match="ADVLAB_BACKEND"):
        predict(tiny(), torch.rand(2, 3, 8, 8))


def test_training_mode_is_never_exported(cache):
    model, x = tiny(dropout=0.5).train(), torch.rand(16, 3, 12, 12)
    with pytest.raises(BackendUnavailableError, match="Tiny.*training mode"):
        logits(model, x, backend="onnx")
    with pytest.warns(InferenceWarning, match="Tiny runs on torch.*training mode"):
        torch.manual_seed(1)
        auto = logits(model, x)
    assert "training mode" in backend_name(model=model)
    torch.manual_seed(1)
    assert torch.equal(auto, logits(model, x, backend="torch"))           # dropout was on
    assert not torch.allclose(auto, eager(model.eval(), x))
    assert not cache.exists()


def test_unexportable_model_raises_with_onnx_and_warns_once_with_auto(cache):
    model, x = tiny(Unexportable), torch.rand(4, 3, 8, 8)
    with pytest.raises(BackendUnavailableError, match="Unexportable.*i0"):
        logits(model, x, backend="onnx")
    model = tiny(Unexportable)
    with pytest.warns(InferenceWarning, match="Unexportable runs on torch.*i0"):
        out = logits(model, x)
    assert torch.equal(out, eager(model, x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                     # warned once only
        assert torch.equal(predict(model, x), out.argmax(1))
    assert backend_name(model=model).startswith("torch (Unexportable not on ONNX Runtime")


def test_export_that_does_not_reproduce_torch_is_refused(cache):
    model, x = tiny(Branchy), torch.rand(4, 3, 8, 8)
    with pytest.warns(InferenceWarning, match="Branchy.*does not reproduce torch"):
        out = logits(model, x)
    assert torch.equal(out, eager(model, x))
    assert not cache.exists() or not list(cache.glob("*.onnx"))


def test_empty_input():
    assert predict(tiny(), torch.rand(0, 3, 8, 8)).shape == (0,)


def test_predict_stays_importable_from_models():
    from advlab.models import predict as models_predict
    from advlab.models.wrappers import predict as wrappers_predict
    assert models_predict is predict and wrappers_predict is predict


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stays_on_torch(cache):
    model, x = tiny().cuda(), torch.rand(8, 3, 12, 12)
    out = logits(model, x, amp=False)
    assert out.device.type == "cpu" and (out - eager(model, x.cuda()).cpu()).abs().max() < 1e-4
    assert backend_name(model=model) == "torch" and not cache.exists()


# --------------------------------------------------------------------------- same answers
def assert_same_answers(fast: torch.Tensor, ref: torch.Tensor) -> None:
    """>= 99.9% equal labels, every disagreement a near-tie of the two top eager logits, and
    logits within LOGIT_TOLERANCE."""
    differ = fast.argmax(1) != ref.argmax(1)
    top2 = ref.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    assert float(differ.float().mean()) <= 0.001, int(differ.sum())
    assert bool((margin[differ] < NEAR_TIE).all()), margin[differ]
    assert float((fast - ref).abs().max()) <= LOGIT_TOLERANCE


def test_lite0_fast_path_agrees_with_eager_torch(imagenet_samples):
    from advlab.models import load_imagenet_model
    colour = imagenet_samples.subset(~imagenet_samples.grey)
    assert len(colour) == 975
    model = load_imagenet_model("efficientnet_lite0")
    fast = logits(model, colour.x, 64, backend="onnx")
    assert_same_answers(fast, logits(model, colour.x, 64, backend="torch"))


def test_cifar_resnet20_fast_path_agrees_with_eager_torch(models_mirror, cifar10_test, cifar_fast_logits):
    from advlab.models import load_cifar_resnet
    fast = cifar_fast_logits("resnet20")
    ref = logits(load_cifar_resnet("resnet20", download=False), cifar10_test.x, 500, backend="torch")
    assert_same_answers(fast, ref)


# --------------------------------------------------------------------------- run-info and CLI
def test_run_info_line_names_the_backend():
    from advlab.config import RunInfo
    info = RunInfo("ch00", "smoke", "cpu (2 threads)", "m", 1.0, backend="onnxruntime 1.2.3")
    assert "device=cpu (2 threads) backend=onnxruntime 1.2.3 model=m" in info.line()


def test_cli_backend_flag_sets_the_backend_for_the_run(monkeypatch, tmp_path):
    """`advlab run --backend torch` runs the chapter on torch, without the flag on ONNX Runtime
    (ADVLAB_BACKEND=auto), and the setting is restored after the run."""
    import types
    from dataclasses import dataclass

    from advlab import cli
    from advlab import experiments as registry
    from advlab.chapter import Chapter, Settings
    seen = []

    @dataclass(frozen=True)
    class FakeSettings(Settings):
        pass

    class Fake(Chapter):  # a chapter that only records the backend it runs on
        id, title = "ch00", "fake"
        Settings = FakeSettings
        profiles = {"smoke": FakeSettings(), "full": FakeSettings()}
        tables, figures = {}, {}

        def run(self, ctx, s):
            seen.append(backend_name("cpu"))
            return types.SimpleNamespace(info=types.SimpleNamespace(line=lambda: "info"))

        def save(self, results, out):
            return []

    monkeypatch.setattr(registry, "chapter", lambda chapter_id: Fake())
    monkeypatch.setenv("ADVLAB_BACKEND", "auto")
    assert cli.main(["run", "ch00", "--backend", "torch", "--out", str(tmp_path)]) == 0
    assert cli.main(["run", "ch00", "--out", str(tmp_path)]) == 0
    assert seen[0] == "torch" and seen[1].startswith("onnxruntime")
    assert inference.resolve_backend() == "auto"                          # restored after the run
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "ch00", "--backend", "tensorrt"])
